/**
 * The inspection record's routes (src/server/routes/inspections.ts) on a
 * fastify app with the server's error shape, over a real SQLite record:
 * lists with filters and cursors, one inspection, its image and heat map,
 * CSV, counts, histogram, audit; every bad query parameter is 400 E_ARGUMENT.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import { openSqliteRecord, type InspectionRecord } from '../src/record/index.js';
import { ServerError, toErrorResponse } from '../src/server/errors.js';
import { registerInspectionRoutes } from '../src/server/routes/inspections.js';
import { addSharedSchemas } from '../src/server/schemas.js';
import { tempDir } from './helpers/io-paths.js';
import { captureAnswers, checkJsonAnswer, type Captured, type OpenApiDoc } from './helpers/openapi.js';
import { JPEG, PNG } from './helpers/record-suite.js';

let app: FastifyInstance;
let captured: Captured[] = [];
let record: InspectionRecord;
const T0 = Date.UTC(2026, 11, 1, 6, 0, 0);
const ids: string[] = [];

async function serve(r: InspectionRecord | undefined): Promise<FastifyInstance> {
  const a = Fastify({ ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } } });
  // the app's handler (src/server/app.ts): validation -> E_ARGUMENT, else the error's own code
  a.setErrorHandler((error, _request, reply) => {
    const e = (error as { validation?: unknown }).validation !== undefined ? new ServerError('E_ARGUMENT', String((error as Error).message)) : error;
    const { status, body } = toErrorResponse(e);
    void reply.code(status).send(body);
  });
  // as createServer (src/server/app.ts) sets it up: swagger, the shared schemas, then the routes
  await a.register(swagger, { openapi: { info: { title: 'test', version: '1' } } });
  addSharedSchemas(a);
  captured = captureAnswers(a);
  await registerInspectionRoutes(a, { record: r });
  return a;
}

before(async () => {
  record = await openSqliteRecord(tempDir('record-routes'), { retentionIntervalMs: 0 });
  for (let i = 0; i < 12; i++) {
    ids.push(await record.add({ line: 'bottle', time: new Date(T0 + i * 600_000), score: i / 10, verdict: i >= 6 ? 'defect' : 'ok', threshold: 0.55, storeVersion: 3, imageName: i === 0 ? '=cmd|x' : `${i}.jpg`, image: JPEG, heatmapPng: PNG }));
  }
  await record.addAudit({ line: 'bottle', action: 'threshold', before: 0.5, after: 0.55, tokenName: 'alice' });
  app = await serve(record);
});
after(async () => {
  await app.close();
  await record.close();
});

/** GET, and every JSON answer checked against /openapi.json: documented by a named schema, valid, nothing dropped by the serialiser. */
async function get(url: string): Promise<Awaited<ReturnType<FastifyInstance['inject']>>> {
  const res = await app.inject({ url });
  if (String(res.headers['content-type']).startsWith('application/json')) {
    const doc = (app as unknown as { swagger(): OpenApiDoc }).swagger();
    const route = Object.keys(doc.paths).find((p) => new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/]+').replace(/\./g, '\\.')}$`).test(url.split('?')[0]!));
    assert.ok(route !== undefined, `${url}: a documented path`);
    checkJsonAnswer(doc, { path: route, method: 'GET' }, res.statusCode, res.body, captured[captured.length - 1]);
  }
  return res;
}

test('GET /v1/lines/{line}/inspections: newest first, verdict/since/until filters, cursor pages', async () => {
  const first = (await get('/v1/lines/bottle/inspections?limit=5')).json<{ items: Array<{ id: string; verdict: string; image: unknown }>; next: string }>();
  assert.deepEqual(first.items.map((i) => i.id), ids.slice(7).reverse());
  const second = (await get(`/v1/lines/bottle/inspections?limit=5&cursor=${first.next}`)).json<{ items: Array<{ id: string }> }>();
  assert.deepEqual(second.items.map((i) => i.id), ids.slice(2, 7).reverse());
  const defects = (await get('/v1/lines/bottle/inspections?verdict=DEFECT&limit=100')).json<{ items: Array<{ verdict: string }>; next?: string }>();
  assert.equal(defects.items.length, 6);
  assert.ok(defects.items.every((i) => i.verdict === 'defect'));
  assert.equal(defects.next, undefined);
  const since = new Date(T0 + 3 * 600_000).toISOString();
  const windowed = (await get(`/v1/lines/bottle/inspections?since=${since}&until=${T0 + 5 * 600_000}`)).json<{ items: Array<{ id: string }> }>();
  assert.deepEqual(windowed.items.map((i) => i.id), [ids[4], ids[3]]);
});

test('GET /v1/inspections/{id}, /image, /heatmap.png: across a reopen of the record', async () => {
  await record.close();
  record = await openSqliteRecord((record as unknown as { files: { root: string } }).files.root, { retentionIntervalMs: 0 });
  await app.close();
  app = await serve(record);
  const one = await get(`/v1/inspections/${ids[3]}`);
  assert.equal(one.statusCode, 200);
  const body = one.json<Record<string, unknown>>();
  assert.equal(body.id, ids[3]);
  assert.equal(body.score, 0.3);
  assert.equal(body.verdict, 'ok');
  assert.equal(body.threshold, 0.55);
  assert.equal(body.storeVersion, 3);
  assert.equal(body.image, `/v1/inspections/${ids[3]}/image`);
  assert.equal(body.imageFile, undefined, 'no file paths over HTTP');
  assert.equal(body.imageExpired, false);
  const image = await get(`/v1/inspections/${ids[3]}/image`);
  assert.equal(image.headers['content-type'], 'image/jpeg');
  assert.deepEqual(image.rawPayload, JPEG);
  const map = await get(`/v1/inspections/${ids[3]}/heatmap.png`);
  assert.equal(map.headers['content-type'], 'image/png');
  assert.deepEqual(map.rawPayload, PNG);
  assert.equal((await get('/v1/inspections/unknownid')).json<{ error: { code: string } }>().error.code, 'E_NOT_FOUND');
});

test('GET /v1/lines/{line}/inspections.csv streams escaped CSV', async () => {
  const res = await get('/v1/lines/bottle/inspections.csv?verdict=ok');
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/csv/);
  assert.match(String(res.headers['content-disposition']), /bottle-inspections\.csv/);
  const rows = res.body.trimEnd().split('\r\n');
  assert.equal(rows.length, 7);
  assert.ok(rows[6]!.includes(",'=cmd|x,"), rows[6]);
});

test('GET counts, histogram and audit of a line', async () => {
  const counts = (await get(`/v1/lines/bottle/inspections/counts?since=${T0}&until=${T0 + 3 * 3_600_000}&shifts=06:00,07:00&utcOffset=Z`)).json<{ hours: Array<{ ok: number; defect: number }>; shifts: Array<{ shift: string; ok: number; defect: number }> }>();
  assert.deepEqual(counts.hours.map((h) => [h.ok, h.defect]), [[6, 0], [0, 6]]);
  assert.deepEqual(counts.shifts.map((s) => [s.shift, s.ok, s.defect]), [['06:00', 6, 0], ['07:00', 0, 6]]);
  const h = (await get('/v1/lines/bottle/inspections/histogram?last=12&bins=4&threshold=0.75')).json<{ n: number; bins: number[]; wouldChange: number; toOk: number }>();
  assert.equal(h.n, 12);
  assert.equal(h.bins.reduce((a, b) => a + b), 12);
  assert.deepEqual([h.wouldChange, h.toOk], [2, 2]);
  const audit = (await get('/v1/lines/bottle/audit')).json<{ items: Array<{ tokenName: string; after: number }> }>();
  assert.deepEqual(audit.items.map((a) => [a.tokenName, a.after]), [['alice', 0.55]]);
});

test('every bad query parameter is 400 E_ARGUMENT in the one error shape', async () => {
  for (const url of [
    '/v1/lines/bottle/inspections?verdict=maybe',
    '/v1/lines/bottle/inspections?limit=0',
    '/v1/lines/bottle/inspections?limit=abc',
    '/v1/lines/bottle/inspections?limit=1001',
    '/v1/lines/bottle/inspections?since=yesterday',
    '/v1/lines/bottle/inspections?since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z',
    '/v1/lines/bottle/inspections?cursor=xyz',
    '/v1/lines/bottle/inspections?verdict=ok&verdict=defect',
    '/v1/lines/bottle/inspections?verdikt=ok',
    '/v1/lines/bad$line/inspections',
    '/v1/lines/bottle/inspections.csv?since=nope',
    '/v1/lines/bottle/inspections.csv?limit=5',
    '/v1/lines/bottle/inspections/counts?shifts=14:00,06:00',
    '/v1/lines/bottle/inspections/counts?utcOffset=+25:00',
    '/v1/lines/bottle/inspections/counts?since=0&until=99999999999',
    '/v1/lines/bottle/inspections/histogram?threshold=',
    '/v1/lines/bottle/inspections/histogram?threshold=-1',
    '/v1/lines/bottle/inspections/histogram?threshold=NaN',
    '/v1/lines/bottle/inspections/histogram?bins=500',
    '/v1/lines/bottle/audit?limit=-3',
    '/v1/inspections/..%2Fetc',
  ]) {
    const res = await get(url);
    assert.equal(res.statusCode, 400, `${url}: ${res.body}`);
    assert.equal(res.json<{ error: { code: string } }>().error.code, 'E_ARGUMENT', url);
  }
});

test('--history off: the routes say the server keeps no record (404)', async () => {
  const off = await serve(undefined);
  try {
    const res = await off.inject({ url: '/v1/lines/bottle/inspections' });
    assert.equal(res.statusCode, 404);
    assert.match(res.json<{ error: { message: string } }>().error.message, /--history off/);
  } finally {
    await off.close();
  }
});
