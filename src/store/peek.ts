/**
 * A store file's metadata, or its embedded model, from its headers alone (no
 * feature data read): enough to know, before loading gigabytes, which
 * backbone a store needs, and for a worker thread to run a store's embedded
 * int8 backbone. Errors are the loader's (E_STORE_READ / E_STORE_FORMAT).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { HetmmError } from '../errors.js';
import { indexStoreFile, readEmbeddedModel, type StoreFileIndex } from './store-file.js';
import type { EmbeddedModel } from './template-store.js';

async function withIndex<T>(filePath: string, read: (handle: FileHandle, index: StoreFileIndex) => Promise<T>): Promise<T> {
  let handle;
  try {
    handle = await open(filePath, 'r');
  } catch (e) {
    throw new HetmmError('E_STORE_READ', `cannot read template store '${filePath}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
  try {
    return await read(handle, await indexStoreFile(handle, filePath));
  } finally {
    await handle.close();
  }
}

export async function readStoreMeta(filePath: string): Promise<Record<string, unknown>> {
  return withIndex(filePath, async (_, index) => ({ ...index.header.meta }));
}

/** The model embedded in the store file (format version 3), checked against its sha256; undefined when it has none. */
export async function readStoreModel(filePath: string): Promise<EmbeddedModel | undefined> {
  return withIndex(filePath, (handle, index) => readEmbeddedModel(handle, filePath, index));
}
