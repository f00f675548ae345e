/**
 * Serving processes see other writers (issue 22, item 7): `hetmm add` run
 * as its own process on a store that `hetmm serve` (its own process) or a
 * queue worker (its own process, real redis-server) serves changes their
 * next prediction of the added image within 1 s, without a restart and
 * without a write of their own (src/store/file-watch.ts).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { fitStore } from '../src/fit/fit-store.js';
import { SharedDirBlobStore } from '../src/queue/blob-store.js';
import { QueueClient } from '../src/queue/client.js';
import { defaultModelPath, repoRoot, tempDir } from './helpers/io-paths.js';
import { TestRedis, redisAvailable } from './helpers/redis-server.js';
import { bottleTrain, postImage, spawnServe } from './helpers/server.js';
import { startWorker } from './helpers/worker-process.js';

const run = promisify(execFile);
const tmp = tempDir('other-writers');
const original = path.join(tmp, 'line.hetmm');
/** not in the store: after `hetmm add` it matches itself */
const added = bottleTrain[4]!;

/** `hetmm add -t store image` as its own process, run to its end. */
async function hetmmAdd(store: string): Promise<void> {
  await run(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'add', '-t', store, added, '--model', defaultModelPath, '--quiet']);
}

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

before(async () => {
  // a float store: no quantisation, so the fit takes seconds
  const fitted = await fitStore({ model: defaultModelPath, preset: 'bottle', precision: 'float' }, { files: bottleTrain.slice(0, 4), output: original, calibrate: false });
  fitted.detector.dispose();
});

function copyStore(dir: string): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(original, path.join(dir, 'line.hetmm'));
  return path.join(dir, 'line.hetmm');
}

it('hetmm serve: the next prediction after hetmm add, 1 s on, uses the added image', async () => {
  const store = copyStore(path.join(tmp, 'serve'));
  const serve = await spawnServe(['--store', store]);
  try {
    const predict = async (): Promise<{ score: number; templates: number }> => {
      const r = await postImage(serve.base, 'line', readFileSync(added), '?maps=none');
      assert.equal(r.status, 200, await r.clone().text());
      return (await r.json()) as { score: number; templates: number };
    };
    const before = await predict();
    assert.equal(before.templates, 4);
    await hetmmAdd(store);
    await settle(1000);
    const after = await predict();
    assert.equal(after.templates, 5, serve.stderr());
    assert.ok(after.score < 1e-3 && before.score > 0.1, `${before.score} -> ${after.score}`);
  } finally {
    serve.child.kill('SIGTERM');
    await new Promise((r) => serve.child.once('exit', r));
  }
});

describe('a queue worker', { skip: redisAvailable ? false : 'no redis-server' }, () => {
  let redis: TestRedis;
  before(async () => {
    redis = await TestRedis.start();
  });
  after(async () => {
    await redis?.stop();
  });

  it('the next prediction after hetmm add, 1 s on, uses the added image', async () => {
    const dataDir = path.join(tmp, 'queue');
    const store = copyStore(dataDir);
    const worker = await startWorker(redis.url, dataDir, { args: ['--threads', '1'] });
    const client = await QueueClient.open({ redisUrl: redis.url, blobs: new SharedDirBlobStore(path.join(dataDir, '.blobs')) });
    try {
      const image = { bytes: readFileSync(added), name: path.basename(added) };
      const before = await client.predict('line', image);
      assert.equal(before.templates, 4);
      await hetmmAdd(store);
      await settle(1000);
      const after = await client.predict('line', image);
      assert.equal(after.templates, 5, worker.log.join('\n'));
      assert.ok(after.score < 1e-3 && before.score > 0.1, `${before.score} -> ${after.score}`);
    } finally {
      await client.close();
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
  });
});
