/**
 * A line's store version as the cluster sees it: an integer kept in the
 * store's metadata (`meta.version`), bumped by every hot update, and
 * mirrored in Redis with the update's announcement. Kept behind these three
 * functions so the store's own version (issue 8) can replace it in one place.
 */
import { open } from 'node:fs/promises';
import { HetmmError } from '../errors.js';
import { PREFIX_BYTES, STORE_MAGIC } from '../store/format.js';
import type { TemplateStore } from '../store/index.js';

export function storeVersionOf(store: TemplateStore): number {
  const v = store.meta.version;
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : 0;
}

export function setStoreVersion(store: TemplateStore, version: number): void {
  store.meta = { ...store.meta, version };
}

/** The version in a store file's header, without reading its features (cheap for a multi-GB store). */
export async function readStoreFileVersion(filePath: string): Promise<number> {
  const handle = await open(filePath, 'r').catch((e: unknown) => {
    throw new HetmmError('E_STORE_READ', `cannot open template store '${filePath}': ${(e as Error).message}`, { cause: e });
  });
  try {
    const prefix = Buffer.alloc(PREFIX_BYTES);
    await handle.read(prefix, 0, PREFIX_BYTES, 0);
    if (!prefix.subarray(0, 8).equals(STORE_MAGIC)) throw new HetmmError('E_STORE_FORMAT', `'${filePath}' is not a hetmm template store`);
    const headerLength = prefix.readUInt32LE(12);
    const header = Buffer.alloc(headerLength);
    const { bytesRead } = await handle.read(header, 0, headerLength, PREFIX_BYTES);
    if (bytesRead !== headerLength) throw new HetmmError('E_STORE_FORMAT', `template store '${filePath}' is truncated`);
    const meta = (JSON.parse(header.toString('utf8')) as { meta?: { version?: unknown } }).meta;
    const v = meta?.version;
    return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : 0;
  } finally {
    await handle.close();
  }
}
