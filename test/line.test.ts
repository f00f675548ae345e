/**
 * One line, every door (issue 22): the line service (src/detector/line.ts)
 * decides each store's backbone and matching precision once, so one int8
 * store scores bit for bit the same through `hetmm predict` (a real
 * process), Detector.open, the in-process server over HTTP and a queue
 * worker (a real process on a real redis-server), with and without
 * HETMM_MATCH_PRECISION=float; a line created over HTTP is fitted by
 * fitStore, as `hetmm fit`, and gets the same threshold.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Detector } from '../src/detector/detector.js';
import { fitStore } from '../src/fit/fit-store.js';
import { SharedDirBlobStore } from '../src/queue/blob-store.js';
import { QueueClient } from '../src/queue/client.js';
import { TemplateStore } from '../src/store/index.js';
import { runCli } from './helpers/cli.js';
import { datasetsDir, defaultModelPath, listImages, repoRoot, tempDir } from './helpers/io-paths.js';
import { TestRedis, redisAvailable } from './helpers/redis-server.js';
import { auth, postImage, startServer, TEST_TOKEN } from './helpers/server.js';
import { startWorker } from './helpers/worker-process.js';

const run = promisify(execFile);
const tmp = tempDir('line');
const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle');
const train = listImages(path.join(bottle, 'train/good'));
const probes = [listImages(path.join(bottle, 'test/broken_large'))[0]!, listImages(path.join(bottle, 'test/good'))[0]!];
const storeFile = path.join(tmp, 'line.hetmm');

/** The store (its int8 backbone embedded: one file is the whole line) copied into `dir`. */
function deployTo(dir: string): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(storeFile, path.join(dir, 'line.hetmm'));
  return path.join(dir, 'line.hetmm');
}

/** Runs `fn` with HETMM_MATCH_PRECISION set to `value` (undefined: unset) in this process. */
async function withMatchPrecision<T>(value: string | undefined, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.HETMM_MATCH_PRECISION;
  if (value === undefined) delete process.env.HETMM_MATCH_PRECISION;
  else process.env.HETMM_MATCH_PRECISION = value;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.HETMM_MATCH_PRECISION;
    else process.env.HETMM_MATCH_PRECISION = saved;
  }
}

function childEnv(value: string | undefined): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.HETMM_MATCH_PRECISION;
  return value === undefined ? env : { ...env, HETMM_MATCH_PRECISION: value };
}

before(async () => {
  // int8 end to end, fitStore's default (4 bottle normals keep it to seconds)
  const fitted = await fitStore({ preset: 'bottle' }, { files: train.slice(0, 4), output: storeFile, calibrationSamples: 4 });
  fitted.detector.dispose();
});

for (const precision of [undefined, 'float'] as const) {
  describe(`one int8 store through every door, HETMM_MATCH_PRECISION ${precision ?? 'unset'}`, () => {
    const scores = new Map<string, number[]>();
    const matching = new Map<string, string>();
    let redis: TestRedis | undefined;

    after(async () => {
      await redis?.stop();
    });

    it('hetmm predict (its own process)', async () => {
      const { stdout } = await run(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'predict', '-t', storeFile, ...probes, '--json', '--quiet'], {
        env: childEnv(precision),
      });
      const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as { score: number });
      scores.set('predict', lines.map((l) => l.score));
    });

    it('Detector.open', async () => {
      const detector = await withMatchPrecision(precision, () => Detector.open({ store: storeFile }));
      try {
        matching.set('Detector.open', detector.backend.precision ?? 'float');
        const out: number[] = [];
        for (const p of probes) out.push((await detector.predict(p)).score);
        scores.set('Detector.open', out);
      } finally {
        detector.dispose();
      }
    });

    it('the in-process server over HTTP', async () => {
      const server = await withMatchPrecision(precision, () => startServer({ stores: [deployTo(path.join(tmp, `serve-${precision ?? 'unset'}`))], token: TEST_TOKEN }));
      try {
        const info = (await (await fetch(`${server.base}/v1/lines/line`)).json()) as { precision: string; matching: string };
        assert.equal(info.precision, 'int8');
        matching.set('serve', info.matching);
        const out: number[] = [];
        for (const p of probes) {
          const r = await postImage(server.base, 'line', readFileSync(p), '?maps=none');
          assert.equal(r.status, 200, await r.clone().text());
          out.push(((await r.json()) as { score: number }).score);
        }
        scores.set('serve', out);
      } finally {
        await server.close();
      }
    });

    it('a queue worker (its own process, real redis-server)', { skip: redisAvailable ? false : 'no redis-server' }, async () => {
      redis = await TestRedis.start();
      const dataDir = path.join(tmp, `queue-${precision ?? 'unset'}`);
      deployTo(dataDir);
      const worker = await startWorker(redis.url, dataDir, { args: ['--threads', '1'], env: childEnv(precision) });
      const client = await QueueClient.open({ redisUrl: redis.url, blobs: new SharedDirBlobStore(path.join(dataDir, '.blobs')) });
      try {
        const out: number[] = [];
        for (const p of probes) out.push((await client.predict('line', { bytes: readFileSync(p), name: path.basename(p) })).score);
        scores.set('worker', out);
      } finally {
        await client.close();
        worker.child.kill('SIGTERM');
        await worker.exited;
      }
    });

    it('gives bit-identical scores through all of them', () => {
      const reference = scores.get('Detector.open');
      assert.ok(reference !== undefined && reference.length === probes.length);
      for (const [door, got] of scores) assert.deepEqual(got, reference, `${door} differs from Detector.open: ${got.join(', ')} vs ${reference.join(', ')}`);
      assert.equal(scores.size, redisAvailable ? 4 : 3);
      // the rule: told, else HETMM_MATCH_PRECISION, else int8 where the CPU can for an int8 store
      if (precision === 'float') assert.deepEqual([...matching.values()], ['float', 'float']);
    });
  });
}

describe('a line created over HTTP', () => {
  // more normals than the old HTTP calibration cap (16), fewer than hetmm fit's (1000)
  const tiles = listImages(path.join(datasetsDir, 'magnetic-tile/magnetic_tile/train/good')).slice(0, 17);
  const probe = listImages(path.join(datasetsDir, 'magnetic-tile/magnetic_tile/test/crack'))[0]!;

  it('is fitted as hetmm fit fits the same images: the same threshold, from the same scores, and the same predictions', async () => {
    const fitFile = path.join(tmp, 'fit', 'tiles.hetmm');
    mkdirSync(path.dirname(fitFile), { recursive: true });
    const fit = await runCli('fit', '--model', defaultModelPath, '--precision', 'int8', '--preset', 'default', '-o', fitFile, ...tiles, '--quiet');
    assert.equal(fit.code, 0, fit.stderr);

    const dataDir = path.join(tmp, 'lines');
    const server = await startServer({ dataDir, token: TEST_TOKEN });
    try {
      const form = new FormData();
      for (const file of tiles) form.append('images', new Blob([new Uint8Array(readFileSync(file))], { type: 'image/jpeg' }), path.basename(file));
      const r = await fetch(`${server.base}/v1/lines?name=tiles`, { method: 'POST', headers: auth, body: form });
      assert.equal(r.status, 202, await r.clone().text());
      const { job } = (await r.json()) as { job: { url: string } };
      for (;;) {
        const state = (await (await fetch(`${server.base}${job.url}`)).json()) as { state: string };
        if (state.state === 'done') break;
        assert.equal(state.state, 'running', JSON.stringify(state));
        await new Promise((res) => setTimeout(res, 100));
      }
      const viaHttp = (await TemplateStore.load(path.join(dataDir, 'tiles.hetmm'))).meta.threshold as { value: number; scores: number[]; method: string };
      const viaFit = (await TemplateStore.load(fitFile)).meta.threshold as { value: number; scores: number[]; method: string };
      assert.equal(viaHttp.scores.length, tiles.length);
      assert.deepEqual(viaHttp.scores, viaFit.scores);
      assert.equal(viaHttp.value, viaFit.value);
      assert.equal(viaHttp.method, viaFit.method);

      const served = await postImage(server.base, 'tiles', readFileSync(probe), '?maps=none');
      assert.equal(served.status, 200, await served.clone().text());
      const predicted = await runCli('predict', '-t', fitFile, probe, '--json', '--quiet');
      assert.equal(predicted.code, 0, predicted.stderr);
      assert.equal(((await served.json()) as { score: number }).score, (JSON.parse(predicted.stdout) as { score: number }).score);
    } finally {
      await server.close();
    }
  });
});
