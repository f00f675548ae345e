/**
 * The shared record of queue mode: every API node writes to one PostgreSQL
 * database (`--history postgres://...`) through `pg` (pure JavaScript, no
 * install script; loaded only when such a record is opened).
 *
 * Durability: PostgreSQL's default `synchronous_commit = on`; a row is
 * acknowledged after its commit is flushed to the server's WAL, so it
 * survives kill -9 of the API node and of PostgreSQL (and power loss, with
 * PostgreSQL's own fsync on). Its files are written before it (not fsynced
 * unless `synchronous: 'full'`): they survive kill -9 of the API node.
 *
 * Images and maps are files in a directory every API node mounts (the
 * queue's blob directory: `<blob-dir>/inspections`), not bytea: an image
 * row would put 100-300 KB per inspection through PostgreSQL's WAL,
 * replication and backups, and the disk budget would need VACUUM to give
 * space back; files are dropped at once. Retention runs on one node at a
 * time (an advisory lock).
 */
import { HetmmError } from '../errors.js';
import { RecordFiles } from './files.js';
import { SqlRecord, type Database, type Row, type SqlRecordOptions } from './sql-record.js';
import { schema } from './sql.js';

export interface PostgresRecordOptions extends SqlRecordOptions {
  /** where images and maps are kept: a directory every API node mounts at the same path */
  readonly filesDir: string;
  /** 'normal' (default): files are written, not fsynced (they survive kill -9 of the API node, not a power loss of the file server); 'full': each file fsynced before its row */
  readonly synchronous?: 'full' | 'normal';
  /** pool size per API node; default 4 */
  readonly poolSize?: number;
}

/** pg_advisory_lock key of the retention pass ('hetmm-rt' as a number) */
const RETENTION_LOCK = 0x6865746d6d2d7274n.toString();

/** postgres://user@host:port/db without the password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

export async function openPostgresRecord(url: string, options: PostgresRecordOptions): Promise<SqlRecord> {
  if (typeof url !== 'string' || !/^postgres(ql)?:\/\//.test(url)) throw new HetmmError('E_ARGUMENT', `Expected a postgres://... URL but received ${JSON.stringify(String(url).slice(0, 40))}`);
  if (typeof options?.filesDir !== 'string') throw new HetmmError('E_ARGUMENT', 'Expected filesDir: the directory of the record\'s images and maps');
  const { default: pg } = await import('pg');
  const location = redactUrl(url);
  const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 4, connectionTimeoutMillis: 10_000 });
  // an idle client's error (the server restarted) must not crash the process; the next query reconnects
  pool.on('error', () => undefined);
  const fail = (e: unknown): never => {
    const code = (e as { code?: string }).code;
    const down = code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === '57P01' || code === 'ETIMEDOUT' || /timeout|terminat|connect/i.test(String((e as Error).message));
    throw new HetmmError(down ? 'E_UNAVAILABLE' : 'E_WRITE', `inspection record ${location}: ${(e as Error).message}`, { cause: e });
  };
  try {
    const client = await pool.connect();
    try {
      // two nodes starting at once: one creates the schema, the other waits for it
      await client.query('SELECT pg_advisory_lock($1)', [RETENTION_LOCK]);
      for (const statement of schema('postgres')) await client.query(statement);
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [RETENTION_LOCK]).catch(() => undefined);
      client.release();
    }
  } catch (e) {
    await pool.end().catch(() => undefined);
    fail(e);
  }
  const database: Database = {
    async query(sql, params = []) {
      try {
        return (await pool.query(sql, params as unknown[])).rows as Row[];
      } catch (e) {
        return fail(e);
      }
    },
    async exclusive(pass) {
      const client = await pool.connect().catch(fail);
      try {
        const got = (await client.query('SELECT pg_try_advisory_lock($1) AS got', [RETENTION_LOCK])).rows[0] as { got: boolean };
        if (!got.got) return false;
        try {
          await pass();
        } finally {
          await client.query('SELECT pg_advisory_unlock($1)', [RETENTION_LOCK]);
        }
        return true;
      } finally {
        client.release();
      }
    },
    async close() {
      await pool.end();
    },
  };
  return new SqlRecord(location, database, new RecordFiles(options.filesDir, options.synchronous === 'full'), options);
}
