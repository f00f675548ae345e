/** Line names: what may name a store in the data directory (no path traversal, no hidden files). */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { ServerError } from './errors.js';

const LINE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export const STORE_EXTENSION = '.hetmm';

/** Throws E_ARGUMENT unless `name` is 1-64 letters, digits, '-' or '_', starting with a letter or digit. */
export function validateLineName(name: string): string {
  if (typeof name !== 'string' || !LINE_NAME.test(name)) {
    throw new ServerError(
      'E_ARGUMENT',
      `invalid line name ${JSON.stringify(String(name).slice(0, 80))}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit`,
    );
  }
  return name;
}

/** The line a --store file serves as: its file name without the .hetmm extension. */
export function lineNameOfStore(file: string): string {
  const base = path.basename(file);
  return validateLineName(base.endsWith(STORE_EXTENSION) ? base.slice(0, -STORE_EXTENSION.length) : base);
}

/** The store file of a line in the data directory (the name is validated, so it stays inside). */
export function storePathInDataDir(dataDir: string, name: string): string {
  return path.join(dataDir, `${validateLineName(name)}${STORE_EXTENSION}`);
}

/**
 * The `*.hetmm` files in a data directory that no line can serve, with why
 * (a name the API could not address, such as `bad name.hetmm`): the server
 * does not load them, and `hetmm serve` says so instead of skipping them
 * silently. A missing directory has none.
 */
export async function unservableStores(dataDir: string): Promise<Array<{ file: string; reason: string }>> {
  const names = await readdir(dataDir).catch(() => [] as string[]);
  const out: Array<{ file: string; reason: string }> = [];
  for (const name of names.sort()) {
    if (!name.endsWith(STORE_EXTENSION)) continue;
    try {
      lineNameOfStore(name);
    } catch (e) {
      out.push({ file: path.join(dataDir, name), reason: (e as Error).message });
    }
  }
  return out;
}
