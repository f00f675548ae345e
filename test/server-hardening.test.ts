/**
 * The in-process server against issue 18's findings (each failed before
 * the fix):
 *   - 6: one corrupt store, or one missing its int8 model, in --data-dir no
 *     longer stops the server: it is listed with its reason, the others serve;
 *   - 7: one pixel-limit default (the library's 64 Mpx), not a second 40 M;
 *   - 8: hot updates are idempotent (Idempotency-Key; a prediction marked
 *     twice, or listed three times, is added once) and raw uploads keep a name;
 *   - 9: a Host header that is not this server's is refused (DNS rebinding);
 *   - 12: a multipart boundary over 256 characters and a 5000-character
 *     line name answer 400 in the one error shape, as every route's errors do.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { TemplateStore } from '../src/store/index.js';
import { tempDir } from './helpers/io-paths.js';
import { auth, bottleBroken, bottleGood, fitBottleStore, readImage, spawnServe, startServer, TEST_TOKEN, type RunningServer } from './helpers/server.js';

const tmp = tempDir('server-hardening');
const dataDir = path.join(tmp, 'data');
const storeFile = path.join(dataDir, 'bottle.hetmm');
const good = readImage(bottleGood[0]!);
let server: RunningServer;

interface ErrorJson {
  error: { code: string; message: string };
}

function assertErrorShape(status: number, text: string, expected: { status: number; code: string }, what: string): void {
  assert.equal(status, expected.status, `${what}: ${text}`);
  const json = JSON.parse(text) as ErrorJson;
  assert.deepEqual(Object.keys(json), ['error'], `${what}: ${text}`);
  assert.deepEqual(Object.keys(json.error).sort(), ['code', 'message'], `${what}: ${text}`);
  assert.equal(json.error.code, expected.code, `${what}: ${text}`);
}

/** A raw HTTP request with any Host header (fetch does not let a caller set Host). */
function rawGet(base: string, url: string, host: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port, path: url, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('server hardening (issue 18 findings 6, 7, 8, 9, 12)', () => {
  before(async () => {
    mkdirSync(dataDir, { recursive: true });
    await fitBottleStore(storeFile, 3);
    // a corrupt store, and a store whose int8 backbone is not beside it
    writeFileSync(path.join(dataDir, 'corrupt.hetmm'), 'HETMMTS\0 but nothing after');
    const orphan = await TemplateStore.load(storeFile);
    orphan.meta = { ...orphan.meta, int8Backbone: 'orphan.int8.onnx' };
    await orphan.save(path.join(tmp, 'orphan.hetmm'));
    copyFileSync(path.join(tmp, 'orphan.hetmm'), path.join(dataDir, 'orphan.hetmm'));
    server = await startServer({ dataDir, token: TEST_TOKEN, allowedHosts: ['inspect.plant.example'] });
  });

  after(async () => {
    await server?.close();
  });

  it('finding 6: a corrupt store and one missing its int8 model are listed with their reasons; the other line serves', async () => {
    const lines = (await (await fetch(`${server.base}/v1/lines`)).json()) as { lines: Array<{ name: string }>; broken: Array<{ line: string; state: string; reason: string }> };
    assert.deepEqual(lines.lines.map((l) => l.name), ['bottle']);
    assert.deepEqual(lines.broken.map((b) => [b.line, b.state]), [['corrupt', 'failed'], ['orphan', 'failed']]);
    assert.match(lines.broken[0]!.reason, /^E_STORE_FORMAT: /);
    assert.match(lines.broken[1]!.reason, /^E_MODEL_NOT_FOUND: .*orphan\.int8\.onnx/);
    const ready = await fetch(`${server.base}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(((await ready.json()) as { broken: unknown[] }).broken.length, 2);
    const predicted = await fetch(`${server.base}/v1/lines/bottle/predict`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(good) });
    assert.equal(predicted.status, 200, await predicted.text());
    // a broken line's name is not taken over by a new fit over HTTP
    const form = new FormData();
    form.append('f', new Blob([new Uint8Array(good)], { type: 'image/png' }), 'a.png');
    const create = await fetch(`${server.base}/v1/lines?name=corrupt`, { method: 'POST', headers: auth, body: form });
    assertErrorShape(create.status, await create.text(), { status: 409, code: 'E_CONFLICT' }, 'create over a broken line');
  });

  it('finding 6: `hetmm serve --data-dir` with a broken store starts, serves the good line and names the broken ones', async () => {
    const serve = await spawnServe(['--data-dir', dataDir]);
    try {
      // a process just started on a loaded machine may answer 503 (event-loop pressure) for a moment
      let r = await fetch(`${serve.base}/v1/lines`);
      for (let i = 0; i < 40 && r.status === 503; i++) {
        await new Promise((done) => setTimeout(done, 250));
        r = await fetch(`${serve.base}/v1/lines`);
      }
      const text = await r.text();
      assert.equal(r.status, 200, text);
      const lines = JSON.parse(text) as { lines: Array<{ name: string }> };
      assert.deepEqual(lines.lines.map((l) => l.name), ['bottle']);
      assert.match(serve.stderr(), /line corrupt is not served: E_STORE_FORMAT/);
      assert.match(serve.stderr(), /line orphan is not served: E_MODEL_NOT_FOUND/);
    } finally {
      serve.child.kill('SIGTERM');
      await new Promise((r) => serve.child.once('exit', r));
    }
  });

  it('finding 8: a repeated Idempotency-Key adds nothing and says so; raw uploads keep a name', async () => {
    const post = (headers: Record<string, string>, query = ''): Promise<Response> =>
      fetch(`${server.base}/v1/lines/bottle/normals${query}`, { method: 'POST', headers: { 'content-type': 'image/png', ...auth, ...headers }, body: new Uint8Array(good) });
    const first = await post({ 'idempotency-key': 'retry-me-1', 'content-disposition': 'attachment; filename="cam2-0042.png"' });
    assert.equal(first.status, 200, await first.clone().text());
    const a = (await first.json()) as { added: number; duplicates: number; templates: number; version: number };
    assert.deepEqual([a.added, a.duplicates], [1, 0]);
    const retry = await post({ 'idempotency-key': 'retry-me-1' });
    const b = (await retry.json()) as { added: number; duplicates: number; templates: number; version: number; note: string };
    assert.deepEqual([b.added, b.duplicates, b.templates, b.version], [0, 1, a.templates, a.version]);
    assert.match(b.note, /already in the store/);
    // a raw body without any name is named after its content, not 'upload'
    await post({});
    const bad = await post({ 'idempotency-key': 'no spaces allowed' });
    assertErrorShape(bad.status, await bad.text(), { status: 400, code: 'E_ARGUMENT' }, 'bad key');
    const files = (await TemplateStore.load(storeFile)).files;
    assert.equal(files.filter((f) => f === 'cam2-0042.png').length, 1);
    const hash = createHash('sha256').update(good).digest('hex').slice(0, 12);
    assert.deepEqual(files.slice(-2), ['cam2-0042.png', `upload-${hash}`]);
  });

  it('finding 8: a prediction marked as normal twice, or listed three times, is added once', async () => {
    const image = readImage(bottleBroken[1]!);
    const predicted = (await (await fetch(`${server.base}/v1/lines/bottle/predict?name=mark.png`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(image) })).json()) as { id: string };
    const mark = async (payload: unknown): Promise<{ added: number; duplicates: number; templates: number }> => {
      const r = await fetch(`${server.base}/v1/lines/bottle/normals`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify(payload) });
      assert.equal(r.status, 200, await r.clone().text());
      return (await r.json()) as { added: number; duplicates: number; templates: number };
    };
    const before = (await TemplateStore.load(storeFile)).count;
    const three = await mark({ predictions: [predicted.id, predicted.id, predicted.id] });
    assert.deepEqual([three.added, three.duplicates, three.templates], [1, 2, before + 1]);
    const again = await mark({ prediction: predicted.id });
    assert.deepEqual([again.added, again.duplicates, again.templates], [0, 1, before + 1]);
    const store = await TemplateStore.load(storeFile);
    assert.equal(store.count, before + 1);
    assert.equal(store.files.filter((f) => f === 'mark.png').length, 1);
  });

  it('finding 9: a Host header that is not this server is refused; loopback, the address itself and --allowed-hosts are accepted', async () => {
    const predicted = (await (await fetch(`${server.base}/v1/lines/bottle/predict`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(good) })).json()) as { id: string };
    const url = `/v1/predictions/${predicted.id}/image`;
    const port = new URL(server.base).port;
    const rebound = await rawGet(server.base, url, `attacker.example:${port}`);
    assertErrorShape(rebound.status, rebound.body, { status: 403, code: 'E_FORBIDDEN' }, 'rebinding Host');
    assert.match(rebound.body, /--allowed-hosts/);
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, 'INSPECT.plant.example', `inspect.plant.example:${port}`]) {
      assert.equal((await rawGet(server.base, url, host)).status, 200, host);
    }
    assert.equal((await rawGet(server.base, '/healthz', 'evil.example')).status, 403);
  });

  it('finding 7: the in-process default pixel limit is the library default (64 Mpx), not 40 M', async () => {
    // 42 Mpx: over the old 40 M default, under 64 Mpx; a flat image encodes small
    const big = await sharp({ create: { width: 7000, height: 6000, channels: 3, background: { r: 120, g: 120, b: 120 } } }).png({ compressionLevel: 1 }).toBuffer();
    const r = await fetch(`${server.base}/v1/lines/bottle/predict`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(big) });
    assert.equal(r.status, 200, await r.text());
  });

  it('finding 12: a 300-character multipart boundary and a 5000-character line name answer 400 in the one error shape', async () => {
    const boundary = 'b'.repeat(300);
    const multipart = await fetch(`${server.base}/v1/lines/bottle/predict`, {
      method: 'POST',
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      body: `--${boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\n\r\nxx\r\n--${boundary}--\r\n`,
    });
    assertErrorShape(multipart.status, await multipart.text(), { status: 400, code: 'E_ARGUMENT' }, 'long boundary');
    const long = 'a'.repeat(5000);
    const probes: Array<[string, string, number, string]> = [
      ['GET', `/v1/lines/${long}`, 400, 'E_ARGUMENT'],
      ['POST', `/v1/lines/${long}/predict`, 400, 'E_ARGUMENT'],
      ['POST', `/v1/lines/${long}/normals`, 400, 'E_ARGUMENT'],
      ['PUT', `/v1/lines/${long}/threshold`, 400, 'E_ARGUMENT'],
      ['DELETE', `/v1/lines/${long}`, 400, 'E_ARGUMENT'],
      ['GET', `/v1/lines/${long}/events`, 400, 'E_ARGUMENT'],
      ['GET', `/v1/predictions/${long}`, 400, 'E_ARGUMENT'],
      ['GET', `/v1/predictions/${long}/heatmap.png`, 400, 'E_ARGUMENT'],
      ['GET', `/v1/jobs/${long}`, 400, 'E_ARGUMENT'],
      ['GET', '/v1/lines/%E0%A4%A', 400, 'E_ARGUMENT'],
      ['GET', '/v1/lines/no-such-line', 404, 'E_NOT_FOUND'],
      ['GET', '/v1/predictions/unknown', 404, 'E_NOT_FOUND'],
      ['GET', '/v1/jobs/unknown', 404, 'E_NOT_FOUND'],
      ['POST', '/v1/lines/bottle/predict', 415, 'E_UNSUPPORTED_MEDIA'],
      ['PUT', '/v1/lines/bottle/threshold', 401, 'E_UNAUTHORIZED'],
      ['PATCH', '/v1/lines/bottle', 404, 'E_NOT_FOUND'],
      ['GET', '/nowhere', 404, 'E_NOT_FOUND'],
    ];
    for (const [method, url, status, code] of probes) {
      const r = await fetch(`${server.base}${url}`, { method, headers: method === 'POST' ? { 'content-type': 'text/plain' } : {}, ...(method === 'POST' ? { body: 'x' } : {}) });
      assertErrorShape(r.status, await r.text(), { status, code }, `${method} ${url.slice(0, 60)}`);
    }
  });
});
