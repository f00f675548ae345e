/** The durable inspection record (issue 21 item 2): SQLite embedded, PostgreSQL in queue mode. */
export * from './record.js';
export { openSqliteRecord, type SqliteRecordOptions } from './sqlite.js';
export { openPostgresRecord, redactUrl, type PostgresRecordOptions } from './postgres.js';
export { openRecord, type OpenRecordOptions } from './open.js';
export { csvCell, csvLines, csvRow, CSV_COLUMNS } from './csv.js';
export { MEDIA_TYPES, imageExtension } from './files.js';
export type { SqlRecord } from './sql-record.js';
