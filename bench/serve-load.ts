/**
 * Load test of `hetmm serve` on loopback, as ratios to in-process
 * Detector.predictMany measured in the same run (docs/SERVING.md).
 *
 *   npm run build && node dist/bench/serve-load.js [--seconds 30] [--soak 600] [--templates 60] [--stores float,int8] [--out FILE.json]
 *
 * --stores int8 (issue 22): the default store of `hetmm fit` (int8 end to
 * end), fitted from the first --templates Magnetic Tile normals; in-process
 * `predictMany({ pipelines })` (hetmm predict's path, one pipeline per core,
 * at most 8) over 24 Magnetic Tile test images, then the server at 4
 * clients with ?maps=png and with ?maps=none, then in-process again: the
 * ratio of the server's img/s to the mean of the two in-process runs.
 *
 * --stores float (the steps below):
 * 1. Builds a bottle store of --templates templates (the 10 normal bottle
 *    images of ../shared, repeated: the matching cost depends on the count,
 *    not on which images) in a temp dir.
 * 2. In-process baseline: predictMany (its default concurrency) over the 10
 *    test images, cycled, for --seconds: images/s and CPU-seconds per image.
 * 3. Starts `hetmm serve` as a child process (default queue settings) and runs
 *    closed-loop clients (each posts a raw PNG, maps=none, waits for the
 *    answer, posts the next; after a 429 it waits 100 ms) for --seconds at 1,
 *    4 and 16 clients: images/s, p50/p99 latency of answered requests, 429s,
 *    and the server's CPU-seconds per image (from its /metrics).
 * 4. A sweep of client counts (8..12) for where 429s start.
 * 5. Soak: 4 clients for --soak seconds (0: none), the server's RSS and heap
 *    sampled every 10 s.
 * 6. The in-process baseline again (the machine is shared: the report gives
 *    both and the ratios to their mean).
 * Everything stops by itself; the server child is killed on any exit.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Detector } from '../src/detector/detector.js';
import { calibrateStore } from '../src/detector/calibrate.js';
import { TemplateStore } from '../src/store/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bottle = path.resolve(repoRoot, '../shared/datasets/mvtec-bottle-xs/bottle');
const model = path.resolve(repoRoot, '../shared/models/resnet50v2-imagenet-l123.onnx');
const pngs = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.png'))
    .sort()
    .map((f) => path.join(dir, f));

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' },
    soak: { type: 'string', default: '600' },
    templates: { type: 'string', default: '60' },
    stores: { type: 'string', default: 'float,int8' },
    out: { type: 'string' },
  },
});
const SECONDS = Number(values.seconds);
const SOAK = Number(values.soak);
const TEMPLATES = Number(values.templates);
const STORES = values.stores.split(',');
const tile = path.resolve(repoRoot, '../shared/datasets/magnetic-tile/magnetic_tile');
const jpgs = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.jpg') || f.endsWith('.png'))
    .sort()
    .map((f) => path.join(dir, f));

const normals = [...pngs(path.join(bottle, 'train/good')), ...pngs(path.join(bottle, 'test/good'))];
const queries = [...pngs(path.join(bottle, 'test/broken_large')), ...pngs(path.join(bottle, 'test/good'))];
const queryBytes = queries.map((f) => readFileSync(f));

const log = (s: string): void => {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
};
const loadAverage = (): number[] => os.loadavg().map((x) => Math.round(x * 100) / 100);
const quantile = (sorted: number[], q: number): number => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);

async function buildStore(file: string): Promise<void> {
  const detector = await Detector.open({ model, preset: 'bottle' });
  try {
    const features = [];
    for (const f of normals) features.push((await detector.features(f)).features);
    const store = TemplateStore.create(detector.backbone.identity);
    store.reserve(TEMPLATES);
    for (let i = 0; i < TEMPLATES; i++) store.append(features[i % features.length]!, normals[i % normals.length]!);
    store.meta.preset = detector.preset;
    detector.setStore(store);
    await calibrateStore(detector, { samples: 8 });
    await store.save(file);
  } finally {
    detector.dispose();
  }
}

async function inProcess(file: string): Promise<{ imagesPerSecond: number; cpuSecondsPerImage: number; images: number }> {
  const detector = await Detector.open({ model, store: file });
  try {
    return await timedPredictMany(detector, queries, { warmUp: 2 });
  } finally {
    detector.dispose();
  }
}

/** predictMany over `files`, cycled, after `warmUp` images, for SECONDS: images/s and CPU-seconds per image. */
async function timedPredictMany(
  detector: Detector,
  files: readonly string[],
  options: { warmUp: number; pipelines?: number },
): Promise<{ imagesPerSecond: number; cpuSecondsPerImage: number; images: number }> {
  const many = options.pipelines === undefined ? {} : { pipelines: options.pipelines };
  for await (const r of detector.predictMany(files.slice(0, options.warmUp), many)) if (r.error) throw r.error; // pipelines: the threads start
  const sources = Array.from({ length: 4000 }, (_, i) => files[i % files.length]!);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let images = 0;
  // predictMany over a long list, stopped after SECONDS (the generator is closed by the break)
  for await (const r of detector.predictMany(sources, many)) {
    if (r.error) throw r.error;
    images++;
    if (performance.now() - t0 > SECONDS * 1000) break;
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { imagesPerSecond: images / seconds, cpuSecondsPerImage: (cpu.user + cpu.system) / 1e6 / images, images };
}

function startServer(file: string, withModel = true): Promise<{ child: ChildProcess; base: string }> {
  const args = ['serve', '--store', file, '--port', '0', ...(withModel ? ['--model', model] : []), '--log-level', 'warn'];
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  process.once('exit', () => child.kill('SIGKILL'));
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${err}`)), 120_000);
    child.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /hetmm serve: (http:\/\/[^/\s]+)\//.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, base: m[1]! });
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code}:\n${err}`)));
  });
}

async function serverMetric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? NaN : Number(line.split(' ').pop());
}

interface LoadResult {
  clients: number;
  seconds: number;
  answered: number;
  imagesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  rejected429: number;
  otherErrors: number;
  otherErrorKinds: Record<string, number>;
  serverCpuSecondsPerImage: number;
  /** the server's event-loop delay (prom-client, since the previous scrape) */
  eventLoopLagP99Ms: number;
  eventLoopLagMaxMs: number;
}

async function load(
  base: string,
  line: string,
  clients: number,
  seconds: number,
  onTick?: () => Promise<void>,
  bodies: readonly Buffer[] = queryBytes,
  query = '',
  type = 'image/png',
): Promise<LoadResult> {
  const latencies: number[] = [];
  let rejected = 0;
  let other = 0;
  const otherStatuses: Record<string, number> = {};
  const cpu0 = await serverMetric(base, 'hetmm_process_cpu_seconds_total');
  await serverMetric(base, 'hetmm_nodejs_eventloop_lag_p99_seconds'); // resets the lag histogram
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const client = async (k: number): Promise<void> => {
    for (let i = k; performance.now() < deadline; i += clients) {
      const start = performance.now();
      try {
        const r = await fetch(`${base}/v1/lines/${line}/predict${query}`, { method: 'POST', headers: { 'content-type': type }, body: new Uint8Array(bodies[i % bodies.length]!) });
        const text = await r.text();
        if (r.status === 200) latencies.push(performance.now() - start);
        else if (r.status === 429) {
          rejected++;
          await new Promise((res) => setTimeout(res, 100));
        } else {
          other++;
          const key = `${r.status} ${((JSON.parse(text.startsWith('{') ? text : '{}') as { error?: { code?: string } })).error?.code ?? ''}`;
          otherStatuses[key] = (otherStatuses[key] ?? 0) + 1;
        }
      } catch (e) {
        other++;
        const key = `network ${(e as { cause?: { code?: string } }).cause?.code ?? String(e)}`;
        otherStatuses[key] = (otherStatuses[key] ?? 0) + 1;
      }
    }
  };
  let ticking = onTick !== undefined;
  const ticker = (async () => {
    while (ticking && performance.now() < deadline) {
      await new Promise((res) => setTimeout(res, 10_000));
      if (ticking) await onTick!();
    }
  })();
  await Promise.all(Array.from({ length: clients }, (_, k) => client(k)));
  ticking = false;
  const elapsed = (performance.now() - t0) / 1000;
  const scrape = await (await fetch(`${base}/metrics`)).text();
  const metric = (name: string): number => Number(scrape.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ').pop() ?? NaN);
  const cpu1 = metric('hetmm_process_cpu_seconds_total');
  await ticker.catch(() => undefined);
  latencies.sort((a, b) => a - b);
  return {
    clients,
    seconds: Math.round(elapsed * 10) / 10,
    answered: latencies.length,
    imagesPerSecond: latencies.length / elapsed,
    p50Ms: Math.round(quantile(latencies, 0.5)),
    p99Ms: Math.round(quantile(latencies, 0.99)),
    maxMs: Math.round(latencies.at(-1) ?? NaN),
    rejected429: rejected,
    otherErrors: other,
    otherErrorKinds: otherStatuses,
    serverCpuSecondsPerImage: (cpu1 - cpu0) / Math.max(1, latencies.length),
    eventLoopLagP99Ms: Math.round(metric('hetmm_nodejs_eventloop_lag_p99_seconds') * 1000),
    eventLoopLagMaxMs: Math.round(metric('hetmm_nodejs_eventloop_lag_max_seconds') * 1000),
  };
}

/** The int8 store (hetmm fit's default) of the first TEMPLATES Magnetic Tile normals, and 24 test images (6 of each of the first 4 classes). */
function int8Inputs(file: string): string[] {
  const train = jpgs(path.join(tile, 'train/good')).slice(0, TEMPLATES);
  execFileSync(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'fit', ...train, '-o', file, '--preset', 'default'], { stdio: 'ignore' });
  const classes = readdirSync(path.join(tile, 'test')).sort().slice(0, 4);
  return classes.flatMap((c) => jpgs(path.join(tile, 'test', c)).slice(0, 6));
}

/** In-process pipelines (hetmm predict's path) over `files`, cycled, for SECONDS. */
async function inProcessPipelines(file: string, files: readonly string[], pipelines: number): Promise<{ imagesPerSecond: number; cpuSecondsPerImage: number; images: number }> {
  const detector = await Detector.open({ store: file });
  try {
    return await timedPredictMany(detector, files, { warmUp: 2 * pipelines, pipelines });
  } finally {
    detector.dispose();
  }
}

/** The int8 part: server at 4 clients (PNG maps, no maps) against in-process pipelines before and after. */
async function int8Run(dir: string): Promise<Record<string, unknown>> {
  const file = path.join(dir, 'mt.hetmm');
  log(`int8: fitting a ${TEMPLATES}-template Magnetic Tile store (hetmm fit, int8 end to end)`);
  const files = int8Inputs(file);
  const bodies = files.map((f) => readFileSync(f));
  const pipelines = Math.max(1, Math.min(os.availableParallelism(), 8));
  const loadStart = loadAverage();
  log(`int8: in-process ${pipelines} pipelines (before)`);
  const before = await inProcessPipelines(file, files, pipelines);
  log(`  ${before.imagesPerSecond.toFixed(2)} img/s`);
  const server = await startServer(file, false);
  const points: Record<string, LoadResult> = {};
  try {
    const line = path.basename(file, '.hetmm');
    for (const b of bodies.slice(0, 4)) await fetch(`${server.base}/v1/lines/${line}/predict?maps=png`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(b) });
    for (const maps of ['png', 'none']) {
      log(`int8: server, 4 clients, maps=${maps}`);
      points[maps] = await load(server.base, line, 4, SECONDS, undefined, bodies, `?maps=${maps}`, 'image/jpeg');
      log(`  ${JSON.stringify(points[maps])}`);
    }
  } finally {
    server.child.kill('SIGTERM');
    await new Promise((res) => server.child.once('exit', res));
  }
  log('int8: in-process pipelines (after)');
  const afterRun = await inProcessPipelines(file, files, pipelines);
  log(`  ${afterRun.imagesPerSecond.toFixed(2)} img/s`);
  const baseline = (before.imagesPerSecond + afterRun.imagesPerSecond) / 2;
  const ratio = (r: LoadResult): number => Math.round((r.imagesPerSecond / baseline) * 1000) / 1000;
  return {
    store: `int8 (hetmm fit default), ${TEMPLATES} Magnetic Tile normals; 24 test images`,
    pipelines,
    loadAverageStart: loadStart,
    inProcessPipelines: { before, after: afterRun, meanImagesPerSecond: baseline },
    server4ClientsPng: { ...points.png!, throughputRatio: ratio(points.png!) },
    server4ClientsNoMaps: { ...points.none!, throughputRatio: ratio(points.none!) },
    loadAverageEnd: loadAverage(),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hetmm-serve-load-'));
  if (!STORES.includes('float')) {
    try {
      const report = { command: `node dist/bench/serve-load.js --seconds ${SECONDS} --templates ${TEMPLATES} --stores int8`, int8: await int8Run(dir) };
      const text = JSON.stringify(report, null, 2);
      if (values.out !== undefined) writeFileSync(values.out, `${text}\n`);
      process.stdout.write(`${text}\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return;
  }
  const file = path.join(dir, 'bottle60.hetmm');
  const report: Record<string, unknown> = {
    command: `node dist/bench/serve-load.js --seconds ${SECONDS} --soak ${SOAK} --templates ${TEMPLATES}`,
    machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`,
    loadAverageStart: loadAverage(),
  };
  let server: { child: ChildProcess; base: string } | undefined;
  try {
    log(`building a ${TEMPLATES}-template store`);
    await buildStore(file);
    log('in-process predictMany (before)');
    const before = await inProcess(file);
    log(`  ${before.imagesPerSecond.toFixed(2)} img/s, ${before.cpuSecondsPerImage.toFixed(3)} CPU-s/img`);
    server = await startServer(file);
    const line = path.basename(file, '.hetmm');
    // warm-up
    for (const b of queryBytes.slice(0, 2)) await fetch(`${server.base}/v1/lines/${line}/predict`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(b) });
    const points: LoadResult[] = [];
    for (const clients of [1, 4, 16]) {
      log(`server, ${clients} clients`);
      const r = await load(server.base, line, clients, SECONDS);
      log(`  ${JSON.stringify(r)}`);
      points.push(r);
    }
    const sweep: LoadResult[] = [];
    for (const clients of [8, 10, 11, 12]) {
      log(`429 sweep, ${clients} clients`);
      const r = await load(server.base, line, clients, Math.max(10, SECONDS / 2));
      log(`  ${JSON.stringify(r)}`);
      sweep.push(r);
    }
    const memory: Array<{ t: number; rssMiB: number; heapMiB: number }> = [];
    const t0 = performance.now();
    const sample = async (): Promise<void> => {
      const rss = await serverMetric(server!.base, 'hetmm_process_resident_memory_bytes');
      const heap = await serverMetric(server!.base, 'hetmm_nodejs_heap_size_used_bytes');
      memory.push({ t: Math.round((performance.now() - t0) / 1000), rssMiB: Math.round(rss / 2 ** 20), heapMiB: Math.round(heap / 2 ** 20) });
    };
    let soak: LoadResult | undefined;
    if (SOAK > 0) {
      await sample();
      log(`soak: 4 clients for ${SOAK} s`);
      soak = await load(server.base, line, 4, SOAK, sample);
      await sample();
      log(`  ${JSON.stringify(soak)}; memory ${JSON.stringify(memory.slice(0, 2))} ... ${JSON.stringify(memory.at(-1))}`);
    }
    server.child.kill('SIGTERM');
    await new Promise((res) => server!.child.once('exit', res));
    server = undefined;
    log('in-process predictMany (after)');
    const afterRun = await inProcess(file);
    log(`  ${afterRun.imagesPerSecond.toFixed(2)} img/s, ${afterRun.cpuSecondsPerImage.toFixed(3)} CPU-s/img`);
    const baseline = (before.imagesPerSecond + afterRun.imagesPerSecond) / 2;
    const baselineCpu = (before.cpuSecondsPerImage + afterRun.cpuSecondsPerImage) / 2;
    const ratio = (r: LoadResult): Record<string, number> => ({
      throughputRatio: Math.round((r.imagesPerSecond / baseline) * 1000) / 1000,
      cpuPerImageRatio: Math.round((r.serverCpuSecondsPerImage / baselineCpu) * 1000) / 1000,
    });
    Object.assign(report, {
      templates: TEMPLATES,
      inProcess: { before, after: afterRun, meanImagesPerSecond: baseline, meanCpuSecondsPerImage: baselineCpu },
      server: points.map((p) => ({ ...p, ...ratio(p) })),
      sweep429: sweep.map((p) => ({ ...p, ...ratio(p) })),
      first429AtClients: [...points, ...sweep].filter((p) => p.rejected429 > 0).map((p) => p.clients).sort((a, b) => a - b)[0] ?? null,
      soak: soak === undefined ? null : { ...soak, ...ratio(soak), memory },
      loadAverageEnd: loadAverage(),
    });
    if (STORES.includes('int8')) report.int8 = await int8Run(dir);
    const text = JSON.stringify(report, null, 2);
    if (values.out !== undefined) writeFileSync(values.out, `${text}\n`);
    process.stdout.write(`${text}\n`);
  } finally {
    server?.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`serve-load: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
