/**
 * The inspection server's REST API over a real loopback port with the real
 * backbone and the bundled MVTec bottle images: predictions and their maps,
 * hot updates (by upload and by prediction id) that are on disk before the
 * answer, thresholds, server-sent events, health and metrics, the one error
 * shape with the right statuses, the bearer token on every mutating call,
 * bounded queues (429 + Retry-After), timeouts and pressure (503), and lines
 * created and deleted in a data directory.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { storeVersion } from '../src/fit/line-state.js';
import { TemplateStore } from '../src/store/index.js';
import { tempDir } from './helpers/io-paths.js';
import {
  addNormal,
  auth,
  body,
  bottleBroken,
  bottleGood,
  bottleTrain,
  fitBottleStore,
  postImage,
  readImage,
  startServer,
  TEST_TOKEN,
  type ErrorJson,
  type RunningServer,
} from './helpers/server.js';

const tmp = tempDir('server-api');
const storeFile = path.join(tmp, 'bottle.hetmm');
const broken = readImage(bottleBroken[0]!);
const good = readImage(bottleGood[0]!);
let server: RunningServer;

interface PredictionJson {
  id: string;
  line: string;
  name: string;
  score: number;
  label?: 'ok' | 'defect';
  threshold?: number;
  templates: number;
  version: number;
  width: number;
  height: number;
  timings: Record<string, number>;
  maps: { heatmap?: string; mask?: string; npy?: string };
}

const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

async function expectError(response: Response, status: number, code: string): Promise<ErrorJson> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  assert.match(response.headers.get('content-type') ?? '', /application\/json/);
  const body = JSON.parse(text) as ErrorJson;
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(body.error.code, code, text);
  assert.ok(body.error.message.length > 10, text);
  return body;
}

/** Reads server-sent events until `until` is satisfied or the time runs out. */
async function collectEvents(url: string, until: (events: Array<{ event: string; data: any }>) => boolean, trigger: () => Promise<void>): Promise<Array<{ event: string; data: any }>> {
  const controller = new AbortController();
  const response = await fetch(url, { signal: controller.signal });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /text\/event-stream/);
  const reader = response.body!.getReader();
  const events: Array<{ event: string; data: any }> = [];
  let buffer = '';
  const timer = setTimeout(() => controller.abort(), 60_000);
  let triggered = false;
  try {
    while (!until(events)) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += Buffer.from(value).toString('utf8');
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event !== undefined && data !== undefined) events.push({ event, data: JSON.parse(data) });
      }
      if (!triggered && events.some((e) => e.event === 'line')) {
        triggered = true;
        void trigger();
      }
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return events;
}

before(async () => {
  await fitBottleStore(storeFile);
  server = await startServer({ stores: [storeFile], token: TEST_TOKEN });
});

after(async () => {
  await server?.close();
});

describe('server API', () => {
  it('lists the lines and describes one', async () => {
    const list = (await (await fetch(`${server.base}/v1/lines`)).json()) as { changes: string; lines: Array<Record<string, unknown>> };
    assert.equal(list.changes, 'token');
    assert.deepEqual(list.lines.map((l) => l.name), ['bottle']);
    const info = (await (await fetch(`${server.base}/v1/lines/bottle`)).json()) as Record<string, any>;
    assert.equal(info.templates, bottleTrain.length);
    assert.equal(info.preset, 'bottle');
    assert.equal(typeof info.threshold.value, 'number');
    assert.equal(info.version, bottleTrain.length, 'version = templates + revision (no revision yet)');
    assert.equal(info.bytesOnDisk, readFileSync(storeFile).length);
  });

  it('predicts a raw PNG: DEFECT for a broken bottle, OK for a good one, with timings and maps by URL', async () => {
    const r1 = await postImage(server.base, 'bottle', broken, '?maps=png&name=broken.png');
    assert.equal(r1.status, 200);
    const p1 = (await r1.json()) as PredictionJson;
    assert.equal(p1.label, 'defect');
    assert.ok(p1.score > p1.threshold!, `${p1.score} > ${p1.threshold}`);
    assert.equal(p1.name, 'broken.png');
    assert.equal(p1.templates, bottleTrain.length);
    assert.deepEqual([p1.width, p1.height], [900, 900]);
    for (const stage of ['queue', 'decode', 'backbone', 'match', 'score', 'maps']) assert.ok(p1.timings[stage]! >= 0, stage);
    const heatmap = await fetch(`${server.base}${p1.maps.heatmap!}`);
    assert.equal(heatmap.headers.get('content-type'), 'image/png');
    const meta = await sharp(Buffer.from(await heatmap.arrayBuffer())).metadata();
    assert.deepEqual([meta.width, meta.height, meta.channels], [256, 256, 3]);
    const mask = await sharp(Buffer.from(await (await fetch(`${server.base}${p1.maps.mask!}`)).arrayBuffer())).raw().toBuffer();
    assert.ok(mask.some((v) => v > 0), 'the mask marks the break');
    const image = await fetch(`${server.base}/v1/predictions/${p1.id}/image`);
    assert.equal(image.headers.get('content-type'), 'image/png');
    assert.deepEqual(Buffer.from(await image.arrayBuffer()), broken);

    const r2 = await postImage(server.base, 'bottle', good);
    const p2 = (await r2.json()) as PredictionJson;
    assert.equal(p2.label, 'ok');
    assert.deepEqual(p2.maps, {}, 'maps=none is the default');
  });

  it('answers maps inline as data URLs, and the raw map as .npy', async () => {
    const inline = (await (await postImage(server.base, 'bottle', broken, '?maps=png&inline=true')).json()) as PredictionJson;
    assert.match(inline.maps.heatmap!, /^data:image\/png;base64,/);
    const png = Buffer.from(inline.maps.heatmap!.split(',')[1]!, 'base64');
    assert.equal((await sharp(png).metadata()).width, 256);
    const npy = (await (await postImage(server.base, 'bottle', broken, '?maps=npy')).json()) as PredictionJson;
    const bytes = Buffer.from(await (await fetch(`${server.base}${npy.maps.npy!}`)).arrayBuffer());
    assert.equal(bytes.subarray(0, 6).toString('latin1'), '\x93NUMPY');
    const headerLength = bytes.readUInt16LE(8);
    assert.match(bytes.subarray(10, 10 + headerLength).toString('latin1'), /'shape': \(256, 256\)/);
    const map = new Float32Array(bytes.buffer.slice(bytes.byteOffset + 10 + headerLength, bytes.byteOffset + bytes.length));
    assert.equal(map.length, 256 * 256);
    assert.ok(map.every(Number.isFinite));
    await expectError(await postImage(server.base, 'bottle', broken, '?maps=jpeg'), 400, 'E_ARGUMENT');
  });

  it('predicts every file of a multipart request, a corrupt one answered in its place', async () => {
    const form = new FormData();
    form.append('a', new Blob([body(broken)], { type: 'image/png' }), 'broken.png');
    form.append('b', new Blob([body(good.subarray(0, 400))], { type: 'image/png' }), 'cut.png');
    form.append('c', new Blob([body(good)], { type: 'image/png' }), 'good.png');
    const r = await fetch(`${server.base}/v1/lines/bottle/predict`, { method: 'POST', body: form });
    assert.equal(r.status, 200);
    const { results } = (await r.json()) as { results: Array<PredictionJson & ErrorJson> };
    assert.deepEqual(results.map((x) => x.label ?? x.error.code), ['defect', 'E_IMAGE_DECODE', 'ok']);
    assert.match(results[1]!.error.message, /cut\.png/);
  });

  it('hot update by upload and by prediction id: on disk before the answer, and effective at once', async () => {
    const before = (await (await fetch(`${server.base}/v1/lines/bottle`)).json()) as { templates: number; version: number };
    // a good part scored against the store, then added: it must then score ~0 against itself
    const r = await addNormal(server.base, 'bottle', good, 'good-000.png');
    assert.equal(r.status, 200);
    const added = (await r.json()) as { added: number; templates: number; version: number; ids: string[] };
    // ids: the normal it is held as (issue 21: DELETE .../normals/{id} undoes it)
    assert.equal(added.ids.length, 1);
    assert.deepEqual(added, { line: 'bottle', added: 1, duplicates: 0, templates: before.templates + 1, version: before.version + 1, ids: added.ids } as typeof added);
    const onDisk = await TemplateStore.load(storeFile);
    assert.equal(onDisk.count, added.templates);
    assert.equal(storeVersion(onDisk), added.version);
    assert.equal(onDisk.files.at(-1), 'good-000.png');
    const again = (await (await postImage(server.base, 'bottle', good)).json()) as PredictionJson;
    assert.equal(again.templates, added.templates);
    assert.equal(again.version, added.version);
    assert.ok(again.score < 1e-3, `an added image scores ~0 against itself, got ${again.score}`);

    // "this one was good": by the id of an earlier prediction
    const flagged = (await (await postImage(server.base, 'bottle', readImage(bottleGood[1]!), '?name=good-001.png')).json()) as PredictionJson;
    const byId = await fetch(`${server.base}/v1/lines/bottle/normals`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ prediction: flagged.id }),
    });
    assert.equal(byId.status, 200, await byId.clone().text());
    assert.equal(((await byId.json()) as { templates: number }).templates, added.templates + 1);
    assert.equal((await TemplateStore.load(storeFile)).files.at(-1), 'good-001.png');
    await expectError(
      await fetch(`${server.base}/v1/lines/bottle/normals`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: '{"prediction":"nope"}' }),
      404,
      'E_NOT_FOUND',
    );
    // a batch with one bad image adds nothing
    const form = new FormData();
    form.append('a', new Blob([body(good)], { type: 'image/png' }), 'a.png');
    form.append('b', new Blob([body(Buffer.from('not an image'))], { type: 'image/png' }), 'b.png');
    const count = (await TemplateStore.load(storeFile)).count;
    await expectError(await fetch(`${server.base}/v1/lines/bottle/normals`, { method: 'POST', headers: auth, body: form }), 422, 'E_IMAGE_DECODE');
    assert.equal((await TemplateStore.load(storeFile)).count, count);
  });

  it('PUT threshold changes labels at once and is saved', async () => {
    const info = (await (await fetch(`${server.base}/v1/lines/bottle`)).json()) as { threshold: { value: number }; version: number };
    const r = await fetch(`${server.base}/v1/lines/bottle/threshold`, { method: 'PUT', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ value: 5 }) });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as { version: number }).version, info.version + 1);
    assert.equal(storeVersion(await TemplateStore.load(storeFile)), info.version + 1);
    assert.equal((await TemplateStore.load(storeFile)).meta.threshold && ((await TemplateStore.load(storeFile)).meta.threshold as { value: number }).value, 5);
    assert.equal(((await (await postImage(server.base, 'bottle', broken)).json()) as PredictionJson).label, 'ok');
    await expectError(await fetch(`${server.base}/v1/lines/bottle/threshold`, { method: 'PUT', headers: { 'content-type': 'application/json', ...auth }, body: '{"value":"high"}' }), 400, 'E_ARGUMENT');
    // an empty box (0) or a negative value is refused, and changes nothing (issue 21, observation 2)
    for (const value of ['0', '-0.5', '""', 'null']) {
      await expectError(await fetch(`${server.base}/v1/lines/bottle/threshold`, { method: 'PUT', headers: { 'content-type': 'application/json', ...auth }, body: `{"value":${value}}` }), 400, 'E_ARGUMENT');
    }
    assert.equal(((await TemplateStore.load(storeFile)).meta.threshold as { value: number }).value, 5);
    const back = await fetch(`${server.base}/v1/lines/bottle/threshold`, { method: 'PUT', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ value: info.threshold.value }) });
    assert.equal(back.status, 200);
    assert.equal(((await (await postImage(server.base, 'bottle', broken)).json()) as PredictionJson).label, 'defect');
  });

  it('streams every verdict and store change as server-sent events', async () => {
    const events = await collectEvents(
      `${server.base}/v1/lines/bottle/events`,
      (es) => es.some((e) => e.event === 'verdict') && es.some((e) => e.event === 'store'),
      async () => {
        const p = (await (await postImage(server.base, 'bottle', broken, '?name=sse.png')).json()) as PredictionJson;
        assert.equal(p.label, 'defect');
        const t = (await (await fetch(`${server.base}/v1/lines/bottle`)).json()) as { threshold: { value: number } };
        await fetch(`${server.base}/v1/lines/bottle/threshold`, { method: 'PUT', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ value: t.threshold.value }) });
      },
    );
    assert.equal(events[0]!.event, 'line');
    const verdict = events.find((e) => e.event === 'verdict')!.data;
    assert.equal(verdict.name, 'sse.png');
    assert.equal(verdict.label, 'defect');
    assert.equal(typeof verdict.id, 'string');
    const store = events.find((e) => e.event === 'store')!.data;
    assert.equal(store.change, 'threshold');
  });

  it('health, readiness, Prometheus metrics and the OpenAPI document', async () => {
    assert.deepEqual(await (await fetch(`${server.base}/healthz`)).json(), { status: 'ok' });
    const ready = (await (await fetch(`${server.base}/readyz`)).json()) as { status: string; lines: string[] };
    assert.deepEqual([ready.status, ready.lines], ['ready', ['bottle']]);
    const metrics = await (await fetch(`${server.base}/metrics`)).text();
    for (const name of ['hetmm_http_requests_total', 'hetmm_predict_stage_duration_seconds_bucket', 'hetmm_queue_depth', 'hetmm_templates', 'hetmm_store_version', 'hetmm_rejections_total']) {
      assert.ok(metrics.includes(name), name);
    }
    assert.match(metrics, /hetmm_predict_stage_duration_seconds_count\{line="bottle",stage="backbone"\} [1-9]/);
    const doc = (await (await fetch(`${server.base}/openapi.json`)).json()) as { openapi: string; paths: Record<string, Record<string, { security?: unknown[] }>> };
    assert.match(doc.openapi, /^3\./);
    assert.ok(doc.paths['/v1/lines/{line}/predict']?.post);
    // every call that changes something is documented as needing the token (and the next test checks each one)
    const changing = Object.entries(doc.paths).flatMap(([p, ops]) => Object.entries(ops).filter(([m]) => m !== 'get').map(([m, op]) => ({ p, m, op })));
    const open = changing.filter(({ p, op }) => !p.endsWith('/predict') && (op.security ?? []).length === 0);
    assert.deepEqual(open, []);
    assert.deepEqual(changing.map(({ m, p }) => `${m} ${p}`).sort(), [
      'delete /v1/lines/{line}',
      'delete /v1/lines/{line}/normals/{id}',
      'post /v1/lines',
      'post /v1/lines/{line}/normals',
      'post /v1/lines/{line}/predict',
      'put /v1/lines/{line}/threshold',
    ]);
  });

  it('errors: one JSON shape with the library codes and the right statuses', async () => {
    await expectError(await postImage(server.base, 'nope', broken), 404, 'E_NOT_FOUND');
    await expectError(await postImage(server.base, '..%2F..%2Fetc', broken), 400, 'E_ARGUMENT');
    await expectError(await postImage(server.base, 'bottle', Buffer.from('hello'), '', { 'content-type': 'text/plain' }), 415, 'E_UNSUPPORTED_MEDIA');
    await expectError(await postImage(server.base, 'bottle', good.subarray(0, 5000)), 422, 'E_IMAGE_DECODE');
    await expectError(await postImage(server.base, 'bottle', Buffer.alloc(0)), 400, 'E_NO_IMAGES');
    await expectError(await fetch(`${server.base}/v2/anything`), 404, 'E_NOT_FOUND');
    await expectError(await fetch(`${server.base}/v1/predictions/unknown`), 404, 'E_NOT_FOUND');
  });

  it('no change succeeds without the right token, and the store file stays byte-identical', async () => {
    const hash = sha(storeFile);
    const calls = (headers: Record<string, string>): Array<[string, RequestInit]> => [
      ['/v1/lines/bottle/normals', { method: 'POST', headers: { 'content-type': 'image/png', ...headers }, body: body(good) }],
      ['/v1/lines/bottle/normals', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"prediction":"x"}' }],
      ['/v1/lines/bottle/threshold', { method: 'PUT', headers: { 'content-type': 'application/json', ...headers }, body: '{"value":0}' }],
      ['/v1/lines?name=other', { method: 'POST', headers: { 'content-type': 'image/png', ...headers }, body: body(good) }],
      ['/v1/lines/bottle', { method: 'DELETE', headers }],
      ['/v1/lines/bottle/normals/x', { method: 'DELETE', headers }],
    ];
    for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: `Basic ${TEST_TOKEN}` }, { authorization: `Bearer ${TEST_TOKEN}x` }, { authorization: TEST_TOKEN }] as Array<Record<string, string>>) {
      for (const [url, init] of calls(headers)) await expectError(await fetch(`${server.base}${url}`, init), 401, 'E_UNAUTHORIZED');
    }
    assert.equal(sha(storeFile), hash);

    // no token configured: changes are disabled, not open
    const closed = await startServer({ stores: [storeFile] });
    try {
      assert.equal(((await (await fetch(`${closed.base}/v1/lines`)).json()) as { changes: string }).changes, 'disabled');
      for (const headers of [{}, auth] as Array<Record<string, string>>) {
        for (const [url, init] of calls(headers)) await expectError(await fetch(`${closed.base}${url}`, init), 403, 'E_FORBIDDEN');
      }
      assert.equal((await postImage(closed.base, 'bottle', good)).status, 200, 'predictions still work');
    } finally {
      await closed.close();
    }
    assert.equal(sha(storeFile), hash);
  });
});

describe('server under load limits', () => {
  it('refuses with 429 and Retry-After when the line queue is full, and serves the rest', async () => {
    const busy = await startServer({ stores: [storeFile], concurrency: 1, queueLimit: 1 });
    try {
      const responses = await Promise.all(Array.from({ length: 6 }, () => postImage(busy.base, 'bottle', good)));
      const statuses = responses.map((r) => r.status).sort();
      assert.ok(statuses.includes(200), statuses.join(','));
      assert.ok(statuses.includes(429), statuses.join(','));
      assert.ok(statuses.every((s) => s === 200 || s === 429), statuses.join(','));
      for (const r of responses) {
        if (r.status !== 429) continue;
        assert.ok(Number(r.headers.get('retry-after')) >= 1);
        await expectError(r, 429, 'E_BUSY');
      }
      assert.match(await (await fetch(`${busy.base}/metrics`)).text(), /hetmm_rejections_total\{reason="busy"\} [1-9]/);
      assert.equal((await postImage(busy.base, 'bottle', good)).status, 200);
    } finally {
      await busy.close();
    }
  });

  it('answers 503 E_TIMEOUT past the request timeout, and 503 under memory pressure while /healthz still answers', async () => {
    const slow = await startServer({ stores: [storeFile], requestTimeout: 150 });
    try {
      await expectError(await postImage(slow.base, 'bottle', good), 503, 'E_TIMEOUT');
      assert.equal((await fetch(`${slow.base}/healthz`)).status, 200);
    } finally {
      await slow.close();
    }
    const pressed = await startServer({ stores: [storeFile], maxHeapUsedBytes: 1 });
    try {
      await new Promise((r) => setTimeout(r, 1500)); // the plugin samples memory once a second
      const r = await postImage(pressed.base, 'bottle', good);
      assert.equal(r.headers.get('retry-after'), '5');
      await expectError(r, 503, 'E_UNAVAILABLE');
      assert.equal((await fetch(`${pressed.base}/healthz`)).status, 200);
    } finally {
      await pressed.close();
    }
  });
});

describe('lines in a data directory', () => {
  it('fits a new line from uploads as a job with progress, serves it, deletes it; names never leave the directory', async () => {
    const dataDir = path.join(tmp, 'data');
    const dd = await startServer({ dataDir, token: TEST_TOKEN });
    try {
      assert.deepEqual(((await (await fetch(`${dd.base}/v1/lines`)).json()) as { lines: unknown[] }).lines, []);
      const form = (): FormData => {
        const f = new FormData();
        for (const file of bottleTrain.slice(0, 3)) f.append('images', new Blob([body(readImage(file))], { type: 'image/png' }), path.basename(file));
        return f;
      };
      for (const bad of ['..', '../escape', '.hidden', 'a/b', 'x'.repeat(65), '']) {
        await expectError(await fetch(`${dd.base}/v1/lines?name=${encodeURIComponent(bad)}&preset=bottle`, { method: 'POST', headers: auth, body: form() }), 400, 'E_ARGUMENT');
      }
      const r = await fetch(`${dd.base}/v1/lines?name=line7&preset=bottle`, { method: 'POST', headers: auth, body: form() });
      assert.equal(r.status, 202);
      const { job } = (await r.json()) as { job: { url: string } };
      let state: { state: string; progress: { stage: string; done: number; total: number }; result?: { templates: number } };
      const stages = new Set<string>();
      for (;;) {
        state = (await (await fetch(`${dd.base}${job.url}`)).json()) as typeof state;
        stages.add(state.progress.stage);
        if (state.state !== 'running') break;
        await new Promise((res) => setTimeout(res, 50));
      }
      assert.equal(state.state, 'done', JSON.stringify(state));
      assert.equal(state.result!.templates, 3);
      assert.deepEqual(state.progress, { stage: 'save', done: 1, total: 1 });
      assert.ok(existsSync(path.join(dataDir, 'line7.hetmm')));
      const p = (await (await postImage(dd.base, 'line7', broken)).json()) as PredictionJson;
      assert.equal(p.label, 'defect');
      await expectError(await fetch(`${dd.base}/v1/lines?name=line7`, { method: 'POST', headers: auth, body: form() }), 409, 'E_CONFLICT');
      const del = await fetch(`${dd.base}/v1/lines/line7`, { method: 'DELETE', headers: auth });
      assert.equal(del.status, 204);
      assert.ok(!existsSync(path.join(dataDir, 'line7.hetmm')));
      await expectError(await postImage(dd.base, 'line7', broken), 404, 'E_NOT_FOUND');
    } finally {
      await dd.close();
    }
  });
});
