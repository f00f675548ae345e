/**
 * Loading parity cases and checker modules; shared by run-parity.ts (the
 * `npm run test:parity` entry) and test/parity.test.ts (the node:test suite).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ParityCase, ParityChecker } from './types.js';

/** Every *.json case in `dir`, sorted by file name. */
export async function loadCases(dir: string): Promise<ParityCase[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
  } catch (e) {
    throw new Error(`Cannot read the parity fixture directory ${dir} (set HETMM_PARITY_DIR): ${(e as Error).message}`);
  }
  const cases: ParityCase[] = [];
  for (const file of names) {
    const raw: unknown = JSON.parse(await readFile(path.join(dir, file), 'utf8'));
    if (typeof raw !== 'object' || raw === null || typeof (raw as { op?: unknown }).op !== 'string') {
      throw new Error(`Parity case ${file} has no "op" string`);
    }
    const c = raw as Omit<ParityCase, 'file'>;
    cases.push({
      file,
      op: c.op,
      params: c.params ?? {},
      inputs: c.inputs ?? {},
      expected: c.expected ?? {},
      tol: typeof c.tol === 'number' ? c.tol : 0,
    });
  }
  return cases;
}

/** Cases grouped by op, ops in name order. */
export function groupByOp(cases: readonly ParityCase[]): Map<string, ParityCase[]> {
  const groups = new Map<string, ParityCase[]>();
  for (const c of [...cases].sort((a, b) => a.op.localeCompare(b.op) || a.file.localeCompare(b.file))) {
    const list = groups.get(c.op) ?? [];
    list.push(c);
    groups.set(c.op, list);
  }
  return groups;
}

const opsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ops');

/**
 * The checker for `op` (default export of ops/<op>.js), or undefined when no
 * such module exists (the op is pending). A module that exists but fails to
 * import or has no function default export throws: that is a failure, not pending.
 */
export async function loadChecker(op: string): Promise<ParityChecker | undefined> {
  if (!/^[a-z0-9_]+$/.test(op)) throw new Error(`Invalid op name "${op}" (expected [a-z0-9_]+)`);
  const file = path.join(opsDir, `${op}.js`);
  if (!existsSync(file)) return undefined;
  const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  if (typeof mod.default !== 'function') throw new Error(`${file} has no default-exported checker function`);
  return mod.default as ParityChecker;
}
