/**
 * Where bytes too big for a Redis job live: large input images, every
 * result map, and the features of hot-update templates. Redis carries only
 * the key.
 *
 * The interface is deliberately the subset an object store offers (whole
 * objects, put/get/delete, list by prefix with modification time), so an S3
 * adapter is a direct mapping: put -> PutObject, get -> GetObject (a missing
 * key -> E_UNAVAILABLE only if the service is down, else 'not found'),
 * delete -> DeleteObject, sweep -> ListObjectsV2 + DeleteObjects (or a
 * bucket lifecycle rule on the `results/` and `images/` prefixes).
 * docs/SCALING.md describes the contract.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HetmmError } from '../errors.js';

export interface BlobStore {
  /** Stores `data` under `key`, replacing any earlier object; readers never see a partial object. */
  put(key: string, data: Buffer | readonly Buffer[]): Promise<void>;
  /** The whole object; HetmmError E_ARGUMENT naming the key when it does not exist. */
  get(key: string): Promise<Buffer>;
  /** Removes the object; a missing key is not an error. */
  delete(key: string): Promise<void>;
  /** Removes objects under `prefix` last written more than `olderThanMs` ago; returns how many. */
  sweep(prefix: string, olderThanMs: number): Promise<number>;
  /** A human-readable location for logs and status ("dir:/mnt/hetmm/blobs", "s3://bucket/prefix"). */
  readonly location: string;
}

const KEY = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*(\/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$/;

export function assertBlobKey(key: string): void {
  if (typeof key !== 'string' || !KEY.test(key) || key.length > 512) {
    throw new HetmmError('E_ARGUMENT', `Expected a blob key of path segments [A-Za-z0-9_.-] (no leading dot) but received ${JSON.stringify(key)}`);
  }
}

/**
 * A directory every API node and worker mounts at the same path (NFS, SMB,
 * a local disk on one machine). Writes go to a temporary name in the same
 * directory and are renamed into place, which is atomic on POSIX file
 * systems and on NFSv3/v4 for a single client.
 */
export class SharedDirBlobStore implements BlobStore {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  get location(): string {
    return `dir:${this.root}`;
  }

  #path(key: string): string {
    assertBlobKey(key);
    return path.join(this.root, ...key.split('/'));
  }

  async put(key: string, data: Buffer | readonly Buffer[]): Promise<void> {
    const target = this.#path(key);
    const tmp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(tmp, Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]));
      await rename(tmp, target);
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw new HetmmError('E_STORE_WRITE', `cannot write blob ${key} under ${this.root}: ${(e as Error).message}`, { cause: e });
    }
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await readFile(this.#path(key));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new HetmmError('E_ARGUMENT', `no blob ${key} under ${this.root} (expired or never written)`, { cause: e });
      }
      throw new HetmmError('E_STORE_READ', `cannot read blob ${key} under ${this.root}: ${(e as Error).message}`, { cause: e });
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.#path(key), { force: true });
  }

  async sweep(prefix: string, olderThanMs: number): Promise<number> {
    const dir = this.#path(prefix);
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    const walk = async (d: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(d, { withFileTypes: true });
      } catch {
        return;
      }
      for (const entry of entries) {
        const p = path.join(d, entry.name);
        if (entry.isDirectory()) await walk(p);
        else {
          const s = await stat(p).catch(() => undefined);
          if (s !== undefined && s.mtimeMs < cutoff) {
            await rm(p, { force: true });
            removed++;
          }
        }
      }
    };
    await walk(dir);
    return removed;
  }
}
