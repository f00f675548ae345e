/**
 * Helpers shared by the parity checkers (test/parity/ops/*.ts): fixture
 * tensors to typed arrays, batch slicing, and tolerance comparisons that
 * produce a CheckResult naming what differed and where.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setting } from '../../src/config.js';
import type { CheckResult, JsonTensor } from './types.js';

/** The repository root (this file runs from dist/test/parity/). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Fixture directory: HETMM_PARITY_DIR, else ../shared/fixtures/parity next to the repo. */
export function parityDir(): string {
  const fromEnv = setting('parityDir');
  return fromEnv !== undefined ? path.resolve(fromEnv) : path.resolve(repoRoot, '../shared/fixtures/parity');
}

export interface Tensor<A extends Float32Array | Float64Array = Float64Array> {
  readonly shape: number[];
  readonly data: A;
}

function checkJsonTensor(t: JsonTensor, name: string): void {
  if (t === null || typeof t !== 'object' || !Array.isArray(t.shape) || !Array.isArray(t.data)) {
    throw new TypeError(`Expected ${name} to be a {shape, data} tensor`);
  }
  const size = t.shape.reduce((a, b) => a * b, 1);
  if (size !== t.data.length) {
    throw new RangeError(`Tensor ${name} has shape [${t.shape.join(', ')}] (${size} values) but ${t.data.length} data values`);
  }
}

/** A fixture tensor as float64 (exact). */
export function tensorFromJson(t: JsonTensor, name = 'tensor'): Tensor<Float64Array> {
  checkJsonTensor(t, name);
  return { shape: [...t.shape], data: Float64Array.from(t.data) };
}

/** A fixture tensor rounded to float32 (what the kernels consume). */
export function tensorFromJson32(t: JsonTensor, name = 'tensor'): Tensor<Float32Array> {
  checkJsonTensor(t, name);
  return { shape: [...t.shape], data: Float32Array.from(t.data) };
}

/** Item `index` of the leading axis, as a view, with the remaining shape. */
export function sliceLeading<A extends Float32Array | Float64Array>(t: Tensor<A>, index: number): Tensor<A> {
  const inner = t.shape.slice(1);
  const size = inner.reduce((a, b) => a * b, 1);
  if (!(index >= 0 && index < (t.shape[0] ?? 0))) {
    throw new RangeError(`Index ${index} out of range for leading axis of size ${t.shape[0]}`);
  }
  return { shape: inner, data: t.data.subarray(index * size, (index + 1) * size) as A };
}

/** Largest |a_i - b_i|; Infinity when lengths differ or a value is NaN on one side only. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (Number.isNaN(x) !== Number.isNaN(y)) return Infinity;
      continue;
    }
    const d = Math.abs(x - y);
    if (d > worst) worst = d;
  }
  return worst;
}

/** Index of the largest deviation (for failure messages); -1 when none. */
function worstIndex(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = -1;
  let worstDiff = -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= worstDiff)) {
      worstDiff = Number.isNaN(d) ? Infinity : d;
      worst = i;
    }
  }
  return worst;
}

/** Compares `actual` with `expected` within an absolute tolerance. */
export function compareArrays(name: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number): CheckResult {
  if (actual.length !== expected.length) {
    return { ok: false, maxError: Infinity, detail: `${name}: ${actual.length} values, expected ${expected.length}` };
  }
  const maxError = maxAbsDiff(actual, expected);
  if (maxError <= tol) return { ok: true, maxError };
  const i = worstIndex(actual, expected);
  return {
    ok: false,
    maxError,
    detail: `${name}: max |diff| ${maxError.toExponential(3)} > tol ${tol} (at flat index ${i}: got ${actual[i]}, expected ${expected[i]})`,
  };
}

/** All of several checks: ok only if each is, worst error over all, first failure's detail. */
export function combineChecks(results: readonly CheckResult[]): CheckResult {
  let maxError = 0;
  for (const r of results) if (r.maxError !== undefined && !(r.maxError <= maxError)) maxError = r.maxError;
  const failed = results.filter((r) => !r.ok);
  if (failed.length === 0) return { ok: true, maxError };
  return { ok: false, maxError, detail: failed.map((r) => r.detail ?? 'failed').join('; ') };
}
