/**
 * Queue mode against issue 18's findings 3, 4 and 7 (real redis-server on a
 * loopback port, real `hetmm worker` processes), each failing before the fix:
 *   - 3: a job retried after its worker stopped post-append adds its image
 *     once; a worker paused past its lock's TTL does not write after it
 *     resumes; a client retry with the same Idempotency-Key after 503
 *     E_TIMEOUT adds nothing; a prediction listed three times is added once;
 *   - 4: a worker whose store diverges from the cluster's lineage is refused,
 *     and says so in /readyz, /metrics, `hetmm queue status` and /v1/lines;
 *     /readyz is not ready once no worker can serve a line;
 *   - 7: `serve --redis --max-pixels` is applied by the workers;
 *   - done-when: a worker kill -9 loop during hot updates, with clients
 *     retrying every timeout, stores each acknowledged image exactly once
 *     (HETMM_KILL_LOOP_KILLS kills, default 4; bench/queue-kill-loop.ts for 20).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { Detector } from '../src/detector/detector.js';
import { SharedDirBlobStore } from '../src/queue/blob-store.js';
import { QueueClient } from '../src/queue/client.js';
import { QueueExecutor } from '../src/queue/executor.js';
import { clusterMetrics, clusterStatus } from '../src/queue/status.js';
import { createServer } from '../src/server/index.js';
import { TemplateStore } from '../src/store/index.js';
import { runCli } from './helpers/cli.js';
import { defaultModelPath, tempDir } from './helpers/io-paths.js';
import { recordCompleteSince, runKillLoop } from './helpers/queue-kill-loop.js';
import { FAST_QUEUE_SETTINGS, FAST_WORKER_ENV, fitTileStore, tileDefects, tileGood } from './helpers/queue-tile.js';
import { TestRedis, redisAvailable } from './helpers/redis-server.js';
import { startWorker, type WorkerProcess } from './helpers/worker-process.js';

const good = tileGood;
const defects = tileDefects;
const LINE = 'tile';
const SETTINGS = FAST_QUEUE_SETTINGS;
const WORKER_ENV = FAST_WORKER_ENV;
const TOKEN = 'queue-idem-token-0123456789';
const authJson = { authorization: `Bearer ${TOKEN}` };

const root = tempDir('queue-idem');
const dataDir = path.join(root, 'shared');
const storeFile = path.join(dataDir, `${LINE}.hetmm`);
const blobs = new SharedDirBlobStore(path.join(dataDir, '.blobs'));
let redis: TestRedis;
let client: QueueClient;
let executor: QueueExecutor;
/** max pixels 1 Mpx, the default 30 s request timeout */
let server: FastifyInstance;
/** the same cluster with a request timeout far below a hot update's time */
let hasty: FastifyInstance;
let hastyExecutor: QueueExecutor;
const workers: WorkerProcess[] = [];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const alive = (w: WorkerProcess): boolean => w.child.exitCode === null && w.child.signalCode === null;
const namesIn = async (file: string, name: string): Promise<number> => (await TemplateStore.load(file)).files.filter((f) => f === name).length;

async function addWorker(dir = dataDir): Promise<WorkerProcess> {
  const w = await startWorker(redis.url, dir, { args: ['--threads', '1'], env: WORKER_ENV });
  workers.push(w);
  return w;
}

async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000, pollMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(pollMs);
  }
}

describe('queue mode: idempotent hot updates, store identity, pixel limit (issue 18)', { skip: redisAvailable || process.env.CI ? false : 'no redis-server installed (CI installs it and never skips)' }, () => {
  before(async () => {
    mkdirSync(dataDir, { recursive: true });
    redis = await TestRedis.start();
    await fitTileStore(storeFile, 3);
    await Promise.all([addWorker(), addWorker()]);
    client = await QueueClient.open({ redisUrl: redis.url, blobs, settings: SETTINGS });
    executor = await QueueExecutor.open({ redisUrl: redis.url, blobs, settings: SETTINGS, maxPixels: 1_000_000 });
    server = await createServer({ executor, token: TOKEN, logger: false });
    hastyExecutor = await QueueExecutor.open({ redisUrl: redis.url, blobs, settings: SETTINGS });
    hasty = await createServer({ executor: hastyExecutor, token: TOKEN, logger: false, requestTimeout: 30 });
  });

  after(async () => {
    await server?.close();
    await hasty?.close();
    await executor?.close();
    await hastyExecutor?.close();
    await client?.close();
    for (const w of workers) {
      if (w.child.signalCode === null && w.child.exitCode === null) {
        w.child.kill('SIGCONT');
        w.child.kill('SIGKILL');
      }
    }
    await Promise.all(workers.map((w) => w.exited));
    await redis?.stop();
  });

  it('finding 3: a job retried after its worker died post-append (the append durable, the job not completed) adds the image once', async () => {
    let caught = false;
    for (let attempt = 0; attempt < 3 && !caught; attempt++) {
      const name = `retried-${attempt}.jpg`;
      const size = statSync(storeFile).size;
      const pending = client.addNormals(LINE, [{ bytes: readFileSync(good[20 + attempt]!), name }]);
      // kill the writer the moment its record is complete, before it can announce and complete the job
      await until('the append', () => (recordCompleteSince(storeFile, size) ? true : undefined), 60_000, 1);
      // the writer holds the line's lock (its token starts with its id)
      const holder = (await client.redis.get(client.keys.lock(LINE))) ?? '';
      const writer = workers.find((w) => alive(w) && holder.startsWith(`${w.id}:`));
      writer?.child.kill('SIGKILL');
      const result = await pending;
      if (writer !== undefined) await Promise.all([writer.exited, addWorker()]);
      // the job completed by its retry (attempt 2) or, if the stop came too late, by the first writer
      assert.equal(await namesIn(storeFile, name), 1, `${name} stored once (result ${JSON.stringify(result)})`);
      caught = result.duplicates === 1 && result.added === 0;
      await sleep(500);
    }
    assert.ok(caught, 'at least one of three tries killed the writer between its durable append and the job completion');
  });

  it("finding 3: a worker paused past its lock's time to live does not write after it resumes (fencing)", async () => {
    const name = 'paused.jpg';
    const lockKey = client.keys.lock(LINE);
    const pending = client.addNormals(LINE, [{ bytes: readFileSync(good[30]!), name }]);
    const holder = await until('the line lock', async () => (await client.redis.get(lockKey)) ?? undefined, 30_000, 2);
    const victim = workers.find((w) => alive(w) && holder.startsWith(`${w.id}:`))!;
    assert.ok(victim !== undefined, `the holder ${holder} is one of the workers`);
    victim.child.kill('SIGSTOP');
    let result;
    try {
      // the lock (2 s) and the job's lock expire; the other worker retries the job, with a newer fencing token
      result = await pending;
    } finally {
      victim.child.kill('SIGCONT');
    }
    const from = victim.log.length;
    await until('the resumed worker to end its attempt', () => (victim.log.slice(from).some((l) => /failed|done/.test(l)) ? true : undefined), 15_000);
    await sleep(1000);
    assert.equal(await namesIn(storeFile, name), 1, 'the paused worker wrote nothing after it resumed');
    assert.ok(victim.log.slice(from).some((l) => /lost the line's lock|fencing token/.test(l)), victim.log.slice(from).join('\n'));
    assert.equal(result.added + result.duplicates, 1);
  });

  it('findings 3 and 8: a client retry with the same Idempotency-Key after 503 E_TIMEOUT adds nothing; a prediction listed three times is added once', async () => {
    const bytes = readFileSync(good[40]!);
    const headers = { 'content-type': 'image/jpeg', ...authJson, 'idempotency-key': 'cam7-frame-991' };
    const timedOut = await hasty.inject({ method: 'POST', url: `/v1/lines/${LINE}/normals?name=timeout.jpg`, payload: bytes, headers });
    assert.equal(timedOut.statusCode, 503, timedOut.body);
    assert.equal(timedOut.json<{ error: { code: string } }>().error.code, 'E_TIMEOUT');
    const retried = await server.inject({ method: 'POST', url: `/v1/lines/${LINE}/normals?name=timeout.jpg`, payload: bytes, headers });
    assert.equal(retried.statusCode, 200, retried.body);
    const again = await server.inject({ method: 'POST', url: `/v1/lines/${LINE}/normals?name=timeout.jpg`, payload: bytes, headers });
    assert.equal(again.json<{ repeated?: boolean }>().repeated, true, again.body);
    assert.match(again.json<{ note: string }>().note, /already applied/);
    assert.equal(await namesIn(storeFile, 'timeout.jpg'), 1);

    const predicted = await server.inject({ method: 'POST', url: `/v1/lines/${LINE}/predict?name=marked.jpg`, payload: readFileSync(defects[0]!), headers: { 'content-type': 'image/jpeg' } });
    assert.equal(predicted.statusCode, 200, predicted.body);
    const id = predicted.json<{ id: string }>().id;
    const mark = async (payload: unknown): Promise<{ added: number; duplicates: number }> => {
      const r = await server.inject({ method: 'POST', url: `/v1/lines/${LINE}/normals`, payload: payload as Record<string, unknown>, headers: authJson });
      assert.equal(r.statusCode, 200, r.body);
      return r.json();
    };
    const three = await mark({ predictions: [id, id, id] });
    assert.deepEqual([three.added, three.duplicates], [1, 2]);
    const twice = await mark({ prediction: id });
    assert.deepEqual([twice.added, twice.duplicates], [0, 1]);
    assert.equal(await namesIn(storeFile, 'marked.jpg'), 1);
  });

  it('finding 7: the API node\'s --max-pixels is applied by the workers', async () => {
    const big = await sharp({ create: { width: 1200, height: 1000, channels: 3, background: { r: 90, g: 90, b: 90 } } }).png().toBuffer();
    const predict = await server.inject({ method: 'POST', url: `/v1/lines/${LINE}/predict`, payload: big, headers: { 'content-type': 'image/png' } });
    assert.equal(predict.statusCode, 413, predict.body);
    assert.equal(predict.json<{ error: { code: string } }>().error.code, 'E_IMAGE_TOO_LARGE');
    const normals = await server.inject({ method: 'POST', url: `/v1/lines/${LINE}/normals?name=big.png`, payload: big, headers: { 'content-type': 'image/png', ...authJson } });
    assert.equal(normals.statusCode, 413, normals.body);
    // under the limit it is served
    const small = await sharp(big).resize(900, 800).png().toBuffer();
    assert.equal((await server.inject({ method: 'POST', url: `/v1/lines/${LINE}/predict`, payload: small, headers: { 'content-type': 'image/png' } })).statusCode, 200);
  });

  it('finding 4: a worker whose store diverged from the cluster is refused, in /readyz, /metrics, queue status and /v1/lines', async () => {
    // a private copy of the shared store that then took an append of its own
    const privateDir = path.join(root, 'private');
    mkdirSync(privateDir);
    copyFileSync(storeFile, path.join(privateDir, `${LINE}.hetmm`));
    const detector = await Detector.open({ model: defaultModelPath, store: path.join(privateDir, `${LINE}.hetmm`) });
    try {
      await detector.add([good[50]!]);
    } finally {
      detector.dispose();
    }
    // and a store of another lineage (a new fit) under the same line name
    const otherDir = path.join(root, 'other');
    mkdirSync(otherDir);
    const other = await Detector.open({ model: defaultModelPath, preset: 'default', dtype: 'float32' });
    try {
      await other.add(good.slice(60, 62));
      await other.store.save(path.join(otherDir, `${LINE}.hetmm`));
    } finally {
      other.dispose();
    }
    const diverged = await addWorker(privateDir);
    const foreign = await addWorker(otherDir);
    await sleep(1200);
    const status = await clusterStatus(client);
    const line = (w: WorkerProcess): { state: string; error?: string } => status.workers.find((s) => s.id === w.id)!.lines[LINE]!;
    assert.equal(line(diverged).state, 'refused');
    assert.match(line(diverged).error!, /beyond the cluster's \d+, appended outside the cluster/);
    assert.equal(line(foreign).state, 'refused');
    assert.match(line(foreign).error!, /lineage/);
    assert.ok(status.lines.find((l) => l.line === LINE)!.readyWorkers >= 1);
    const metrics = await clusterMetrics(client, status);
    assert.match(metrics, new RegExp(`hetmm_worker_line_refused\\{worker="${diverged.id}",line="${LINE}"\\} 1`));
    assert.match(metrics, new RegExp(`hetmm_worker_line_ready\\{worker="${diverged.id}",line="${LINE}"\\} 0`));
    const cli = await runCli('queue', 'status', '--redis', redis.url);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`${LINE} REFUSED: line ${LINE}: refused: the store holds 1 templates beyond`));
    await executor.refresh();
    const lines = (await server.inject({ url: '/v1/lines' })).json<{ broken: Array<{ line: string; state: string; worker: string }> }>();
    assert.deepEqual(lines.broken.filter((b) => b.state === 'refused').map((b) => b.worker).sort(), [diverged.id, foreign.id].sort());
    const ready = await server.inject({ url: '/readyz' });
    assert.equal(ready.statusCode, 200, 'the shared store is still served by the other workers');
    assert.equal(ready.json<{ broken: unknown[] }>().broken.length, 2);
    // the refused worker takes none of the line's jobs: every prediction comes from a worker on the shared store
    const results = await Promise.all(defects.slice(1, 5).map((f) => client.predict(LINE, { bytes: readFileSync(f), name: path.basename(f) })));
    assert.ok(results.every((r) => r.worker !== diverged.id && r.worker !== foreign.id));
    // once no worker can serve the line (only refused ones are left), /readyz says so
    for (const w of workers.filter((x) => alive(x) && x !== diverged && x !== foreign)) {
      w.child.kill('SIGKILL');
      await w.exited;
    }
    await sleep(2000);
    await executor.refresh();
    const notReady = await server.inject({ url: '/readyz' });
    assert.equal(notReady.statusCode, 503, notReady.body);
    assert.match(notReady.body, new RegExp(`line '${LINE}': no worker serves it \\(line ${LINE}: refused`));
  });

  it('done-when: a worker kill -9 loop during hot updates, clients retrying every timeout, stores each acknowledged image exactly once', async () => {
    const kills = Number(process.env.HETMM_KILL_LOOP_KILLS ?? '4');
    const loopDir = path.join(root, 'kill-loop');
    mkdirSync(loopDir);
    const r = await runKillLoop({ redisUrl: redis.url, dataDir: loopDir, line: 'kl', images: good.slice(100, 140), kills, maxMs: 240_000, workerEnv: WORKER_ENV });
    assert.ok(r.kills >= Math.min(kills, 2), `${r.kills} kills within the time bound`);
    assert.ok(r.acknowledged.length > 0);
    for (const name of r.acknowledged) assert.equal(r.stored.get(name), 1, `${name}: acknowledged, stored ${r.stored.get(name) ?? 0} times`);
    for (const [name, n] of r.stored) assert.ok(n === 1 || !name.startsWith('c'), `${name}: stored ${n} times`);
  });
});
