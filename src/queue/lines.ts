/** Which stores a worker serves: every <line>.hetmm in a data directory and/or named store files, optionally filtered. */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { HetmmError } from '../errors.js';
import { assertLineName } from './redis.js';
import type { WorkerLine } from './worker.js';

export const STORE_EXTENSION = '.hetmm';

export function lineNameOfStore(file: string): string {
  const base = path.basename(file);
  const name = base.endsWith(STORE_EXTENSION) ? base.slice(0, -STORE_EXTENSION.length) : base;
  assertLineName(name);
  return name;
}

export async function workerLines(options: { dataDir?: string; stores?: readonly string[]; only?: readonly string[] }): Promise<WorkerLine[]> {
  const lines: WorkerLine[] = (options.stores ?? []).map((f) => ({ name: lineNameOfStore(f), storePath: path.resolve(f) }));
  if (options.dataDir !== undefined) {
    let entries;
    try {
      entries = await readdir(options.dataDir, { withFileTypes: true });
    } catch (e) {
      throw new HetmmError('E_STORE_READ', `cannot list the data directory ${options.dataDir}: ${(e as Error).message}`, { cause: e });
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (!entry.isFile() || !entry.name.endsWith(STORE_EXTENSION)) continue;
      try {
        lines.push({ name: lineNameOfStore(entry.name), storePath: path.resolve(options.dataDir, entry.name) });
      } catch {
        // not a name the API could address
      }
    }
  }
  const only = options.only;
  if (only !== undefined) {
    for (const name of only) {
      // A requested line whose file is missing is served as 'failed' (readiness says so), not silently dropped.
      if (!lines.some((l) => l.name === name)) {
        assertLineName(name);
        if (options.dataDir === undefined) throw new HetmmError('E_ARGUMENT', `--lines names "${name}" but no --store file serves it`);
        lines.push({ name, storePath: path.resolve(options.dataDir, `${name}${STORE_EXTENSION}`) });
      }
    }
    return lines.filter((l) => only.includes(l.name));
  }
  return lines;
}
