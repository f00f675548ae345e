/**
 * Opening the record a server was asked for: `--history sqlite` (the
 * default: `<data-dir>/inspections/record.sqlite`), `--history
 * postgres://...` (queue mode: one record shared by every API node), or
 * `--history off`.
 */
import path from 'node:path';
import { HetmmError } from '../errors.js';
import { openPostgresRecord } from './postgres.js';
import type { InspectionRecord, RetentionPolicy } from './record.js';
import { openSqliteRecord } from './sqlite.js';

export interface OpenRecordOptions {
  /** 'sqlite' (default), 'off', or a postgres:// URL */
  readonly history?: string;
  /** SQLite: the record is `<dataDir>/inspections` */
  readonly dataDir?: string;
  /** PostgreSQL: images and maps go to `<filesDir>/inspections` (the queue's shared blob directory) */
  readonly filesDir?: string;
  readonly retention?: RetentionPolicy;
  readonly synchronous?: 'full' | 'normal';
}

/** The record, or undefined for `off`. */
export async function openRecord(options: OpenRecordOptions): Promise<InspectionRecord | undefined> {
  const history = options.history ?? 'sqlite';
  const retention = options.retention === undefined ? {} : { retention: options.retention };
  if (history === 'off') return undefined;
  if (history === 'sqlite') {
    if (options.dataDir === undefined) throw new HetmmError('E_ARGUMENT', 'the sqlite inspection record lives in the data dir: give --data-dir DIR, or --history off');
    return openSqliteRecord(path.join(options.dataDir, 'inspections'), { ...retention, ...(options.synchronous === undefined ? {} : { synchronous: options.synchronous }) });
  }
  if (/^postgres(ql)?:\/\//.test(history)) {
    if (options.filesDir === undefined) throw new HetmmError('E_ARGUMENT', 'a postgres inspection record keeps images in the shared blob directory: give --blob-dir DIR (or --data-dir DIR)');
    return openPostgresRecord(history, { filesDir: path.join(options.filesDir, 'inspections'), ...retention, ...(options.synchronous === undefined ? {} : { synchronous: options.synchronous }) });
  }
  throw new HetmmError('E_ARGUMENT', `Expected --history sqlite, off or a postgres://... URL but received ${JSON.stringify(history.slice(0, 40))}`);
}
