/**
 * The embedded record: `<dir>/record.sqlite` through Node's built-in
 * `node:sqlite` (no install script, nothing to compile), images and maps as
 * files beside it (files.ts).
 *
 * Durability: WAL journal. `synchronous: 'normal'` (the default): a
 * committed transaction and the files written before it are in the WAL and
 * the files through write(), in the kernel's page cache, so an acknowledged
 * inspection survives kill -9 of this process, or any crash of it
 * (test/record.test.ts kills it three times mid-stream); the last commits
 * before a power loss or kernel crash may be rolled back (the database
 * stays consistent; a surviving row whose file was lost with the page
 * cache answers 404 on its image route).
 * `synchronous: 'full'` fsyncs the WAL at every commit and each file before
 * its row: power loss too, at about three fsyncs per inspection
 * (docs/PERFORMANCE.md: far over the 2 ms budget on this machine's disk).
 *
 * node:sqlite is loaded only when a record is opened. On Node 22 it prints
 * an ExperimentalWarning ("SQLite is an experimental feature") once per
 * process; hetmm drops exactly that warning (type ExperimentalWarning,
 * message naming SQLite) while it loads, and no other. Node 24 and 26 print
 * none.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { HetmmError } from '../errors.js';
import { RecordFiles } from './files.js';
import { SqlRecord, type Database, type Row, type SqlRecordOptions } from './sql-record.js';
import { forSqlite, schema } from './sql.js';

type SqliteModule = typeof import('node:sqlite');

export interface SqliteRecordOptions extends SqlRecordOptions {
  /** 'normal' (default): survives kill -9, not power loss; 'full': power loss too, slower (see above) */
  readonly synchronous?: 'full' | 'normal';
}

let sqliteModule: Promise<SqliteModule> | undefined;

/** node:sqlite, with Node 22's one ExperimentalWarning about it dropped (no other warning is touched). */
function loadSqlite(): Promise<SqliteModule> {
  sqliteModule ??= (async () => {
    const emit = process.emitWarning;
    process.emitWarning = function (this: unknown, warning: string | Error, ...rest: unknown[]): void {
      const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string } | undefined)?.type ?? (warning instanceof Error ? warning.name : undefined);
      const text = typeof warning === 'string' ? warning : warning.message;
      if (type === 'ExperimentalWarning' && /SQLite/i.test(text)) return;
      (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
    } as typeof process.emitWarning;
    try {
      return await import('node:sqlite');
    } catch (e) {
      throw new HetmmError('E_UNAVAILABLE', `the inspection record needs node:sqlite (Node 22.13 or later): ${(e as Error).message}`, { cause: e });
    } finally {
      process.emitWarning = emit;
    }
  })();
  return sqliteModule;
}

/** Opens (creating) the record in `dir` (e.g. `<data-dir>/inspections`). One serving process per directory. */
export async function openSqliteRecord(dir: string, options: SqliteRecordOptions = {}): Promise<SqlRecord> {
  const { DatabaseSync } = await loadSqlite();
  const root = path.resolve(dir);
  const file = path.join(root, 'record.sqlite');
  const synchronous = options.synchronous ?? 'normal';
  if (synchronous !== 'full' && synchronous !== 'normal') throw new HetmmError('E_ARGUMENT', `Expected synchronous 'full' or 'normal' but received ${JSON.stringify(synchronous)}`);
  let db: InstanceType<SqliteModule['DatabaseSync']>;
  try {
    mkdirSync(root, { recursive: true });
    db = new DatabaseSync(file);
    db.exec('PRAGMA journal_mode = WAL');
    db.exec(`PRAGMA synchronous = ${synchronous.toUpperCase()}`);
    // another process holding a write (a second server on the same data dir): wait, then E_UNAVAILABLE
    db.exec('PRAGMA busy_timeout = 5000');
    for (const statement of schema('sqlite')) db.exec(statement);
  } catch (e) {
    throw new HetmmError('E_WRITE', `cannot open the inspection record ${file}: ${(e as Error).message}`, { cause: e });
  }
  const statements = new Map<string, ReturnType<typeof db.prepare>>();
  const prepared = (sql: string): ReturnType<typeof db.prepare> => {
    let s = statements.get(sql);
    if (s === undefined) {
      s = db.prepare(forSqlite(sql));
      statements.set(sql, s);
    }
    return s;
  };
  const database: Database = {
    async query(sql, params = []) {
      try {
        const s = prepared(sql);
        return /^\s*(SELECT|INSERT[^;]*RETURNING)/is.test(sql) ? (s.all(...params) as Row[]) : (s.run(...params), []);
      } catch (e) {
        throw new HetmmError('E_WRITE', `inspection record ${file}: ${(e as Error).message}`, { cause: e });
      }
    },
    async exclusive(pass) {
      await pass();
      return true;
    },
    async close() {
      db.close();
    },
  };
  return new SqlRecord(`sqlite:${file}`, database, new RecordFiles(root, synchronous === 'full'), options);
}
