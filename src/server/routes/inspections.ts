/**
 * The inspection record over HTTP (issue 21, item 2): list a line's
 * inspections (filters, keyset cursor), one inspection, its image and heat
 * map, CSV export, counts per hour and shift, the score histogram, and the
 * audit of operator actions. All read-only: no token, like the other GETs.
 *
 * Every query parameter is checked here (unknown ones too), so a bad one is
 * 400 E_ARGUMENT in the server's one error shape whatever error handler the
 * app has.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { csvLines, DEFAULT_SHIFTS, MEDIA_TYPES, type Inspection, type InspectionRecord, type ListQuery, type Verdict } from '../../record/index.js';
import { ServerError } from '../errors.js';
import { validateLineName } from '../line-name.js';
import { answer, content, errors, LINE_ERRORS, LINE_PARAMS, type SchemaId } from '../schemas.js';

export interface InspectionRouteDeps {
  /** the record; undefined when the server runs with --history off (every route answers 404 saying so) */
  readonly record: InspectionRecord | undefined;
  /** shift starts 'HH:MM' for counts when the request names none; default 06:00,14:00,22:00 */
  readonly shifts?: readonly string[];
  /** minutes east of UTC for counts when the request names none; default 0 */
  readonly utcOffsetMinutes?: number;
}

const ID_PARAMS = { type: 'object', required: ['id'], properties: { id: { type: 'string', description: 'inspection id (the id of the predict answer)' } } } as const;

const str = { type: 'string' } as const;
const int = { type: 'integer' } as const;
const num = { type: 'number' } as const;
const at = { type: 'string', format: 'date-time' } as const;
// a field the record holds as null is absent from the answer (as a prediction's label): OpenAPI 3.0 has no null type
const optional = (t: string, description?: string): Record<string, unknown> => ({ type: t, ...(description === undefined ? {} : { description }) });
const counts = { start: at, ok: int, defect: int, unscored: { type: 'integer', description: 'predictions without a verdict (no threshold)' } };
const page = (id: string, items: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  $id: id,
  type: 'object',
  required: ['line', 'items'],
  properties: { line: str, items: { type: 'array', items: { $ref: `${items}#` } }, next: { type: 'string', description: 'pass as cursor for the next (older) page; absent on the last' }, ...extra },
});

/**
 * The answers of these routes as shared schemas (named in /openapi.json's
 * components): registerInspectionRoutes adds them to the app it is given
 * when they are not there yet.
 */
export const INSPECTION_SCHEMAS: readonly Record<string, unknown>[] = [
  {
    $id: 'Inspection',
    type: 'object',
    required: ['id', 'line', 'time', 'score', 'imageExpired'],
    properties: {
      id: str,
      line: str,
      time: at,
      score: num,
      verdict: { type: 'string', enum: ['ok', 'defect'], description: 'absent when the line had no threshold' },
      threshold: optional('number'),
      storeVersion: optional('integer'),
      imageName: optional('string'),
      imageExpired: { type: 'boolean', description: "the record's disk budget dropped its files (the row is kept)" },
      model: { type: 'object', additionalProperties: true, description: 'model, precision, preset as recorded' },
      image: optional('string', 'URL of the image as uploaded'),
      heatmap: optional('string', 'URL of the heat map'),
    },
  },
  page('InspectionPage', 'Inspection'),
  {
    $id: 'AuditEntry',
    type: 'object',
    required: ['seq', 'time', 'line', 'action', 'before', 'after', 'tokenName'],
    properties: {
      seq: int,
      time: at,
      line: str,
      action: { type: 'string', enum: ['mark-normal', 'remove-normal', 'threshold'] },
      before: { description: 'the state before (a threshold, normal ids, ...)' },
      after: { description: 'the state after' },
      tokenName: { type: 'string', description: 'the name of the token used, never the token' },
    },
  },
  page('AuditPage', 'AuditEntry'),
  {
    $id: 'InspectionCounts',
    type: 'object',
    required: ['line', 'since', 'until', 'utcOffsetMinutes', 'hours', 'shifts'],
    properties: {
      line: str,
      since: at,
      until: at,
      utcOffsetMinutes: int,
      hours: { type: 'array', items: { type: 'object', required: ['start', 'ok', 'defect', 'unscored'], properties: counts } },
      shifts: { type: 'array', items: { type: 'object', required: ['start', 'shift', 'ok', 'defect', 'unscored'], properties: { ...counts, shift: { type: 'string', description: 'the shift start, HH:MM' } } } },
    },
  },
  {
    $id: 'ScoreHistogram',
    type: 'object',
    required: ['line', 'n', 'bins', 'width'],
    properties: {
      line: str,
      n: int,
      min: optional('number', 'absent when n is 0'),
      max: optional('number', 'absent when n is 0'),
      bins: { type: 'array', items: int, description: 'bin i covers [min + i*width, min + (i+1)*width); the last includes max' },
      width: num,
      wouldChange: { type: 'integer', description: 'with threshold: inspections whose verdict it would change' },
      toDefect: int,
      toOk: int,
    },
  },
];

const query = (names: Record<string, string>): Record<string, unknown> => ({
  type: 'object',
  properties: Object.fromEntries(Object.entries(names).map(([n, description]) => [n, { type: 'string', description }])),
});
const FILTERS = {
  verdict: 'ok or defect',
  since: 'ISO 8601 time or ms since the epoch (inclusive)',
  until: 'ISO 8601 time or ms since the epoch (exclusive)',
};

type Query = Record<string, unknown>;

/** The answer without its null fields (documented as optional). */
function withoutNulls<T extends object>(o: T): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null));
}

/** An inspection over HTTP: URLs instead of the record's file paths, no nulls. */
function inspectionJson(i: Inspection): Record<string, unknown> {
  const { imageFile, heatmapFile, ...rest } = i;
  return withoutNulls({ ...rest, image: imageFile === null ? null : `/v1/inspections/${i.id}/image`, heatmap: heatmapFile === null ? null : `/v1/inspections/${i.id}/heatmap.png` });
}

/** Refuses parameters the route does not know (a typo must not silently widen a query). */
function only(q: Query, allowed: readonly string[]): void {
  for (const k of Object.keys(q ?? {})) {
    if (!allowed.includes(k)) throw new ServerError('E_ARGUMENT', `unknown query parameter ${JSON.stringify(k.slice(0, 40))}: expected ${allowed.join(', ')}`);
  }
}

function one(q: Query, name: string): string | undefined {
  const v = q?.[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ServerError('E_ARGUMENT', `Expected one ${name} parameter`);
  return v;
}

function time(q: Query, name: string): Date | undefined {
  const v = one(q, name);
  if (v === undefined) return undefined;
  const d = /^\d{1,15}$/.test(v) ? new Date(Number(v)) : /^\d{4}-\d{2}-\d{2}/.test(v) ? new Date(v) : new Date(Number.NaN);
  if (Number.isNaN(d.getTime())) throw new ServerError('E_ARGUMENT', `Expected ${name} as an ISO 8601 time (2026-12-01T06:00:00Z) or ms since the epoch but received ${JSON.stringify(v.slice(0, 40))}`);
  return d;
}

function integer(q: Query, name: string, min: number, max: number): number | undefined {
  const v = one(q, name);
  if (v === undefined) return undefined;
  if (!/^-?\d{1,9}$/.test(v) || Number(v) < min || Number(v) > max) throw new ServerError('E_ARGUMENT', `Expected ${name} as an integer in ${min}..${max} but received ${JSON.stringify(v.slice(0, 40))}`);
  return Number(v);
}

function verdict(q: Query): Verdict | undefined {
  const v = one(q, 'verdict')?.toLowerCase();
  if (v === undefined) return undefined;
  if (v !== 'ok' && v !== 'defect') throw new ServerError('E_ARGUMENT', `Expected verdict ok or defect but received ${JSON.stringify(v.slice(0, 40))}`);
  return v;
}

function filters(q: Query): ListQuery {
  const v = verdict(q);
  const since = time(q, 'since');
  const until = time(q, 'until');
  return { ...(v === undefined ? {} : { verdict: v }), ...(since === undefined ? {} : { since }), ...(until === undefined ? {} : { until }) };
}

/** '+02:00', '-05:30', 'Z' or minutes ('120') east of UTC. */
function utcOffset(q: Query): number | undefined {
  const v = one(q, 'utcOffset');
  if (v === undefined) return undefined;
  if (v === 'Z') return 0;
  const hm = /^([+-])(\d{2}):(\d{2})$/.exec(v);
  const minutes = hm !== null ? (hm[1] === '-' ? -1 : 1) * (Number(hm[2]) * 60 + Number(hm[3])) : /^-?\d{1,4}$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isFinite(minutes) || Math.abs(minutes) > 840) throw new ServerError('E_ARGUMENT', `Expected utcOffset as +HH:MM, -HH:MM, Z or minutes within ±840 but received ${JSON.stringify(v.slice(0, 40))}`);
  return minutes;
}

function number(q: Query, name: string): number | undefined {
  const v = one(q, name);
  if (v === undefined) return undefined;
  const n = v.trim() === '' ? Number.NaN : Number(v);
  if (!Number.isFinite(n) || n < 0) throw new ServerError('E_ARGUMENT', `Expected ${name} as a finite number >= 0 but received ${JSON.stringify(v.slice(0, 40))}`);
  return n;
}

export async function registerInspectionRoutes(app: FastifyInstance, deps: InspectionRouteDeps): Promise<void> {
  for (const schema of INSPECTION_SCHEMAS) if (app.getSchema(schema.$id as string) === undefined) app.addSchema(schema);
  // the route's answer as a named schema (these names are not in schemas.ts's SchemaId union: they live here)
  const named = (description: string, id: string): ReturnType<typeof answer> => answer(description, id as SchemaId);
  const record = (): InspectionRecord => {
    if (deps.record === undefined) throw new ServerError('E_NOT_FOUND', 'this server keeps no inspection record (started with --history off)');
    return deps.record;
  };
  const inspection = async (id: string) => {
    if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new ServerError('E_ARGUMENT', `Expected an inspection id of 1-64 characters [A-Za-z0-9_-] but received ${JSON.stringify(String(id).slice(0, 40))}`);
    const found = await record().get(id);
    if (found === undefined) throw new ServerError('E_NOT_FOUND', `no inspection ${JSON.stringify(id)} in the record (never made, or dropped by retention)`);
    return found;
  };

  app.get<{ Params: { line: string }; Querystring: Query }>(
    '/v1/lines/:line/inspections',
    { schema: { summary: "a line's inspections, newest first (keyset pages: pass `next` as cursor)", params: LINE_PARAMS, querystring: query({ ...FILTERS, limit: '1..1000, default 50', cursor: 'the `next` of the previous page' }), response: { 200: named('a page of inspections', 'InspectionPage'), ...errors(...LINE_ERRORS) } } },
    async (request) => {
      const q = request.query;
      only(q, ['verdict', 'since', 'until', 'limit', 'cursor']);
      const limit = integer(q, 'limit', 1, 1000);
      const cursor = one(q, 'cursor');
      const page = await record().list(validateLineName(request.params.line), { ...filters(q), ...(limit === undefined ? {} : { limit }), ...(cursor === undefined ? {} : { cursor }) });
      return { line: request.params.line, items: page.items.map(inspectionJson), ...(page.next === undefined ? {} : { next: page.next }) };
    },
  );

  app.get<{ Params: { line: string }; Querystring: Query }>(
    '/v1/lines/:line/inspections.csv',
    { schema: { summary: "a line's inspections as CSV, newest first (streamed; cells that a spreadsheet would take as a formula are prefixed with ')", params: LINE_PARAMS, querystring: query(FILTERS), response: { 200: content('CSV, one line per inspection', 'text/csv'), ...errors(...LINE_ERRORS) } } },
    async (request, reply) => {
      const q = request.query;
      only(q, ['verdict', 'since', 'until']);
      const line = validateLineName(request.params.line);
      const f = filters(q);
      // validated before the first byte: a bad filter is a 400, not a broken download
      await record().list(line, { ...f, limit: 1 });
      return reply
        .header('content-type', 'text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="${line}-inspections.csv"`)
        .send(Readable.from(csvLines(record().iterate(line, f))));
    },
  );

  app.get<{ Params: { line: string }; Querystring: Query }>(
    '/v1/lines/:line/inspections/counts',
    { schema: { summary: 'OK/DEFECT counts per hour and per shift (yield = ok / (ok + defect))', params: LINE_PARAMS, querystring: query({ since: FILTERS.since + '; default 24 h before until', until: FILTERS.until + '; default now', utcOffset: 'the time zone hours and shifts are counted in: +HH:MM, -HH:MM, Z or minutes', shifts: 'shift start times, e.g. 06:00,14:00,22:00' }), response: { 200: named('counts per hour and shift', 'InspectionCounts'), ...errors(...LINE_ERRORS) } } },
    async (request) => {
      const q = request.query;
      only(q, ['since', 'until', 'utcOffset', 'shifts']);
      const until = time(q, 'until') ?? new Date();
      const since = time(q, 'since') ?? new Date(until.getTime() - 24 * 3_600_000);
      const shifts = one(q, 'shifts')?.split(',').map((s) => s.trim()) ?? deps.shifts ?? DEFAULT_SHIFTS;
      const offset = utcOffset(q) ?? deps.utcOffsetMinutes ?? 0;
      const counts = await record().counts(validateLineName(request.params.line), { since, until, shifts, utcOffsetMinutes: offset });
      return { line: request.params.line, since: since.toISOString(), until: until.toISOString(), utcOffsetMinutes: offset, ...counts };
    },
  );

  app.get<{ Params: { line: string }; Querystring: Query }>(
    '/v1/lines/:line/inspections/histogram',
    { schema: { summary: 'score histogram of the last N inspections; with threshold: how many would change verdict', params: LINE_PARAMS, querystring: query({ last: '1..100000, default 1000', bins: '1..200, default 40', threshold: 'a candidate threshold (>= 0)' }), response: { 200: named('the histogram', 'ScoreHistogram'), ...errors(...LINE_ERRORS) } } },
    async (request) => {
      const q = request.query;
      only(q, ['last', 'bins', 'threshold']);
      const last = integer(q, 'last', 1, 100_000);
      const bins = integer(q, 'bins', 1, 200);
      const threshold = number(q, 'threshold');
      return withoutNulls(await record().histogram(validateLineName(request.params.line), { ...(last === undefined ? {} : { last }), ...(bins === undefined ? {} : { bins }), ...(threshold === undefined ? {} : { threshold }) }));
    },
  );

  app.get<{ Params: { line: string }; Querystring: Query }>(
    '/v1/lines/:line/audit',
    { schema: { summary: 'operator actions on a line (mark normal, remove normal, threshold), newest first, with the name of the token used', params: LINE_PARAMS, querystring: query({ limit: '1..1000, default 50', cursor: 'the `next` of the previous page' }), response: { 200: named('a page of audit rows', 'AuditPage'), ...errors(...LINE_ERRORS) } } },
    async (request) => {
      const q = request.query;
      only(q, ['limit', 'cursor']);
      const limit = integer(q, 'limit', 1, 1000);
      const cursor = one(q, 'cursor');
      return { line: request.params.line, ...(await record().audit(validateLineName(request.params.line), { ...(limit === undefined ? {} : { limit }), ...(cursor === undefined ? {} : { cursor }) })) };
    },
  );

  app.get<{ Params: { id: string } }>('/v1/inspections/:id', { schema: { summary: 'one inspection (valid across restarts)', params: ID_PARAMS, response: { 200: named('the inspection', 'Inspection'), ...errors(...LINE_ERRORS) } } }, async (request) => {
    // file paths are the record's business; the API gives URLs
    return inspectionJson(await inspection(request.params.id));
  });

  for (const [suffix, which] of [['image', 'image'], ['heatmap.png', 'heatmap']] as const) {
    app.get<{ Params: { id: string } }>(`/v1/inspections/:id/${suffix}`, { schema: { summary: `an inspection's ${which === 'image' ? 'image as uploaded' : 'heat map (PNG)'}`, params: ID_PARAMS, response: { 200: content(which === 'image' ? 'the image' : 'the heat map', which === 'image' ? 'image/*' : 'image/png', 'binary'), ...errors(...LINE_ERRORS) } } }, async (request, reply) => {
      const i = await inspection(request.params.id);
      const bytes = await record().readFile(i, which);
      if (bytes === undefined) {
        throw new ServerError('E_NOT_FOUND', i.imageExpired ? `inspection ${i.id}: image expired (the record's disk budget dropped its files; the row is kept)` : `inspection ${i.id} has no ${which} kept`);
      }
      const file = which === 'image' ? i.imageFile! : i.heatmapFile!;
      // an inspection's bytes never change: cacheable
      return reply.header('content-type', MEDIA_TYPES[file.slice(file.lastIndexOf('.') + 1)] ?? 'application/octet-stream').header('cache-control', 'private, max-age=86400, immutable').send(bytes);
    });
  }
}
