/**
 * The inspection record: every prediction a server answered (line, time,
 * score, verdict, the threshold and store version used, the image and its
 * heat map) and every operator action (audit), queryable per line. One
 * interface, two implementations: embedded SQLite in the data dir
 * (sqlite.ts) and PostgreSQL shared by the API nodes of queue mode
 * (postgres.ts). This file holds the types and the rules both share
 * (validation, cursors, verdicts, shifts), so the two cannot drift.
 */
import { randomBytes } from 'node:crypto';
import { HetmmError } from '../errors.js';

export type Verdict = 'ok' | 'defect';

/** What the caller knows about one answered prediction. */
export interface InspectionInput {
  /** the id the predict answer returns; a fresh one when absent (base64url, 1-64 characters) */
  readonly id?: string;
  readonly line: string;
  /** when the prediction was answered; now when absent */
  readonly time?: Date;
  readonly score: number;
  /** absent when the line has no threshold */
  readonly verdict?: Verdict;
  readonly threshold?: number;
  /** the store version the prediction was computed against */
  readonly storeVersion?: number;
  /** the uploaded file's name */
  readonly imageName?: string;
  /** the uploaded bytes (any image format); not kept when absent */
  readonly image?: Uint8Array;
  /** the rendered heat map (PNG); not kept when absent */
  readonly heatmapPng?: Uint8Array;
  /** model, precision, preset, backend: whatever helps to trace the answer later */
  readonly model?: Readonly<Record<string, string | number | boolean>>;
}

export interface Inspection {
  readonly id: string;
  readonly line: string;
  /** ISO 8601, UTC */
  readonly time: string;
  readonly score: number;
  readonly verdict: Verdict | null;
  readonly threshold: number | null;
  readonly storeVersion: number | null;
  readonly imageName: string | null;
  /** path relative to the record's file directory; null when none was kept or it expired */
  readonly imageFile: string | null;
  readonly heatmapFile: string | null;
  /** the files were dropped by the disk budget (the row is kept) */
  readonly imageExpired: boolean;
  readonly model: Readonly<Record<string, string | number | boolean>> | null;
}

export type AuditAction = 'mark-normal' | 'remove-normal' | 'threshold';
export const AUDIT_ACTIONS: readonly AuditAction[] = ['mark-normal', 'remove-normal', 'threshold'];

export interface AuditInput {
  readonly line: string;
  readonly action: AuditAction;
  readonly time?: Date;
  /** JSON-serialisable state before and after (a threshold, normal ids, ...) */
  readonly before?: unknown;
  readonly after?: unknown;
  /** the name of the token that authorised it, never the token itself */
  readonly tokenName: string;
}

export interface AuditEntry {
  readonly seq: number;
  readonly time: string;
  readonly line: string;
  readonly action: AuditAction;
  readonly before: unknown;
  readonly after: unknown;
  readonly tokenName: string;
}

export interface ListQuery {
  readonly verdict?: Verdict;
  readonly since?: Date;
  readonly until?: Date;
  /** 1..MAX_LIMIT, default DEFAULT_LIMIT */
  readonly limit?: number;
  /** the `next` of the previous page */
  readonly cursor?: string;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** pass as `cursor` for the next (older) page; absent on the last page */
  readonly next?: string;
}

export interface CountBucket {
  /** bucket start, ISO 8601 UTC */
  readonly start: string;
  readonly ok: number;
  readonly defect: number;
  /** predictions without a verdict (no threshold) */
  readonly unscored: number;
}

export interface CountsQuery {
  readonly since: Date;
  readonly until: Date;
  /** minutes east of UTC that hours and shifts are counted in (e.g. 120 for UTC+2); default 0 */
  readonly utcOffsetMinutes?: number;
  /** shift start times 'HH:MM', ascending, e.g. ['06:00', '14:00', '22:00']; default DEFAULT_SHIFTS */
  readonly shifts?: readonly string[];
}

export interface Counts {
  readonly hours: readonly CountBucket[];
  /** each shift bucket carries the shift's start time of day, 'HH:MM' */
  readonly shifts: readonly (CountBucket & { readonly shift: string })[];
}

export interface HistogramQuery {
  /** the last N inspections of the line; default 1000, at most MAX_HISTOGRAM_LAST */
  readonly last?: number;
  /** 1..200, default 40 */
  readonly bins?: number;
  /** a candidate threshold: how many of those N would change verdict */
  readonly threshold?: number;
}

export interface Histogram {
  readonly line: string;
  readonly n: number;
  readonly min: number | null;
  readonly max: number | null;
  /** bin i covers [min + i*width, min + (i+1)*width); the last one includes max */
  readonly bins: readonly number[];
  readonly width: number;
  /** with a threshold: inspections of the N whose verdict differs under it (a verdict-less one counts when t would give one) */
  readonly wouldChange?: number;
  readonly toDefect?: number;
  readonly toOk?: number;
}

/** Retention: applied in the background, never before an insert returns. */
export interface RetentionPolicy {
  /** rows kept per line (oldest dropped first); default 1 000 000, 0 means no limit */
  readonly maxPerLine?: number;
  /** rows older than this many days are dropped; default 365, 0 means no limit */
  readonly maxAgeDays?: number;
  /** bytes of image and map files kept in all (oldest files dropped first, rows kept as "image expired"); default 10 GiB, 0 means no limit */
  readonly maxFileBytes?: number;
}

export const DEFAULT_RETENTION = { maxPerLine: 1_000_000, maxAgeDays: 365, maxFileBytes: 10 * 2 ** 30 } as const;
export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 1000;
export const MAX_HISTOGRAM_LAST = 100_000;
export const MAX_COUNT_SPAN_MS = 92 * 24 * 3_600_000;
export const DEFAULT_SHIFTS: readonly string[] = ['06:00', '14:00', '22:00'];

export interface RetentionReport {
  readonly rowsDropped: number;
  readonly filesDropped: number;
  readonly fileBytes: number;
}

export interface InspectionRecord {
  /** 'sqlite:<path>' or 'postgres://host:port/db' (no password) */
  readonly location: string;
  /**
   * Saves one answered prediction; resolves with its id once the row and
   * its files survive a crash of this process (kill -9). Files are written
   * before the row, so a row never names a file that is not there.
   */
  add(input: InspectionInput): Promise<string>;
  get(id: string): Promise<Inspection | undefined>;
  list(line: string, query?: ListQuery): Promise<Page<Inspection>>;
  counts(line: string, query: CountsQuery): Promise<Counts>;
  histogram(line: string, query?: HistogramQuery): Promise<Histogram>;
  /** the bytes of an inspection's image or heat map; undefined when none was kept or it expired */
  readFile(inspection: Inspection, which: 'image' | 'heatmap'): Promise<Buffer | undefined>;
  /** every inspection matching the query (limit and cursor ignored), newest first, in pages of `batch` */
  iterate(line: string, query?: ListQuery, batch?: number): AsyncIterable<Inspection>;
  addAudit(entry: AuditInput): Promise<number>;
  audit(line: string, query?: { limit?: number; cursor?: string }): Promise<Page<AuditEntry>>;
  /** one pass of retention now (the background does the same); for tests and `hetmm` maintenance */
  enforceRetention(): Promise<RetentionReport>;
  close(): Promise<void>;
}

// ---- shared rules ----------------------------------------------------------------------------------

const ID = /^[A-Za-z0-9_-]{1,64}$/;
const LINE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export function newInspectionId(): string {
  return randomBytes(9).toString('base64url');
}

export function checkId(id: unknown): string {
  if (typeof id !== 'string' || !ID.test(id)) throw new HetmmError('E_ARGUMENT', `Expected an inspection id of 1-64 characters [A-Za-z0-9_-] but received ${JSON.stringify(String(id).slice(0, 80))}`);
  return id;
}

export function checkLine(line: unknown): string {
  if (typeof line !== 'string' || !LINE.test(line)) throw new HetmmError('E_ARGUMENT', `Expected a line name [A-Za-z0-9][A-Za-z0-9_-]{0,63} but received ${JSON.stringify(String(line).slice(0, 80))}`);
  return line;
}

/** A validated row ready to store (time in ms since the epoch). */
export interface InspectionRow {
  readonly id: string;
  readonly line: string;
  readonly timeMs: number;
  readonly score: number;
  readonly verdict: Verdict | null;
  readonly threshold: number | null;
  readonly storeVersion: number | null;
  readonly imageName: string | null;
  readonly model: string | null;
}

export function inspectionRow(input: InspectionInput): InspectionRow {
  if (typeof input !== 'object' || input === null) throw new HetmmError('E_ARGUMENT', 'Expected an inspection object');
  const finite = (v: unknown, what: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new HetmmError('E_ARGUMENT', `Expected ${what} as a finite number but received ${String(v)}`);
    return v;
  };
  if (input.verdict !== undefined && input.verdict !== 'ok' && input.verdict !== 'defect') {
    throw new HetmmError('E_ARGUMENT', `Expected verdict 'ok' or 'defect' but received ${JSON.stringify(input.verdict)}`);
  }
  const time = input.time ?? new Date();
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) throw new HetmmError('E_ARGUMENT', 'Expected time as a valid Date');
  if (input.storeVersion !== undefined && !Number.isSafeInteger(input.storeVersion)) throw new HetmmError('E_ARGUMENT', `Expected storeVersion as an integer but received ${String(input.storeVersion)}`);
  return {
    id: input.id === undefined ? newInspectionId() : checkId(input.id),
    line: checkLine(input.line),
    timeMs: time.getTime(),
    score: finite(input.score, 'score'),
    verdict: input.verdict ?? null,
    threshold: input.threshold === undefined ? null : finite(input.threshold, 'threshold'),
    storeVersion: input.storeVersion ?? null,
    imageName: input.imageName === undefined ? null : String(input.imageName).slice(0, 255),
    model: input.model === undefined ? null : JSON.stringify(input.model),
  };
}

export function checkAudit(entry: AuditInput): { line: string; action: AuditAction; timeMs: number; before: string; after: string; tokenName: string } {
  const line = checkLine(entry.line);
  if (!AUDIT_ACTIONS.includes(entry.action)) throw new HetmmError('E_ARGUMENT', `Expected an audit action (${AUDIT_ACTIONS.join(', ')}) but received ${JSON.stringify(entry.action)}`);
  if (typeof entry.tokenName !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(entry.tokenName)) {
    throw new HetmmError('E_ARGUMENT', 'Expected the token name (1-64 characters [A-Za-z0-9_.-]), never the token');
  }
  const time = entry.time ?? new Date();
  return { line, action: entry.action, timeMs: time.getTime(), before: JSON.stringify(entry.before ?? null), after: JSON.stringify(entry.after ?? null), tokenName: entry.tokenName };
}

export function checkLimit(limit: number | undefined, max = MAX_LIMIT, fallback = DEFAULT_LIMIT): number {
  if (limit === undefined) return fallback;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > max) throw new HetmmError('E_ARGUMENT', `Expected limit as an integer in 1..${max} but received ${String(limit)}`);
  return limit;
}

/** Opaque keyset cursor: the insertion sequence number of the last item of a page. */
export function encodeCursor(seq: number): string {
  return Buffer.from(`s${seq}`, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string | undefined): number | undefined {
  if (cursor === undefined) return undefined;
  const text = typeof cursor === 'string' && /^[A-Za-z0-9_-]{1,40}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const m = /^s(\d{1,15})$/.exec(text);
  if (m === null) throw new HetmmError('E_ARGUMENT', 'Expected cursor as the `next` value of a previous page');
  return Number(m[1]);
}

export function checkRange(query: { since?: Date; until?: Date }): { sinceMs: number | undefined; untilMs: number | undefined } {
  const ms = (d: Date | undefined, what: string): number | undefined => {
    if (d === undefined) return undefined;
    if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new HetmmError('E_ARGUMENT', `Expected ${what} as a valid time`);
    return d.getTime();
  };
  const sinceMs = ms(query.since, 'since');
  const untilMs = ms(query.until, 'until');
  if (sinceMs !== undefined && untilMs !== undefined && sinceMs > untilMs) throw new HetmmError('E_ARGUMENT', 'Expected since to be before until');
  return { sinceMs, untilMs };
}

/** Shift starts as minutes of the day, ascending; E_ARGUMENT on anything else. */
export function parseShifts(shifts: readonly string[] = DEFAULT_SHIFTS): number[] {
  if (!Array.isArray(shifts) || shifts.length === 0 || shifts.length > 24) throw new HetmmError('E_ARGUMENT', 'Expected 1-24 shift start times HH:MM');
  const minutes = shifts.map((s) => {
    const m = typeof s === 'string' ? /^([01]\d|2[0-3]):([0-5]\d)$/.exec(s) : null;
    if (m === null) throw new HetmmError('E_ARGUMENT', `Expected a shift start time HH:MM (00:00-23:59) but received ${JSON.stringify(String(s).slice(0, 20))}`);
    return Number(m[1]) * 60 + Number(m[2]);
  });
  for (let i = 1; i < minutes.length; i++) {
    if (minutes[i]! <= minutes[i - 1]!) throw new HetmmError('E_ARGUMENT', `Expected shift start times in ascending order but received ${shifts.join(',')}`);
  }
  return minutes;
}

export function checkCountsQuery(query: CountsQuery): { sinceMs: number; untilMs: number; offsetMs: number; shiftMinutes: number[] } {
  if (query === undefined || query.since === undefined || query.until === undefined) throw new HetmmError('E_ARGUMENT', 'Expected since and until for counts');
  const { sinceMs, untilMs } = checkRange(query);
  if (untilMs! - sinceMs! > MAX_COUNT_SPAN_MS) throw new HetmmError('E_ARGUMENT', 'Expected since and until at most 92 days apart for counts');
  const offset = query.utcOffsetMinutes ?? 0;
  if (!Number.isSafeInteger(offset) || Math.abs(offset) > 14 * 60) throw new HetmmError('E_ARGUMENT', `Expected a UTC offset in minutes within ±840 but received ${String(offset)}`);
  return { sinceMs: sinceMs!, untilMs: untilMs!, offsetMs: offset * 60_000, shiftMinutes: parseShifts(query.shifts) };
}

/**
 * Hour and shift buckets from per-minute counts (minute = floor((time + offset) / 60 s)),
 * which both databases compute with one GROUP BY. Bucket starts are shown in UTC.
 */
export function foldCounts(
  minutes: Iterable<{ minute: number; verdict: Verdict | null; n: number }>,
  offsetMs: number,
  shiftMinutes: readonly number[],
): Counts {
  const hours = new Map<number, { ok: number; defect: number; unscored: number }>();
  const shifts = new Map<number, { ok: number; defect: number; unscored: number; shift: number }>();
  const add = (b: { ok: number; defect: number; unscored: number }, verdict: Verdict | null, n: number): void => {
    if (verdict === 'ok') b.ok += n;
    else if (verdict === 'defect') b.defect += n;
    else b.unscored += n;
  };
  for (const { minute, verdict, n } of minutes) {
    const hour = Math.floor(minute / 60);
    let h = hours.get(hour);
    if (h === undefined) hours.set(hour, (h = { ok: 0, defect: 0, unscored: 0 }));
    add(h, verdict, n);
    // the shift that holds this minute: the last start at or before its time of day (before the first: yesterday's last)
    const day = Math.floor(minute / 1440);
    const ofDay = minute - day * 1440;
    let i = shiftMinutes.length - 1;
    while (i >= 0 && shiftMinutes[i]! > ofDay) i--;
    const start = i >= 0 ? day * 1440 + shiftMinutes[i]! : (day - 1) * 1440 + shiftMinutes[shiftMinutes.length - 1]!;
    let s = shifts.get(start);
    if (s === undefined) shifts.set(start, (s = { ok: 0, defect: 0, unscored: 0, shift: shiftMinutes[i >= 0 ? i : shiftMinutes.length - 1]! }));
    add(s, verdict, n);
  }
  const iso = (localMinute: number): string => new Date(localMinute * 60_000 - offsetMs).toISOString();
  const hhmm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
  return {
    hours: [...hours.entries()].sort((a, b) => a[0] - b[0]).map(([hour, c]) => ({ start: iso(hour * 60), ...c })),
    shifts: [...shifts.entries()].sort((a, b) => a[0] - b[0]).map(([start, c]) => ({ start: iso(start), shift: hhmm(c.shift), ok: c.ok, defect: c.defect, unscored: c.unscored })),
  };
}

export function checkHistogramQuery(query: HistogramQuery = {}): { last: number; bins: number; threshold: number | undefined } {
  const last = checkLimit(query.last, MAX_HISTOGRAM_LAST, 1000);
  const bins = query.bins ?? 40;
  if (!Number.isSafeInteger(bins) || bins < 1 || bins > 200) throw new HetmmError('E_ARGUMENT', `Expected bins as an integer in 1..200 but received ${String(bins)}`);
  const t = query.threshold;
  if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t < 0)) throw new HetmmError('E_ARGUMENT', `Expected threshold as a finite number >= 0 but received ${String(t)}`);
  return { last, bins, threshold: t };
}

/** The detector's rule (src/detector/prediction.ts): DEFECT when score > threshold. */
export function verdictAt(score: number, threshold: number): Verdict {
  return score > threshold ? 'defect' : 'ok';
}

export function buildHistogram(line: string, rows: readonly { score: number; verdict: Verdict | null }[], bins: number, threshold: number | undefined): Histogram {
  const counts = new Array<number>(bins).fill(0);
  let min = Infinity;
  let max = -Infinity;
  for (const r of rows) {
    if (r.score < min) min = r.score;
    if (r.score > max) max = r.score;
  }
  const width = rows.length === 0 ? 0 : (max - min) / bins;
  for (const r of rows) counts[width === 0 ? 0 : Math.min(bins - 1, Math.floor((r.score - min) / width))]! += 1;
  const out: Histogram = { line, n: rows.length, min: rows.length === 0 ? null : min, max: rows.length === 0 ? null : max, bins: counts, width };
  if (threshold === undefined) return out;
  let toDefect = 0;
  let toOk = 0;
  for (const r of rows) {
    const v = verdictAt(r.score, threshold);
    if (v === r.verdict) continue;
    if (v === 'defect') toDefect++;
    else toOk++;
  }
  return { ...out, wouldChange: toDefect + toOk, toDefect, toOk };
}

export function checkRetention(policy: RetentionPolicy = {}): Required<RetentionPolicy> {
  const out = { ...DEFAULT_RETENTION, ...policy };
  for (const [k, v] of Object.entries(out)) {
    if (!Number.isSafeInteger(v) || v < 0) throw new HetmmError('E_ARGUMENT', `Expected retention ${k} as an integer >= 0 (0: no limit) but received ${String(v)}`);
  }
  return out;
}
