/**
 * Parity fixtures (../shared/fixtures/parity, or HETMM_PARITY_DIR): one JSON
 * case per file, `{op, params, inputs, expected, tol}`. Each op has a checker
 * module test/parity/ops/<op>.ts whose default export is a ParityChecker; an
 * op without a checker module is reported as pending, never as passed.
 */
export interface JsonTensor {
  shape: number[];
  data: number[];
}

export interface ParityCase {
  /** file name, for messages */
  file: string;
  op: string;
  params: Record<string, any>;
  inputs: Record<string, any>;
  expected: Record<string, any>;
  tol: number;
}

export interface CheckResult {
  ok: boolean;
  /** largest absolute deviation seen (or mismatch count for labels) */
  maxError?: number;
  /** what failed, when !ok */
  detail?: string;
}

export type ParityChecker = (c: ParityCase) => Promise<CheckResult> | CheckResult;
