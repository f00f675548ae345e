/**
 * The SQL both databases run, written once with PostgreSQL's `$n`
 * placeholders (SQLite takes them as `?n`): schema, the keyset list, counts
 * per minute, the histogram's rows, and the row -> Inspection mapping.
 * Only the column types differ (`schema(dialect)`).
 */
import { HetmmError } from '../errors.js';
import {
  checkLimit,
  checkRange,
  decodeCursor,
  encodeCursor,
  type AuditAction,
  type AuditEntry,
  type Inspection,
  type ListQuery,
  type Verdict,
} from './record.js';

export type Dialect = 'sqlite' | 'postgres';

export function schema(dialect: Dialect): string[] {
  const seq = dialect === 'sqlite' ? 'INTEGER PRIMARY KEY AUTOINCREMENT' : 'BIGSERIAL PRIMARY KEY';
  const big = dialect === 'sqlite' ? 'INTEGER' : 'BIGINT';
  const real = dialect === 'sqlite' ? 'REAL' : 'DOUBLE PRECISION';
  return [
    `CREATE TABLE IF NOT EXISTS inspections (
      seq ${seq}, id TEXT NOT NULL UNIQUE, line TEXT NOT NULL, time_ms ${big} NOT NULL, score ${real} NOT NULL,
      verdict TEXT, threshold ${real}, store_version ${big}, image_name TEXT, image_file TEXT, heatmap_file TEXT,
      file_bytes ${big} NOT NULL DEFAULT 0, image_expired INTEGER NOT NULL DEFAULT 0, model TEXT)`,
    'CREATE INDEX IF NOT EXISTS inspections_line_seq ON inspections (line, seq)',
    'CREATE INDEX IF NOT EXISTS inspections_line_verdict_seq ON inspections (line, verdict, seq)',
    'CREATE INDEX IF NOT EXISTS inspections_line_time ON inspections (line, time_ms)',
    'CREATE INDEX IF NOT EXISTS inspections_time ON inspections (time_ms)',
    'CREATE INDEX IF NOT EXISTS inspections_with_files ON inspections (seq) WHERE file_bytes > 0',
    `CREATE TABLE IF NOT EXISTS audit (
      seq ${seq}, time_ms ${big} NOT NULL, line TEXT NOT NULL, action TEXT NOT NULL, before TEXT, after TEXT, token_name TEXT NOT NULL)`,
    'CREATE INDEX IF NOT EXISTS audit_line_seq ON audit (line, seq)',
  ];
}

export const INSERT_INSPECTION =
  'INSERT INTO inspections (id, line, time_ms, score, verdict, threshold, store_version, image_name, image_file, heatmap_file, file_bytes, model) ' +
  'VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING RETURNING seq';
export const INSERT_AUDIT = 'INSERT INTO audit (time_ms, line, action, before, after, token_name) VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq';
const COLUMNS = 'seq, id, line, time_ms, score, verdict, threshold, store_version, image_name, image_file, heatmap_file, image_expired, model';
export const SELECT_BY_ID = `SELECT ${COLUMNS} FROM inspections WHERE id = $1`;
export const HISTOGRAM_ROWS = 'SELECT score, verdict FROM inspections WHERE line = $1 ORDER BY seq DESC LIMIT $2';
/** per-minute counts; (time + offset) is positive for any time after 1970, so integer division floors in both databases */
export const COUNTS_BY_MINUTE =
  'SELECT (time_ms + CAST($4 AS INTEGER)) / 60000 AS minute, verdict, COUNT(*) AS n FROM inspections WHERE line = $1 AND time_ms >= $2 AND time_ms < $3 GROUP BY 1, 2';
export const FILE_BYTES = 'SELECT COALESCE(SUM(file_bytes), 0) AS total FROM inspections WHERE file_bytes > 0';

/** A statement in SQLite's numbered-parameter spelling. */
export function forSqlite(sql: string): string {
  return sql.replace(/\$(\d+)/g, '?$1');
}

export interface Statement {
  readonly sql: string;
  readonly params: (string | number)[];
}

/** Newest first by insertion order (seq), filtered; fetches one row more than the page to know whether there is a next. */
export function listStatement(line: string, query: ListQuery = {}): Statement & { limit: number } {
  const limit = checkLimit(query.limit);
  return { ...filteredStatement(line, query, limit + 1), limit };
}

export function filteredStatement(line: string, query: ListQuery, limit: number): Statement {
  const { sinceMs, untilMs } = checkRange(query);
  if (query.verdict !== undefined && query.verdict !== 'ok' && query.verdict !== 'defect') {
    throw new HetmmError('E_ARGUMENT', `Expected verdict ok or defect but received ${JSON.stringify(String(query.verdict))}`);
  }
  const after = decodeCursor(query.cursor);
  const params: (string | number)[] = [line];
  const where = ['line = $1'];
  const add = (clause: string, value: string | number): void => {
    params.push(value);
    where.push(clause.replace('?', `$${params.length}`));
  };
  if (query.verdict !== undefined) add('verdict = ?', query.verdict);
  if (sinceMs !== undefined) add('time_ms >= ?', sinceMs);
  if (untilMs !== undefined) add('time_ms < ?', untilMs);
  if (after !== undefined) add('seq < ?', after);
  params.push(limit);
  return { sql: `SELECT ${COLUMNS} FROM inspections WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT $${params.length}`, params };
}

export function auditStatement(line: string, query: { limit?: number; cursor?: string } = {}): Statement & { limit: number } {
  const limit = checkLimit(query.limit);
  const after = decodeCursor(query.cursor);
  const params: (string | number)[] = [line, limit + 1];
  let where = 'line = $1';
  if (after !== undefined) {
    params.push(after);
    where += ' AND seq < $3';
  }
  return { sql: `SELECT seq, time_ms, line, action, before, after, token_name FROM audit WHERE ${where} ORDER BY seq DESC LIMIT $2`, params, limit };
}

type Raw = Record<string, unknown>;
const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

export function toInspection(r: Raw): Inspection & { seq: number } {
  return {
    seq: num(r.seq),
    id: String(r.id),
    line: String(r.line),
    time: new Date(num(r.time_ms)).toISOString(),
    score: num(r.score),
    verdict: (strOrNull(r.verdict) as Verdict | null),
    threshold: numOrNull(r.threshold),
    storeVersion: numOrNull(r.store_version),
    imageName: strOrNull(r.image_name),
    imageFile: strOrNull(r.image_file),
    heatmapFile: strOrNull(r.heatmap_file),
    imageExpired: num(r.image_expired) !== 0,
    model: r.model === null || r.model === undefined ? null : (JSON.parse(String(r.model)) as Inspection['model']),
  };
}

export function toAudit(r: Raw): AuditEntry {
  return {
    seq: num(r.seq),
    time: new Date(num(r.time_ms)).toISOString(),
    line: String(r.line),
    action: String(r.action) as AuditAction,
    before: r.before === null ? null : (JSON.parse(String(r.before)) as unknown),
    after: r.after === null ? null : (JSON.parse(String(r.after)) as unknown),
    tokenName: String(r.token_name),
  };
}

/** A page from limit+1 rows, newest first. */
export function page<T extends { seq: number }>(rows: readonly T[], limit: number, strip: (r: T) => unknown = stripSeq): { items: unknown[]; next?: string } {
  const items = rows.slice(0, limit);
  const more = rows.length > limit;
  return { items: items.map(strip), ...(more ? { next: encodeCursor(items[items.length - 1]!.seq) } : {}) };
}

function stripSeq<T extends { seq: number }>(r: T): Omit<T, 'seq'> {
  const { seq: _seq, ...rest } = r;
  return rest;
}

// ---- retention statements -------------------------------------------------------------------------

export const RETENTION = {
  lines: 'SELECT DISTINCT line FROM inspections',
  byAge: 'SELECT seq, image_file, heatmap_file, file_bytes FROM inspections WHERE time_ms < $1 ORDER BY time_ms LIMIT $2',
  /** the seq of the newest row past the count limit (OFFSET keep) */
  countCut: 'SELECT seq FROM inspections WHERE line = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2',
  byCount: 'SELECT seq, image_file, heatmap_file, file_bytes FROM inspections WHERE line = $1 AND seq <= $2 ORDER BY seq LIMIT $3',
  oldestFiles: 'SELECT seq, image_file, heatmap_file, file_bytes FROM inspections WHERE file_bytes > 0 ORDER BY seq LIMIT $1',
} as const;

/** `DELETE FROM inspections WHERE seq IN (...)` / the "image expired" update for `n` seqs. */
export function dropRows(n: number): string {
  return `DELETE FROM inspections WHERE seq IN (${Array.from({ length: n }, (_, i) => `$${i + 1}`).join(', ')})`;
}

export function expireFiles(n: number): string {
  return `UPDATE inspections SET image_file = NULL, heatmap_file = NULL, file_bytes = 0, image_expired = 1 WHERE seq IN (${Array.from({ length: n }, (_, i) => `$${i + 1}`).join(', ')})`;
}
