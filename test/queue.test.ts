/**
 * Queue mode against a real redis-server (started here on a loopback port,
 * own directory, AOF fsync always) and real worker processes (`hetmm
 * worker`), two API-side clients standing for two API nodes:
 *   - results equal in-process predictions bit for bit (score, raw map);
 *   - a poison image fails its job once with the library's error code;
 *   - a hot update through one node is seen by a predict through the other,
 *     on every worker (read-your-writes via the job's minimum store version);
 *   - kill -9 of a worker mid-job: the job is retried by another worker and
 *     completes exactly once; a worker started later loads the updated store;
 *   - Redis killed (-9) and restarted mid-run: no acknowledged job is lost,
 *     calls during the outage fail fast with E_UNAVAILABLE, then recover;
 *   - a store a worker cannot load is reported (status, metrics), not served;
 *   - SIGTERM lets a worker finish its job and exit 0;
 *   - the queue-mode answers over HTTP (async jobs, job results, changes)
 *     validate against /openapi.json, nothing dropped by the serialiser.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QueueEvents } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { Detector } from '../src/detector/detector.js';
import { HetmmError } from '../src/errors.js';
import { npyHeader } from '../src/image/index.js';
import { SharedDirBlobStore } from '../src/queue/blob-store.js';
import { QueueClient, type QueuedPrediction } from '../src/queue/client.js';
import { QueueExecutor } from '../src/queue/executor.js';
import { bullConnection } from '../src/queue/redis.js';
import { createServer } from '../src/server/index.js';
import { clusterMetrics, clusterStatus } from '../src/queue/status.js';
import { datasetsDir, defaultModelPath, listImages, tempDir } from './helpers/io-paths.js';
import { runCli } from './helpers/cli.js';
import { captureAnswers, checkJsonAnswer, type Captured, type OpenApiDoc } from './helpers/openapi.js';
import { TestRedis, redisAvailable } from './helpers/redis-server.js';
import { startWorker, type WorkerProcess } from './helpers/worker-process.js';

const tileRoot = path.join(datasetsDir, 'magnetic-tile/magnetic_tile');
const good = listImages(path.join(tileRoot, 'train/good'));
const defects = listImages(path.join(tileRoot, 'test/crack'));
/** a ~500 KB PNG: over the inline limit, so it travels through the blob store */
const bigImage = path.join(datasetsDir, 'mvtec-bottle-xs/bottle/test/broken_large/000.png');

const LINE = 'tile';
const SETTINGS = { lockDurationMs: 2000, stalledIntervalMs: 1000, heartbeatMs: 500 };
const WORKER_ENV = { HETMM_QUEUE_LOCK_MS: '2000', HETMM_QUEUE_STALLED_MS: '1000', HETMM_QUEUE_HEARTBEAT_MS: '500' };

const dataDir = tempDir('queue-data');
const blobs = new SharedDirBlobStore(path.join(dataDir, '.blobs'));
let redis: TestRedis;
let detector: Detector;
let nodeA: QueueClient;
let nodeB: QueueClient;
/** two API nodes in queue mode (hetmm serve --redis), driven over HTTP with inject */
let serverA: FastifyInstance;
let serverB: FastifyInstance;
let executors: QueueExecutor[] = [];
/** the answers of serverA and serverB before serialisation */
let answersA: Captured[];
let answersB: Captured[];
const TOKEN = 'queue-test-token-0123456789';
const workers: WorkerProcess[] = [];

async function addWorker(): Promise<WorkerProcess> {
  const w = await startWorker(redis.url, dataDir, { args: ['--threads', '1'], env: WORKER_ENV });
  workers.push(w);
  return w;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const image = (file: string): { bytes: Buffer; name: string } => ({ bytes: readFileSync(file), name: path.basename(file) });
const rawMap = (p: { anomalyMap: Float32Array; height: number; width: number }): Buffer =>
  Buffer.concat([npyHeader([p.height, p.width]), Buffer.from(p.anomalyMap.buffer, p.anomalyMap.byteOffset, p.anomalyMap.byteLength)]);

async function expectBitEqual(file: string, queued: QueuedPrediction): Promise<void> {
  const local = await detector.predict(file);
  assert.equal(queued.score, local.score, `${file}: score`);
  assert.equal(queued.templates, local.templates, `${file}: templates`);
  assert.ok(queued.maps.anomalyNpy!.equals(rawMap(local)), `${file}: raw anomaly map bytes`);
}

/** Polls a job until it finished, riding out E_UNAVAILABLE while Redis is away. */
async function settle(client: QueueClient, id: string, timeoutMs = 45_000): Promise<Awaited<ReturnType<QueueClient['job']>>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const s = await client.job(id);
      if (s.state === 'completed' || s.state === 'failed') return s;
    } catch (e) {
      if (!(e instanceof HetmmError && e.code === 'E_UNAVAILABLE')) throw e;
    }
    if (Date.now() > deadline) throw new Error(`job ${id} did not finish within ${timeoutMs} ms`);
    await sleep(100);
  }
}

describe('queue mode (real redis-server, worker processes)', { skip: redisAvailable || process.env.CI ? false : 'no redis-server installed (CI installs it and never skips)' }, () => {
  before(async () => {
    redis = await TestRedis.start();
    detector = await Detector.open({ model: defaultModelPath, preset: 'default', dtype: 'float32' });
    await detector.add(good.slice(0, 3));
    await detector.store.save(path.join(dataDir, `${LINE}.hetmm`));
    writeFileSync(path.join(dataDir, 'broken.hetmm'), 'not a template store');
    await Promise.all([addWorker(), addWorker()]);
    nodeA = await QueueClient.open({ redisUrl: redis.url, blobs, settings: SETTINGS });
    nodeB = await QueueClient.open({ redisUrl: redis.url, blobs, settings: SETTINGS });
    executors = await Promise.all([0, 1].map(() => QueueExecutor.open({ redisUrl: redis.url, blobs, settings: SETTINGS })));
    serverA = await createServer({ executor: executors[0]!, token: TOKEN, logger: false });
    serverB = await createServer({ executor: executors[1]!, token: TOKEN, logger: false });
    answersA = captureAnswers(serverA);
    answersB = captureAnswers(serverB);
  });

  after(async () => {
    await serverA?.close();
    await serverB?.close();
    for (const e of executors) await e.close();
    await nodeA?.close();
    await nodeB?.close();
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    await redis?.stop();
    detector?.dispose();
  });

  it('answers every prediction bit for bit like the in-process detector, across both workers', async () => {
    const files = [...defects.slice(0, 4), good[10]!, bigImage];
    const results = await Promise.all(files.map((f) => nodeA.predict(LINE, image(f), { maps: 'npy' })));
    for (let i = 0; i < files.length; i++) await expectBitEqual(files[i]!, results[i]!);
    assert.ok(results.every((r) => r.version === 3), 'version = templates + revision, as in-process');
    assert.equal(new Set(results.map((r) => r.worker)).size, 2, 'both workers took jobs');
    // the large image went through the blob store, and both blobs were cleaned up after delivery
    assert.deepEqual(readdirSync(path.join(dataDir, '.blobs/results')), []);
  });

  it('fails a poison image once with the library error code, no retries', async () => {
    await assert.rejects(nodeA.predict(LINE, { bytes: Buffer.from('GIF89a but not really'), name: 'poison.gif' }), (e: unknown) => {
      assert.ok(e instanceof HetmmError && e.code === 'E_IMAGE_DECODE', String(e));
      return true;
    });
    const truncated = readFileSync(defects[0]!).subarray(0, 2000);
    const id = await nodeA.submitPredict(LINE, { bytes: truncated, name: 'truncated.jpg' });
    const s = await settle(nodeA, id);
    assert.equal(s.state, 'failed');
    assert.equal(s.attempts, 1, 'not retried');
    assert.match(s.error!.code, /^E_IMAGE_/);
  });

  it('a hot update through one node is seen by the next prediction through another, on every worker', async () => {
    const added = good[3]!;
    const update = await nodeA.addNormals(LINE, [image(added)]);
    assert.deepEqual([update.added, update.templates, update.version], [1, 4, 4]);
    await detector.add([added]);
    // every job now requires version 1; whichever worker takes it must answer from it
    const files = [added, defects[0]!, defects[1]!, good[11]!];
    const results = await Promise.all(files.map((f) => nodeB.predict(LINE, image(f), { maps: 'npy' })));
    for (let i = 0; i < files.length; i++) {
      assert.equal(results[i]!.templates, 4);
      assert.equal(results[i]!.version, 4);
      await expectBitEqual(files[i]!, results[i]!);
    }
    assert.ok(results[0]!.score < 1e-3, `an added image scores ~0 against itself, got ${results[0]!.score}`);
    // both workers applied the update by appending (their status says version 1, 4 templates)
    await sleep(1200);
    const status = await clusterStatus(nodeB);
    for (const w of status.workers) assert.deepEqual([w.lines[LINE]!.version, w.lines[LINE]!.templates], [4, 4], w.id);
  });

  it('reports a store it cannot load instead of serving it', async () => {
    const status = await clusterStatus(nodeA);
    assert.equal(status.workers.length, 2);
    for (const w of status.workers) {
      assert.equal(w.lines.broken!.state, 'failed');
      assert.match(w.lines.broken!.error!, /not a hetmm template store|E_STORE|magic/i);
      assert.equal(w.lines[LINE]!.state, 'ready');
      // lock renewal runs on the event loop: it never stalled for anywhere near half the lock duration
      assert.ok(w.eventLoop.maxMs < SETTINGS.lockDurationMs / 2, `event loop max ${w.eventLoop.maxMs} ms`);
    }
    assert.equal(status.lines.find((l) => l.line === 'broken')?.readyWorkers ?? 0, 0);
    const metrics = await clusterMetrics(nodeA, status);
    assert.match(metrics, /hetmm_worker_line_ready\{worker="[^"]+",line="broken"\} 0/);
    assert.match(metrics, /hetmm_worker_store_version\{worker="[^"]+",line="tile"\} 4/);
    const cli = await runCli('queue', 'status', '--redis', redis.url);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /tile: version 4, waiting 0/);
    assert.match(cli.stdout, /tile@v4 \(4\)/);
    assert.match(cli.stdout, /broken FAILED: /);
    const cliDown = await runCli('queue', 'status', '--redis', 'redis://127.0.0.1:1');
    assert.equal(cliDown.code, 69, 'Redis unreachable: exit 69 (EX_UNAVAILABLE)');
  });

  it('over HTTP (hetmm serve --redis): bit-for-bit predictions, hot update on one node seen by the other, async jobs, readiness and metrics', async () => {
    const post = (server: FastifyInstance, url: string, file: string, auth = false) =>
      server.inject({ method: 'POST', url, payload: readFileSync(file), headers: { 'content-type': 'image/jpeg', ...(auth ? { authorization: `Bearer ${TOKEN}` } : {}) } });
    // a queue-mode answer as /openapi.json documents it, nothing dropped by the serialiser
    const doc = (await serverA.inject({ url: '/openapi.json' })).json<OpenApiDoc>();
    const documented = (server: FastifyInstance, route: string, response: { statusCode: number; body: string }, method = 'post'): void => {
      const answers = server === serverA ? answersA : answersB;
      checkJsonAnswer(doc, { path: route, method }, response.statusCode, response.body, answers.at(-1));
    };
    const before = await post(serverB, `/v1/lines/${LINE}/predict?maps=npy&inline=true`, defects[2]!);
    assert.equal(before.statusCode, 200, before.body);
    documented(serverB, '/v1/lines/{line}/predict', before);
    const body = before.json<{ score: number; templates: number; version: number; maps: { npy: string } }>();
    const local = await detector.predict(defects[2]!);
    assert.equal(body.score, local.score);
    assert.ok(Buffer.from(body.maps.npy.split(',')[1]!, 'base64').equals(rawMap(local)), 'raw map bytes over HTTP');
    // hot update through node A (token needed), the very next predict through node B sees it
    assert.equal((await post(serverA, `/v1/lines/${LINE}/normals`, good[4]!)).statusCode, 401);
    const added = await post(serverA, `/v1/lines/${LINE}/normals?name=extra.jpg`, good[4]!, true);
    assert.equal(added.statusCode, 200, added.body);
    documented(serverA, '/v1/lines/{line}/normals', added);
    const update = added.json<{ templates: number; version: number }>();
    assert.deepEqual([update.templates, update.version], [body.templates + 1, body.version + 1]);
    await detector.add([good[4]!]);
    const after = await post(serverB, `/v1/lines/${LINE}/predict?maps=npy&inline=true`, defects[2]!);
    const a = after.json<{ score: number; templates: number; version: number; maps: { npy: string } }>();
    assert.deepEqual([a.templates, a.version], [update.templates, update.version]);
    const local2 = await detector.predict(defects[2]!);
    assert.equal(a.score, local2.score);
    assert.ok(Buffer.from(a.maps.npy.split(',')[1]!, 'base64').equals(rawMap(local2)));
    // png maps are rendered by the worker like the in-process server renders them
    const png = (await post(serverA, `/v1/lines/${LINE}/predict?maps=png&inline=true`, defects[3]!)).json<{ maps: { heatmap: string } }>();
    assert.match(png.maps.heatmap, /^data:image\/png;base64,iVBORw0KGgo/);
    // async: a job id at once, the result later
    const queued = await post(serverA, `/v1/lines/${LINE}/predict?async=true&maps=npy`, defects[4]!);
    assert.equal(queued.statusCode, 202, queued.body);
    documented(serverA, '/v1/lines/{line}/predict', queued);
    const jobId = queued.json<{ job: { id: string } }>().job.id;
    let job: { state: string; result?: { score: number } } = { state: 'waiting' };
    for (let i = 0; i < 300 && job.state !== 'completed'; i++) {
      const polled = await serverB.inject({ url: `/v1/jobs/${jobId}` });
      documented(serverB, '/v1/jobs/{id}', polled, 'get');
      job = polled.json();
      if (job.state !== 'completed') await sleep(100);
    }
    assert.equal(job.result!.score, (await detector.predict(defects[4]!)).score);
    // readiness names the line no worker can serve; metrics carry per-worker store versions
    const ready = await serverA.inject({ url: '/readyz' });
    assert.equal(ready.statusCode, 503);
    documented(serverA, '/readyz', ready, 'get');
    const lines = await serverA.inject({ url: '/v1/lines' });
    documented(serverA, '/v1/lines', lines, 'get');
    assert.ok(lines.json<{ lines: Array<{ name: string }> }>().lines.some((l) => l.name === LINE));
    assert.match(ready.body, /line 'broken': no worker serves it/);
    const metrics = (await serverA.inject({ url: '/metrics' })).body;
    assert.match(metrics, new RegExp(`hetmm_worker_store_version\\{worker="[^"]+",line="tile"\\} ${update.version}`));
    assert.match(metrics, /hetmm_queue_jobs\{line="tile",state="completed"\}/);
    // a threshold set through node A: one more revision, seen by node B and by the workers' labels
    const put = await serverA.inject({ method: 'PUT', url: `/v1/lines/${LINE}/threshold`, payload: { value: 0.25 }, headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(put.statusCode, 200, put.body);
    documented(serverA, '/v1/lines/{line}/threshold', put, 'put');
    assert.equal(put.json<{ version: number }>().version, update.version + 1);
    const labelled = (await post(serverB, `/v1/lines/${LINE}/predict`, defects[2]!)).json<{ label: string; threshold: number; version: number }>();
    assert.deepEqual([labelled.threshold, labelled.version], [0.25, update.version + 1]);
    assert.equal(labelled.label, local2.score > 0.25 ? 'defect' : 'ok');
  });

  it('kill -9 of a worker mid-job: the job is retried elsewhere and delivered exactly once', async () => {
    const events = new QueueEvents(nodeA.keys.queueName(LINE), { connection: bullConnection(redis.url, 'worker'), prefix: nodeA.settings.prefix });
    await events.waitUntilReady();
    const completions = new Map<string, number>();
    events.on('completed', ({ jobId }) => completions.set(jobId, (completions.get(jobId) ?? 0) + 1));
    try {
      const victim = workers[0]!;
      const files = defects.slice(0, 6);
      const from = victim.log.length;
      const ids = await Promise.all(files.map((f) => nodeA.submitPredict(LINE, image(f), { maps: 'npy' })));
      const deadline = Date.now() + 30_000;
      let started: string | undefined;
      while (started === undefined && Date.now() < deadline) {
        const line = victim.log.slice(from).find((l) => / predict start /.test(l));
        started = line === undefined ? undefined : /job (\S+) predict start/.exec(line)![1];
        if (started === undefined) await sleep(5);
      }
      assert.ok(started !== undefined, 'the victim started a job');
      victim.child.kill('SIGKILL');
      await victim.exited;
      const statuses = await Promise.all(ids.map((id) => settle(nodeB, id)));
      for (let i = 0; i < ids.length; i++) {
        assert.equal(statuses[i]!.state, 'completed', ids[i]);
        await expectBitEqual(files[i]!, statuses[i]!.result as QueuedPrediction);
      }
      const retried = statuses.find((s) => s.id === started)!;
      // the killed job was finished by the surviving worker (unless the victim finished it before dying)
      if (!victim.log.some((l) => l.includes(`job ${started} done`))) {
        assert.notEqual((retried.result as QueuedPrediction).worker, victim.id);
      }
      await sleep(300);
      for (const id of ids) assert.equal(completions.get(id), 1, `job ${id} completed once`);
    } finally {
      await events.close();
    }
    // a worker that starts now loads the updated store file
    const late = await addWorker();
    assert.match(late.log.find((l) => / ready: /.test(l))!, /tile \(5 templates, version 6\)/);
  });

  it('Redis killed and restarted mid-run (AOF): no acknowledged job lost, 503 meanwhile, then recovery', async () => {
    const files = defects.slice(6, 11);
    const ids: string[] = [];
    for (const f of files) ids.push(await nodeA.submitPredict(LINE, image(f), { maps: 'npy' }));
    await redis.kill();
    const t0 = Date.now();
    await assert.rejects(nodeA.submitPredict(LINE, image(files[0]!)), (e: unknown) => e instanceof HetmmError && e.code === 'E_UNAVAILABLE');
    assert.ok(Date.now() - t0 < 3000, `fails fast (${Date.now() - t0} ms)`);
    const down = await serverA.inject({ method: 'POST', url: `/v1/lines/${LINE}/predict`, payload: readFileSync(files[0]!), headers: { 'content-type': 'image/jpeg' } });
    assert.equal(down.statusCode, 503, down.body);
    await sleep(500);
    await redis.restart();
    const statuses = await Promise.all(ids.map((id) => settle(nodeA, id)));
    for (let i = 0; i < ids.length; i++) {
      assert.equal(statuses[i]!.state, 'completed', ids[i]);
      await expectBitEqual(files[i]!, statuses[i]!.result as QueuedPrediction);
    }
    // the producer reconnected by itself
    let fresh: QueuedPrediction | undefined;
    for (let attempt = 0; fresh === undefined; attempt++) {
      try {
        fresh = await nodeB.predict(LINE, image(good[12]!), { maps: 'npy' });
      } catch (e) {
        if (!(e instanceof HetmmError && e.code === 'E_UNAVAILABLE') || attempt > 50) throw e;
        await sleep(100);
      }
    }
    await expectBitEqual(good[12]!, fresh);
  });

  it('SIGTERM: a worker finishes the job in hand and exits 0', async () => {
    const w = workers.find((x) => x.child.exitCode === null && x.child.signalCode === null)!;
    const from = w.log.length;
    const ids = await Promise.all(defects.slice(0, 4).map((f) => nodeA.submitPredict(LINE, image(f))));
    while (!w.log.slice(from).some((l) => / predict start /.test(l))) await sleep(5);
    w.child.kill('SIGTERM');
    assert.equal(await w.exited, 0);
    const statuses = await Promise.all(ids.map((id) => settle(nodeA, id)));
    assert.ok(statuses.every((s) => s.state === 'completed' && s.attempts === 1), JSON.stringify(statuses.map((s) => [s.state, s.attempts])));
  });
});
