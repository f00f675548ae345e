/**
 * Queue-mode throughput and overhead (docs/SCALING.md; not part of npm test):
 *
 *   node dist/bench/queue-bench.js [--images 24] [--templates 20] [--inflight 4]
 *        [--worker-args "--concurrency 1 --threads 1"] [--lowload 10]
 *
 * In one run, on the same images and store: in-process throughput (the
 * Detector with `inflight` predictions at once, as the in-process server
 * runs them), then the same load through Redis with 1 and with 2 worker
 * processes, as ratios to in-process; then, at low load (one request at a
 * time, one idle worker), the latency the queue adds per job: client-side
 * total minus the worker's processing time (BullMQ's processedOn..finishedOn).
 */
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Detector } from '../src/detector/detector.js';
import { SharedDirBlobStore } from '../src/queue/blob-store.js';
import { QueueClient } from '../src/queue/client.js';
import { datasetsDir, defaultModelPath, tempDir } from '../test/helpers/io-paths.js';
import { TestRedis } from '../test/helpers/redis-server.js';
import { startWorker, type WorkerProcess } from '../test/helpers/worker-process.js';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '24' },
    templates: { type: 'string', default: '20' },
    inflight: { type: 'string', default: '4' },
    'worker-args': { type: 'string', default: '--concurrency 1' },
    lowload: { type: 'string', default: '10' },
    maps: { type: 'string', default: 'none' },
  },
});
const tileRoot = path.join(datasetsDir, 'magnetic-tile/magnetic_tile');
const list = (dir: string): string[] => readdirSync(dir).filter((f) => /\.(jpe?g|png)$/i.test(f)).sort().map((f) => path.join(dir, f));
const templates = list(path.join(tileRoot, 'train/good')).slice(0, Number(values.templates));
const testDirs = readdirSync(path.join(tileRoot, 'test')).sort();
const images = testDirs.flatMap((d) => list(path.join(tileRoot, 'test', d)).slice(0, 8)).slice(0, Number(values.images)).map((f) => ({ bytes: readFileSync(f), name: path.basename(f) }));
const inflight = Number(values.inflight);
const maps = values.maps as 'none' | 'npy';

async function pool<T>(items: readonly T[], concurrency: number, run: (item: T) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await run(items[next++]!);
    }),
  );
  return items.length / ((performance.now() - t0) / 1000);
}

/** Commands Redis has processed so far (blocking reads and heartbeats included). */
async function redisCommands(client: QueueClient): Promise<number> {
  const info = await client.redis.info('stats');
  return Number(/total_commands_processed:(\d+)/.exec(info)![1]);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const dataDir = tempDir('queue-bench');
const line = 'bench';
console.log(`# queue bench: ${images.length} images, ${templates.length} templates, ${inflight} in flight, worker args "${values['worker-args']}", maps ${maps}`);
console.log(`# ${os.cpus().length} cores ${os.cpus()[0]?.model ?? ''}; load average before: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

const detector = await Detector.open({ model: defaultModelPath, preset: 'default', dtype: 'float32' });
await detector.add(templates);
await detector.store.save(path.join(dataDir, `${line}.hetmm`));
await pool(images.slice(0, 4), 2, (i) => detector.predict(i.bytes)); // warm-up
const inProcess = await pool(images, inflight, (i) => detector.predict(i.bytes));
console.log(`in-process: ${inProcess.toFixed(2)} img/s`);
const lowLocal: number[] = [];
for (const i of images.slice(0, Number(values.lowload))) {
  const t0 = performance.now();
  await detector.predict(i.bytes);
  lowLocal.push(performance.now() - t0);
}
detector.dispose();

const redis = await TestRedis.start();
const workers: WorkerProcess[] = [];
const client = await QueueClient.open({ redisUrl: redis.url, blobs: new SharedDirBlobStore(path.join(dataDir, '.blobs')) });
const rows: Array<[string, number]> = [['in-process', inProcess]];
try {
  for (const count of [1, 2]) {
    while (workers.length < count) workers.push(await startWorker(redis.url, dataDir, { args: values['worker-args'].split(' ').filter(Boolean) }));
    await pool(images.slice(0, 4), 2, (i) => client.predict(line, i, { maps })); // warm-up
    const commandsBefore = await redisCommands(client);
    const rate = await pool(images, inflight, (i) => client.predict(line, i, { maps }));
    const perJob = ((await redisCommands(client)) - commandsBefore) / images.length;
    console.log(`  Redis commands per job (all clients and workers, INFO total_commands_processed): ${perJob.toFixed(1)}`);
    rows.push([`queue, ${count} worker${count > 1 ? 's' : ''}`, rate]);
    console.log(`queue with ${count} worker(s): ${rate.toFixed(2)} img/s = ${((rate / inProcess) * 100).toFixed(1)}% of in-process`);
  }
  // low load: one request at a time; the second worker stops so one idle worker takes each job
  workers[1]!.child.kill('SIGTERM');
  await workers[1]!.exited;
  const overhead: number[] = [];
  const wait: number[] = [];
  const total: number[] = [];
  for (const i of images.slice(0, Number(values.lowload))) {
    const t0 = performance.now();
    const r = await client.predict(line, i, { maps });
    const elapsed = performance.now() - t0;
    const state = await client.queue(line).getJob(r.jobId);
    const processing = state !== undefined && state.finishedOn !== undefined && state.processedOn !== undefined ? state.finishedOn - state.processedOn : Number.NaN;
    total.push(elapsed);
    wait.push(r.queueTimings.wait);
    overhead.push(elapsed - processing);
  }
  console.log(
    `low load (1 at a time, 1 idle worker): in-process median ${median(lowLocal).toFixed(1)} ms, queue median ${median(total).toFixed(1)} ms; ` +
      `queue overhead (client total - worker processing) median ${median(overhead).toFixed(1)} ms, max ${Math.max(...overhead).toFixed(1)} ms; ` +
      `enqueue->start median ${median(wait).toFixed(1)} ms`,
  );
  console.log('\n| setting | img/s | ratio to in-process |\n| --- | --- | --- |');
  for (const [name, rate] of rows) console.log(`| ${name} | ${rate.toFixed(2)} | ${((rate / inProcess) * 100).toFixed(0)}% |`);
  console.log(`# load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
} finally {
  await client.close();
  for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGTERM');
  await Promise.all(workers.map((w) => w.exited));
  await redis.stop();
}
