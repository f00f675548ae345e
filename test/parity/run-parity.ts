/**
 * `npm run test:parity`: runs every fixture case through its op's checker and
 * prints one line per op ("op: passed/total, worst error"). Ops without a
 * checker module are listed as pending and never count as passed. Exit code 1
 * if any case of an implemented op fails (or the fixtures cannot be read).
 */
import { groupByOp, loadCases, loadChecker } from './load.js';
import type { CheckResult, ParityCase } from './types.js';
import { parityDir } from './util.js';

export interface OpSummary {
  op: string;
  total: number;
  passed: number;
  pending: boolean;
  worstError: number;
  worstFile?: string;
  failures: string[];
}

async function runCase(check: (c: ParityCase) => Promise<CheckResult> | CheckResult, c: ParityCase): Promise<CheckResult> {
  try {
    return await check(c);
  } catch (e) {
    return { ok: false, detail: `threw ${e instanceof Error ? (e.stack ?? e.message) : String(e)}` };
  }
}

export async function runParity(dir: string): Promise<OpSummary[]> {
  const summaries: OpSummary[] = [];
  for (const [op, cases] of groupByOp(await loadCases(dir))) {
    const summary: OpSummary = { op, total: cases.length, passed: 0, pending: false, worstError: 0, failures: [] };
    summaries.push(summary);
    let check;
    try {
      check = await loadChecker(op);
    } catch (e) {
      summary.failures.push(`checker module failed to load: ${(e as Error).message}`);
      continue;
    }
    if (check === undefined) {
      summary.pending = true;
      continue;
    }
    for (const c of cases) {
      const r = await runCase(check, c);
      if (r.ok) summary.passed++;
      else summary.failures.push(`${c.file}: ${r.detail ?? 'failed'}`);
      const err = r.maxError ?? (r.ok ? 0 : Infinity);
      if (!(err <= summary.worstError)) {
        summary.worstError = err;
        summary.worstFile = c.file;
      }
    }
  }
  return summaries;
}

async function main(): Promise<number> {
  const dir = parityDir();
  let summaries: OpSummary[];
  try {
    summaries = await runParity(dir);
  } catch (e) {
    console.error(`parity: ${(e as Error).message}`);
    return 1;
  }
  if (summaries.length === 0) {
    console.error(`parity: no *.json cases in ${dir}`);
    return 1;
  }
  console.log(`parity fixtures: ${dir}`);
  let failed = false;
  for (const s of summaries) {
    if (s.pending) {
      console.log(`${s.op}: pending (no implementation yet), 0/${s.total} passed`);
      continue;
    }
    const worst = s.worstFile === undefined ? '' : `, worst error ${s.worstError.toExponential(3)} (${s.worstFile})`;
    console.log(`${s.op}: ${s.passed}/${s.total} passed${worst}`);
    for (const f of s.failures) console.log(`  FAIL ${f}`);
    if (s.passed !== s.total || s.failures.length > 0) failed = true;
  }
  const pending = summaries.filter((s) => s.pending).map((s) => s.op);
  if (pending.length > 0) console.log(`pending ops (not counted as passed): ${pending.join(', ')}`);
  console.log(failed ? 'parity: FAILED' : 'parity: all implemented ops pass');
  return failed ? 1 : 0;
}

// Under `node --test dist/test/` this file may be picked up as a test file;
// test/parity.test.ts covers that run, so only act as a CLI entry point.
if (process.env['NODE_TEST_CONTEXT'] === undefined) {
  process.exitCode = await main();
}
