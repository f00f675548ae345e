/**
 * Image and heat-map files of the record, beside the database in a sharded
 * folder (`files/<2 chars of the id>/<id>-<6 hex>.<kind>.<ext>`: at most 4096
 * shards, so no directory grows past a few thousand entries per million
 * inspections). Rows hold the path relative to the record's directory.
 *
 * Written synchronously before the row: a write() that returned is in the
 * kernel's page cache and survives kill -9 of this process; `fsync` (the
 * record's `synchronous=full`) also makes it survive power loss.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { HetmmError } from '../errors.js';

export type FileKind = 'image' | 'heatmap';

/** The extension of an image by its first bytes (the browser is told the type from it). */
export function imageExtension(bytes: Uint8Array): string {
  const starts = (...b: number[]): boolean => b.every((v, i) => bytes[i] === v);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'png';
  if (starts(0xff, 0xd8, 0xff)) return 'jpg';
  if (starts(0x42, 0x4d)) return 'bmp';
  if (starts(0x52, 0x49, 0x46, 0x46) && Buffer.from(bytes.subarray(8, 12)).toString('latin1') === 'WEBP') return 'webp';
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a)) return 'tif';
  return 'bin';
}

export const MEDIA_TYPES: Readonly<Record<string, string>> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  bmp: 'image/bmp',
  webp: 'image/webp',
  tif: 'image/tiff',
  bin: 'application/octet-stream',
};

export class RecordFiles {
  readonly #made = new Set<string>();
  constructor(
    readonly root: string,
    readonly fsync: boolean,
  ) {}

  /** Writes the bytes; returns the relative path. */
  write(id: string, kind: FileKind, bytes: Uint8Array): string {
    const shard = id.slice(0, 2).padEnd(2, '_');
    // a random suffix: a retried id writes new files instead of overwriting those its first row names
    const relative = `files/${shard}/${id}-${randomBytes(3).toString('hex')}.${kind}.${kind === 'heatmap' ? 'png' : imageExtension(bytes)}`;
    const dir = path.join(this.root, 'files', shard);
    if (!this.#made.has(dir)) {
      mkdirSync(dir, { recursive: true });
      this.#made.add(dir);
    }
    const fd = openSync(path.join(this.root, relative), 'w', 0o644);
    try {
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
      if (this.fsync) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return relative;
  }

  #resolve(relative: string): string {
    if (!/^files\/[A-Za-z0-9_-]{2}\/[A-Za-z0-9_-]{1,64}-[0-9a-f]{6}\.(image|heatmap)\.[a-z]{3,4}$/.test(relative)) {
      throw new HetmmError('E_INTERNAL', `the record names a file outside its folder: ${JSON.stringify(relative.slice(0, 120))}`);
    }
    return path.join(this.root, relative);
  }

  async read(relative: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.#resolve(relative));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  readSync(relative: string): Buffer | undefined {
    try {
      return readFileSync(this.#resolve(relative));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** Removes a file; a missing one is not an error (a retention pass may have been cut by a crash). */
  remove(relative: string | null): void {
    if (relative !== null) rmSync(this.#resolve(relative), { force: true });
  }
}
