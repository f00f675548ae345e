/**
 * A store file's metadata from its headers alone (no feature data read):
 * enough to know, before loading gigabytes, which backbone a store needs
 * (an int8 store names its int8 backbone in meta). Errors are the loader's
 * (E_STORE_READ / E_STORE_FORMAT).
 */
import { open } from 'node:fs/promises';
import { HetmmError } from '../errors.js';
import { indexStoreFile } from './store-file.js';

export async function readStoreMeta(filePath: string): Promise<Record<string, unknown>> {
  let handle;
  try {
    handle = await open(filePath, 'r');
  } catch (e) {
    throw new HetmmError('E_STORE_READ', `cannot read template store '${filePath}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
  try {
    return { ...(await indexStoreFile(handle, filePath)).header.meta };
  } finally {
    await handle.close();
  }
}
