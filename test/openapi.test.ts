/**
 * /openapi.json documents every answer of every route (issue 22, item 5):
 * each route and method names its success body by a shared schema
 * (components.schemas) and its errors by the one error shape; and the
 * answers of a real server on a loopback port validate against what the
 * document says, with nothing dropped by fastify's serialiser (which
 * writes only the properties a response schema names).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createServer } from '../src/server/index.js';
import { tempDir, defaultModelPath } from './helpers/io-paths.js';
import { captureAnswers, checkJsonAnswer, documentedResponse, namedSchemaProblems, type Captured, type OpenApiDoc } from './helpers/openapi.js';
import { auth, body, bottleBroken, bottleGood, bottleTrain, fitBottleStore, readImage, TEST_TOKEN } from './helpers/server.js';

const tmp = tempDir('openapi');
const storeFile = path.join(tmp, 'bottle.hetmm');
let app: FastifyInstance;
let base: string;
let captured: Captured[];
let doc: OpenApiDoc;

/** route+method -> the success statuses a real answer was checked for */
const exercised = new Map<string, Set<number>>();

before(async () => {
  await fitBottleStore(storeFile, 4);
  app = await createServer({ model: defaultModelPath, maxEventLoopDelay: 0, stores: [storeFile], dataDir: path.join(tmp, 'data'), token: TEST_TOKEN, precision: 'float' });
  captured = captureAnswers(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  base = `http://127.0.0.1:${address.port}`;
  doc = (await (await fetch(`${base}/openapi.json`)).json()) as OpenApiDoc;
});

after(async () => {
  await app?.close();
});

const operations = (): Array<{ path: string; method: string }> =>
  Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((method) => ({ path: p, method })));

/** One call: the answer is checked against the document (JSON: schema, validation, nothing dropped; else the content type). */
async function call(route: { path: string; method: string }, url: string, init: RequestInit = {}): Promise<{ status: number; json: any; response: Response }> {
  const before = captured.length;
  const response = await fetch(`${base}${url}`, { ...init, method: route.method.toUpperCase() });
  const text = await response.text();
  const status = response.status;
  const type = response.headers.get('content-type') ?? '';
  if (status === 204) {
    assert.ok(documentedResponse(doc, route.path, route.method, 204), `${route.method} ${route.path} documents 204`);
  } else if (type.startsWith('application/json')) {
    const mine = captured.slice(before).filter((c) => c.url === url && c.method === route.method.toUpperCase());
    checkJsonAnswer(doc, route, status, text, mine.at(-1));
  } else {
    const documented = documentedResponse(doc, route.path, route.method, status);
    const types = Object.keys(documented?.content ?? {});
    assert.ok(types.some((t) => (t.endsWith('/*') ? type.startsWith(t.slice(0, -1)) : type.startsWith(t))), `${route.method} ${route.path} ${status}: ${type} is one of the documented ${types.join(', ')}`);
  }
  if (status < 300) exercised.set(`${route.method} ${route.path}`, (exercised.get(`${route.method} ${route.path}`) ?? new Set()).add(status));
  return { status, json: type.startsWith('application/json') ? JSON.parse(text) : undefined, response };
}

const png = (bytes: Buffer): RequestInit => ({ headers: { 'content-type': 'image/png' }, body: body(bytes) });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('the OpenAPI document', () => {
  it('documents every route: its success answer by a named schema, its errors by the one error shape', () => {
    const ops = operations();
    assert.ok(ops.length >= 17, `${ops.length} operations documented`);
    const problems: string[] = [];
    for (const { path: p, method } of ops) {
      const where = `${method} ${p}`;
      const responses = doc.paths[p]![method]!.responses ?? {};
      const success = Object.keys(responses).filter((s) => s.startsWith('2'));
      if (success.length === 0) problems.push(`${where}: no success answer documented`);
      for (const status of success) {
        const content = responses[status]!.content;
        if (status === '204') {
          if (content !== undefined) problems.push(`${where} 204: has a body`);
          continue;
        }
        if (content === undefined) {
          problems.push(`${where} ${status}: no content documented`);
          continue;
        }
        const json = content['application/json'];
        if (json !== undefined) for (const problem of namedSchemaProblems(doc, json.schema)) problems.push(`${where} ${status}: ${problem}`);
        for (const [type, media] of Object.entries(content)) {
          if (type !== 'application/json' && media.schema?.type !== 'string') problems.push(`${where} ${status}: ${type} without a string schema`);
        }
      }
      const failures = Object.keys(responses).filter((s) => /^[45]/.test(s));
      if (!failures.some((s) => s.startsWith('4'))) problems.push(`${where}: no 4xx answer documented`);
      if (!failures.some((s) => s.startsWith('5'))) problems.push(`${where}: no 5xx answer documented`);
      for (const status of failures) {
        const schema = responses[status]!.content?.['application/json']?.schema;
        if (schema?.$ref !== '#/components/schemas/Error') problems.push(`${where} ${status}: not the one error shape (${JSON.stringify(schema)})`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it("every route's real answers validate against the document, and the serialiser drops nothing", async () => {
    const r = (method: string, p: string): { path: string; method: string } => ({ path: p, method });
    // health, readiness, metrics
    assert.equal((await call(r('get', '/healthz'), '/healthz')).status, 200);
    assert.equal((await call(r('get', '/readyz'), '/readyz')).status, 200);
    assert.equal((await call(r('get', '/metrics'), '/metrics')).status, 200);
    // lines
    assert.equal((await call(r('get', '/v1/lines'), '/v1/lines')).status, 200);
    const line = await call(r('get', '/v1/lines/{line}'), '/v1/lines/bottle');
    assert.equal(line.status, 200);
    assert.equal(typeof line.json.threshold.value, 'number');
    assert.equal((await call(r('get', '/v1/lines/{line}'), '/v1/lines/nope')).status, 404);
    assert.equal((await call(r('get', '/v1/lines/{line}'), '/v1/lines/.bad')).status, 400);
    // predictions: one image with maps, a batch with a corrupt file, errors
    const predict = r('post', '/v1/lines/{line}/predict');
    const one = await call(predict, '/v1/lines/bottle/predict?maps=png&name=broken.png', png(readImage(bottleBroken[0]!)));
    assert.equal(one.status, 200);
    assert.equal(one.json.label, 'defect');
    assert.ok(one.json.maps.heatmap && one.json.maps.mask);
    const inline = await call(predict, '/v1/lines/bottle/predict?maps=npy&inline=true', png(readImage(bottleGood[0]!)));
    assert.match(inline.json.maps.npy, /^data:application\/octet-stream;base64,/);
    const form = new FormData();
    form.append('a', new Blob([body(readImage(bottleGood[1]!))], { type: 'image/png' }), 'good.png');
    form.append('b', new Blob([body(readImage(bottleGood[1]!).subarray(0, 300))], { type: 'image/png' }), 'cut.png');
    const batch = await call(predict, '/v1/lines/bottle/predict', { body: form });
    assert.deepEqual(batch.json.results.map((x: any) => x.label ?? x.error.code), ['ok', 'E_IMAGE_DECODE']);
    assert.equal((await call(predict, '/v1/lines/bottle/predict', png(readImage(bottleGood[0]!).subarray(0, 500)))).status, 422);
    assert.equal((await call(predict, '/v1/lines/bottle/predict', { headers: { 'content-type': 'text/plain' }, body: 'hello' })).status, 415);
    assert.equal((await call(predict, '/v1/lines/nope/predict', png(readImage(bottleGood[0]!)))).status, 404);
    assert.equal((await call(predict, '/v1/lines/bottle/predict?async=true', png(readImage(bottleGood[0]!)))).status, 400, 'async needs queue mode');
    // the kept prediction and its files
    const id = one.json.id as string;
    assert.equal((await call(r('get', '/v1/predictions/{id}'), `/v1/predictions/${id}`)).status, 200);
    assert.equal((await call(r('get', '/v1/predictions/{id}'), '/v1/predictions/unknown')).status, 404);
    for (const file of ['heatmap.png', 'mask.png', 'image']) assert.equal((await call(r('get', `/v1/predictions/{id}/${file}`), `/v1/predictions/${id}/${file}`)).status, 200, file);
    assert.equal((await call(r('get', '/v1/predictions/{id}/map.npy'), `/v1/predictions/${id}/map.npy`)).status, 404, 'asked for png maps only');
    const npyId = inline.json.id as string;
    assert.equal((await call(r('get', '/v1/predictions/{id}/map.npy'), `/v1/predictions/${npyId}/map.npy`)).status, 200);
    // hot update: by upload, by prediction id (twice: the second adds nothing and says so), without the token
    const normals = r('post', '/v1/lines/{line}/normals');
    const added = await call(normals, '/v1/lines/bottle/normals?name=good-0.png', { headers: { 'content-type': 'image/png', ...auth }, body: body(readImage(bottleGood[2]!)) });
    assert.equal(added.json.added, 1);
    const byId = { headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ prediction: batch.json.results[0].id }) };
    assert.equal((await call(normals, '/v1/lines/bottle/normals', byId)).json.added, 1);
    const again = await call(normals, '/v1/lines/bottle/normals', byId);
    assert.deepEqual([again.json.added, again.json.duplicates, typeof again.json.note], [0, 1, 'string']);
    assert.equal((await call(normals, '/v1/lines/bottle/normals', png(readImage(bottleGood[2]!)))).status, 401);
    // threshold
    const threshold = r('put', '/v1/lines/{line}/threshold');
    const json = (value: unknown): RequestInit => ({ headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ value }) });
    assert.equal((await call(threshold, '/v1/lines/bottle/threshold', json(line.json.threshold.value))).status, 200);
    assert.equal((await call(threshold, '/v1/lines/bottle/threshold', json('high'))).status, 400);
    // a line fitted over HTTP: the job, its progress and result; a conflict; the line deleted
    const create = r('post', '/v1/lines');
    const upload = (): RequestInit => {
      const f = new FormData();
      for (const file of bottleTrain.slice(0, 2)) f.append('images', new Blob([body(readImage(file))], { type: 'image/png' }), path.basename(file));
      return { headers: auth, body: f };
    };
    const accepted = await call(create, '/v1/lines?name=fitted&preset=bottle&precision=float&calibrate=2', upload());
    assert.equal(accepted.status, 202);
    const jobs = r('get', '/v1/jobs/{id}');
    let job = await call(jobs, accepted.json.job.url);
    for (let i = 0; i < 600 && job.json.state === 'running'; i++) {
      await sleep(100);
      job = await call(jobs, accepted.json.job.url);
    }
    assert.equal(job.json.state, 'done', JSON.stringify(job.json));
    assert.equal(job.json.result.templates, 2);
    assert.equal((await call(create, '/v1/lines?name=fitted', upload())).status, 409);
    assert.equal((await call(jobs, '/v1/jobs/unknown')).status, 404);
    assert.equal((await call(r('delete', '/v1/lines/{line}'), '/v1/lines/fitted', { headers: auth })).status, 204);
    assert.equal((await call(r('delete', '/v1/lines/{line}'), '/v1/lines/bottle', { headers: auth })).status, 403, 'a --store line is not deleted over HTTP');
    // the event stream: its content type (the body is a stream of events)
    const controller = new AbortController();
    const events = await fetch(`${base}/v1/lines/bottle/events`, { signal: controller.signal });
    const type = events.headers.get('content-type') ?? '';
    controller.abort();
    assert.ok(Object.keys(documentedResponse(doc, '/v1/lines/{line}/events', 'get', 200)?.content ?? {}).some((t) => type.startsWith(t)), type);
    exercised.set('get /v1/lines/{line}/events', new Set([events.status]));

    // every documented route was answered for real at least once
    const missing = operations().filter(({ path: p, method }) => !exercised.has(`${method} ${p}`)).map(({ path: p, method }) => `${method} ${p}`);
    assert.deepEqual(missing, []);
  });
});
