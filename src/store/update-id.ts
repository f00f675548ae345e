/** Ids of hot updates, shared by both executors. */
import { createHash, randomUUID } from 'node:crypto';

/**
 * The id a hot update is recorded under (TemplateStore.appendToFile's
 * `update`; its images get `<id>/<index>` unless they carry their own):
 * `key:` + the sha256 of the client's idempotency key (bounded, any
 * characters), else a fresh `req:` id. Both executors use it, so a key means
 * the same in-process and in queue mode.
 */
export function hotUpdateId(key: string | undefined): string {
  return key === undefined ? `req:${randomUUID()}` : `key:${createHash('sha256').update(key, 'utf8').digest('hex').slice(0, 40)}`;
}
