/**
 * The InspectionRecord over any SQL database of sql.ts: the two
 * implementations (sqlite.ts, postgres.ts) only supply a `Database` (run a
 * statement, and run retention exclusively) and where the files live.
 *
 * Retention runs in the background: a timer (unref'd, never keeps a
 * process alive) and a nudge after every RETENTION_EVERY inserts, in chunks
 * of RETENTION_CHUNK rows with a turn of the event loop between chunks, so
 * an insert never waits for more than one chunk.
 */
import { HetmmError } from '../errors.js';
import { RecordFiles } from './files.js';
import {
  buildHistogram,
  checkAudit,
  checkCountsQuery,
  checkHistogramQuery,
  checkId,
  checkLine,
  checkRetention,
  foldCounts,
  inspectionRow,
  type AuditEntry,
  type AuditInput,
  type Counts,
  type CountsQuery,
  type Histogram,
  type HistogramQuery,
  type Inspection,
  type InspectionInput,
  type InspectionRecord,
  type ListQuery,
  type Page,
  type RetentionPolicy,
  type RetentionReport,
  type Verdict,
} from './record.js';
import {
  auditStatement,
  COUNTS_BY_MINUTE,
  dropRows,
  expireFiles,
  FILE_BYTES,
  HISTOGRAM_ROWS,
  INSERT_AUDIT,
  INSERT_INSPECTION,
  listStatement,
  page,
  RETENTION,
  SELECT_BY_ID,
  toAudit,
  toInspection,
} from './sql.js';

export type Row = Record<string, unknown>;

export interface Database {
  query(sql: string, params?: readonly (string | number | null)[]): Promise<Row[]>;
  /** runs `pass` unless another process is running one (PostgreSQL: an advisory lock); false when skipped */
  exclusive(pass: () => Promise<void>): Promise<boolean>;
  close(): Promise<void>;
}

export interface SqlRecordOptions {
  readonly retention?: RetentionPolicy;
  /** background retention interval; default 60 s, 0 turns the timer off (enforceRetention() still works) */
  readonly retentionIntervalMs?: number;
}

const RETENTION_CHUNK = 500;
const RETENTION_EVERY = 1000;
const DAY_MS = 86_400_000;

export class SqlRecord implements InspectionRecord {
  readonly #retention: Required<RetentionPolicy>;
  #timer: NodeJS.Timeout | undefined;
  #sinceRetention = 0;
  #running: Promise<RetentionReport> | undefined;
  #closed = false;

  constructor(
    readonly location: string,
    readonly db: Database,
    readonly files: RecordFiles,
    options: SqlRecordOptions = {},
  ) {
    this.#retention = checkRetention(options.retention);
    const interval = options.retentionIntervalMs ?? 60_000;
    if (interval > 0) {
      this.#timer = setInterval(() => this.#background(), interval);
      this.#timer.unref();
    }
  }

  async add(input: InspectionInput): Promise<string> {
    this.#open();
    const row = inspectionRow(input);
    const image = input.image === undefined || input.image.length === 0 ? null : this.files.write(row.id, 'image', input.image);
    const heatmap = input.heatmapPng === undefined || input.heatmapPng.length === 0 ? null : this.files.write(row.id, 'heatmap', input.heatmapPng);
    const bytes = (image === null ? 0 : input.image!.length) + (heatmap === null ? 0 : input.heatmapPng!.length);
    const inserted = await this.db.query(INSERT_INSPECTION, [
      row.id, row.line, row.timeMs, row.score, row.verdict, row.threshold, row.storeVersion, row.imageName, image, heatmap, bytes, row.model,
    ]);
    // a repeated id (a retried answer) keeps the first row and its files; this attempt's files go
    if (inserted.length === 0) {
      this.files.remove(image);
      this.files.remove(heatmap);
    }
    if (++this.#sinceRetention >= RETENTION_EVERY) {
      this.#sinceRetention = 0;
      setImmediate(() => this.#background());
    }
    return row.id;
  }

  async get(id: string): Promise<Inspection | undefined> {
    this.#open();
    const rows = await this.db.query(SELECT_BY_ID, [checkId(id)]);
    if (rows.length === 0) return undefined;
    const { seq: _seq, ...inspection } = toInspection(rows[0]!);
    return inspection;
  }

  async list(line: string, query: ListQuery = {}): Promise<Page<Inspection>> {
    this.#open();
    const s = listStatement(checkLine(line), query);
    return page((await this.db.query(s.sql, s.params)).map(toInspection), s.limit) as Page<Inspection>;
  }

  async *iterate(line: string, query: ListQuery = {}, batch = 500): AsyncIterable<Inspection> {
    this.#open();
    checkLine(line);
    let cursor: string | undefined;
    for (;;) {
      const { items, next } = await this.list(line, { ...query, limit: batch, ...(cursor === undefined ? {} : { cursor }) });
      yield* items;
      if (next === undefined) return;
      cursor = next;
    }
  }

  async counts(line: string, query: CountsQuery): Promise<Counts> {
    this.#open();
    const q = checkCountsQuery(query);
    const rows = await this.db.query(COUNTS_BY_MINUTE, [checkLine(line), q.sinceMs, q.untilMs, q.offsetMs]);
    return foldCounts(
      rows.map((r) => ({ minute: Number(r.minute), verdict: (r.verdict ?? null) as Verdict | null, n: Number(r.n) })),
      q.offsetMs,
      q.shiftMinutes,
    );
  }

  async histogram(line: string, query: HistogramQuery = {}): Promise<Histogram> {
    this.#open();
    const q = checkHistogramQuery(query);
    const rows = await this.db.query(HISTOGRAM_ROWS, [checkLine(line), q.last]);
    return buildHistogram(line, rows.map((r) => ({ score: Number(r.score), verdict: (r.verdict ?? null) as Verdict | null })), q.bins, q.threshold);
  }

  async readFile(inspection: Inspection, which: 'image' | 'heatmap'): Promise<Buffer | undefined> {
    const relative = which === 'image' ? inspection.imageFile : inspection.heatmapFile;
    return relative === null ? undefined : this.files.read(relative);
  }

  async addAudit(entry: AuditInput): Promise<number> {
    this.#open();
    const a = checkAudit(entry);
    const rows = await this.db.query(INSERT_AUDIT, [a.timeMs, a.line, a.action, a.before, a.after, a.tokenName]);
    return Number(rows[0]!.seq);
  }

  async audit(line: string, query: { limit?: number; cursor?: string } = {}): Promise<Page<AuditEntry>> {
    this.#open();
    const s = auditStatement(checkLine(line), query);
    return page((await this.db.query(s.sql, s.params)).map(toAudit), s.limit, (r) => r) as Page<AuditEntry>;
  }

  /** One full pass; concurrent callers share the running pass. */
  enforceRetention(): Promise<RetentionReport> {
    this.#open();
    this.#running ??= this.#pass().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#running?.catch(() => undefined);
    await this.db.close();
  }

  #open(): void {
    if (this.#closed) throw new HetmmError('E_UNAVAILABLE', `the inspection record ${this.location} is closed`);
  }

  #background(): void {
    if (this.#closed || this.#running !== undefined) return;
    // a failed pass is tried again at the next tick; inserts are never affected
    this.enforceRetention().catch(() => undefined);
  }

  async #pass(): Promise<RetentionReport> {
    const report = { rowsDropped: 0, filesDropped: 0, fileBytes: 0 };
    const { maxPerLine, maxAgeDays, maxFileBytes } = this.#retention;
    await this.db.exclusive(async () => {
      // drop rows (and their files) chunk by chunk until the select comes back empty
      const drain = async (select: () => Promise<Row[]>): Promise<void> => {
        for (;;) {
          if (this.#closed) return;
          const rows = await select();
          if (rows.length === 0) return;
          this.#removeFiles(rows, report);
          await this.db.query(dropRows(rows.length), rows.map((r) => Number(r.seq)));
          report.rowsDropped += rows.length;
          await new Promise((r) => setImmediate(r));
        }
      };
      if (maxAgeDays > 0) {
        const before = Date.now() - maxAgeDays * DAY_MS;
        await drain(() => this.db.query(RETENTION.byAge, [before, RETENTION_CHUNK]));
      }
      if (maxPerLine > 0) {
        for (const { line } of await this.db.query(RETENTION.lines)) {
          const cut = await this.db.query(RETENTION.countCut, [String(line), maxPerLine]);
          if (cut.length === 0) continue;
          const lastDropped = Number(cut[0]!.seq);
          await drain(() => this.db.query(RETENTION.byCount, [String(line), lastDropped, RETENTION_CHUNK]));
        }
      }
      let total = Number((await this.db.query(FILE_BYTES))[0]!.total);
      if (maxFileBytes > 0) {
        while (total > maxFileBytes && !this.#closed) {
          const rows = await this.db.query(RETENTION.oldestFiles, [RETENTION_CHUNK]);
          if (rows.length === 0) break;
          // only as many of the oldest as bring the total under the budget
          let n = 0;
          while (n < rows.length && total > maxFileBytes) total -= Number(rows[n++]!.file_bytes);
          const chosen = rows.slice(0, n);
          this.#removeFiles(chosen, report);
          await this.db.query(expireFiles(chosen.length), chosen.map((r) => Number(r.seq)));
          await new Promise((r) => setImmediate(r));
        }
      }
      report.fileBytes = total;
    });
    return report;
  }

  #removeFiles(rows: readonly Row[], report: { filesDropped: number }): void {
    for (const r of rows) {
      for (const f of [r.image_file, r.heatmap_file]) {
        if (f === null || f === undefined) continue;
        this.files.remove(String(f));
        report.filesDropped++;
      }
    }
  }
}
