/**
 * Every worker-thread wrapper is built on src/threads/ and a worker that
 * exits mid-task gives its caller a HetmmError (E_INTERNAL, the one rule for
 * a dead thread), never a hang: the backbone thread (Detector.predictMany's
 * backboneThread, the server's feature thread), the pipelines, the
 * quantisation thread, the queue's compute thread and the PTS workers. The
 * worker is stopped from inside (WorkerThread.exitForTest: process.exit in
 * the thread, after it has started on the task), found through
 * watchThreads.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { BackboneThread } from '../src/detector/backbone-thread.js';
import { Detector } from '../src/detector/detector.js';
import { quantizeOnThread } from '../src/detector/quantize-thread.js';
import { HetmmError } from '../src/errors.js';
import { ComputeThread } from '../src/queue/compute.js';
import { selectTemplates } from '../src/selection/index.js';
import type { FeatureStack } from '../src/kernels/contract.js';
import { watchThreads, type WorkerThread } from '../src/threads/index.js';
import { expectHetmm } from './helpers/errors.js';
import { datasetsDir, defaultModelPath, listImages } from './helpers/io-paths.js';
import { randomUnitMaps } from './helpers/random.js';

const good = listImages(path.join(datasetsDir, 'magnetic-tile/magnetic_tile/train/good'));
/** a stopped worker must not leave its caller waiting: each test ends well within this */
const NO_HANG = { timeout: 120_000 };

/** The WorkerThreads started while `run` runs (run's promise is not awaited here). */
function started<T>(run: () => T): { result: T; threads: WorkerThread<unknown, unknown>[] } {
  const threads: WorkerThread<unknown, unknown>[] = [];
  const stop = watchThreads((t) => threads.push(t));
  try {
    return { result: run(), threads };
  } finally {
    stop();
  }
}

/** Resolves once `thread` has a call in flight (it is on a task). */
async function busy(thread: WorkerThread<unknown, unknown>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (thread.pending === 0) {
    if (Date.now() > deadline) throw new Error(`${thread.name} never got a task`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

test('backbone thread: a worker that exits mid-task rejects the features call with E_INTERNAL', NO_HANG, async () => {
  const { result, threads } = started(() => BackboneThread.start({ model: defaultModelPath, threads: 1 }));
  const thread = await result;
  assert.equal(threads.length, 1);
  const features = thread.features(good[0]!, undefined);
  await busy(threads[0]!);
  threads[0]!.exitForTest(5);
  await assert.rejects(features, expectHetmm('E_INTERNAL', 'the backbone thread exited (code 5)'));
  assert.equal((thread.failure as HetmmError | undefined)?.code, 'E_INTERNAL');
  await assert.rejects(thread.features(good[1]!, undefined), expectHetmm('E_INTERNAL', 'exited (code 5)'));
  await thread.close();
});

test('pipelines: pipeline threads that exit mid-run give E_INTERNAL outcomes, the run ends, the next run starts new threads', NO_HANG, async () => {
  const detector = await Detector.open({ model: defaultModelPath, preset: 'default', dtype: 'float32' });
  after(() => detector.dispose());
  await detector.add(good.slice(0, 2));
  const files = good.slice(10, 18);
  // a run starts its threads when it is first read: watch until then
  const threads: WorkerThread<unknown, unknown>[] = [];
  const stop = watchThreads((t) => threads.push(t));
  const outcomes: { source: string; error?: Error }[] = [];
  for await (const outcome of detector.predictMany(files, { pipelines: 2 })) {
    outcomes.push(outcome);
    if (outcomes.length === 1) {
      stop();
      assert.equal(threads.length, 2);
      await Promise.all(threads.map((t) => busy(t)));
      for (const t of threads) t.exitForTest(5); // both, while they hold images
    }
  }
  assert.deepEqual(
    outcomes.map((o) => o.source),
    files,
    'every image has its outcome, in order',
  );
  const failed = outcomes.filter((o) => o.error !== undefined);
  assert.ok(failed.length > 0, 'the images the threads held when they exited failed');
  for (const o of failed) {
    assert.ok(o.error instanceof HetmmError && o.error.code === 'E_INTERNAL' && /a pipeline thread exited \(code 5\)/.test(o.error.message), String(o.error));
  }
  const again: string[] = [];
  for await (const o of detector.predictMany(files.slice(0, 3), { pipelines: 2 })) {
    assert.equal(o.error, undefined, o.error?.message);
    again.push(o.source);
  }
  assert.deepEqual(again, files.slice(0, 3));
});

test('quantisation thread: a worker that exits mid-task rejects with E_INTERNAL', NO_HANG, async () => {
  const images = good.slice(0, 2).map((f) => new Uint8Array(readFileSync(f)));
  const { result, threads } = started(() =>
    quantizeOnThread({ images, model: defaultModelPath, inputSize: [256, 256], threads: 1 }),
  );
  assert.equal(threads.length, 1);
  await busy(threads[0]!);
  threads[0]!.exitForTest(5);
  await assert.rejects(result, expectHetmm('E_INTERNAL', 'the quantisation thread exited (code 5)'));
});

test("queue compute thread: a worker that exits mid-task rejects with E_INTERNAL, and close() still returns", NO_HANG, async () => {
  const { result: compute, threads } = started(() => new ComputeThread());
  assert.equal(threads.length, 1);
  const init = compute.init({ model: defaultModelPath, threads: 1 });
  await busy(threads[0]!);
  threads[0]!.exitForTest(5);
  await assert.rejects(init, expectHetmm('E_INTERNAL', 'the compute thread exited (code 5)'));
  await assert.rejects(compute.refresh('any'), expectHetmm('E_INTERNAL', 'exited (code 5)'));
  await compute.close();
});

test('PTS workers: workers that exit mid-selection reject it with E_INTERNAL (they had no exit handler: it hung)', NO_HANG, async () => {
  const n = 24;
  const layers: FeatureStack[] = [0, 1, 2].map((l) => ({ dtype: 'float32', shape: [n, 16, 12, 12], data: randomUnitMaps(n, 16, 12, 12, 500 + l) }));
  const { result, threads } = started(() => selectTemplates(layers, 6, { workers: 2 }));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(threads.length, 2);
  await busy(threads[0]!);
  for (const t of threads) t.exitForTest(5);
  await assert.rejects(result, expectHetmm('E_INTERNAL', 'a PTS worker thread exited (code 5)'));
});
