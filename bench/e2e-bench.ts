/**
 * End-to-end benchmark of Detector.predict (part of `npm run bench`; run alone
 * with `node dist/bench/run-bench.js --skip-kernels`).
 *
 * 1. Builds template stores from real images (the first 60 / 209 magnetic-tile
 *    train/good images, ../shared/datasets) in a temp dir, float32 and
 *    float16, and reports how long that took and their size on disk and in
 *    memory.
 * 2. For each (store, onnxruntime threads, native kernel threads) setting,
 *    runs a child process (the native pool size is fixed per process by
 *    HETMM_THREADS) that measures, on 256x256 inputs with the `default`
 *    preset:
 *      - sequential per-image latency, split into decode / backbone / match /
 *        score (combination + post-processing), and CPU time per image (all
 *        threads of the process);
 *      - throughput (images/s) of predictMany at several concurrencies;
 *      - peak RSS (VmHWM; process.resourceUsage().maxRSS elsewhere).
 *
 * The machine may be shared, so next to wall-clock figures the report gives
 * the CPU-time basis: cores / CPU-seconds per image, the rate the process
 * would reach with the cores to itself and perfect overlap.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Detector } from '../src/detector/detector.js';
import type { FeatureDType } from '../src/kernels/contract.js';
import { loadFastBackend, type FastBackend } from '../src/kernels/fast/index.js';
import { TemplateStore } from '../src/store/index.js';
import { quantizeModel } from '../src/backbone/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const datasetRoot = path.resolve(repoRoot, '../shared/datasets/magnetic-tile/magnetic_tile');

export interface EndToEndOptions {
  /** template counts; stores hold the first K train/good images */
  readonly templates: readonly number[];
  readonly dtypes: readonly FeatureDType[];
  /** test images per measurement (sequential run and each pipelined run) */
  readonly images: number;
  /** predictMany concurrencies measured */
  readonly concurrencies: readonly number[];
  /** thread settings for the thread study, on the first store: [onnxruntime, native] */
  readonly threadStudy: ReadonlyArray<readonly [number, number]>;
  /** the setting used for every store */
  readonly threads: readonly [number, number];
  /** also run each float32 store with int8 matching (fast backend precision 'int8') */
  readonly int8: boolean;
  /**
   * also quantise the backbone (hetmm quantize-model, calibrated on the
   * first templates' images), build float32 stores with it, and run them
   * with float and with int8 matching (int8 backbone / int8 end to end)
   */
  readonly int8Backbone: boolean;
  readonly json: boolean;
}

export type MatchPrecisionSetting = 'float' | 'int8';
export type BackboneSetting = 'float' | 'int8';

interface ChildConfig {
  readonly store: string;
  /** the int8 backbone's .onnx (undefined: the float model) */
  readonly model?: string;
  readonly ortThreads: number;
  readonly images: readonly string[];
  readonly concurrencies: readonly number[];
  readonly warmup: number;
  /** int8 runs: also compare every image's result with float matching on the same features */
  readonly deviation: boolean;
  /** predictMany's backboneThread option (decode + backbone on a worker thread) */
  readonly backboneThread?: boolean;
}

interface StageStats {
  decode: number;
  backbone: number;
  match: number;
  score: number;
  total: number;
}

export interface ChildResult {
  /** opening the detector with the store (model load + store read) */
  openMs: number;
  storeCount: number;
  storeDtype: FeatureDType;
  /** bytes of template features held in memory (exact, count * elements * bytes) */
  storeBytesInMemory: number;
  /** mean per stage over the sequential run, ms */
  sequentialMean: StageStats;
  /** median per stage, ms */
  sequentialMedian: StageStats;
  /** process CPU time (every thread) per image in the sequential run, ms */
  sequentialCpuMs: number;
  pipelined: Array<{ concurrency: number; imagesPerSecond: number; cpuMsPerImage: number }>;
  maxRssMiB: number;
  nativeThreads: number;
  loadAverage: [number, number, number];
  /** int8 runs: largest |score - float score| and |anomaly map - float map| over the test images */
  deviation?: { maxScore: number; meanScore: number; maxMap: number; meanMap: number };
}

export interface EndToEndRow extends ChildResult {
  templates: number;
  dtype: FeatureDType;
  precision: MatchPrecisionSetting;
  backbone: BackboneSetting;
  ortThreads: number;
  /** predictMany ran decoding and the backbone on a worker thread */
  backboneThread: boolean;
}

export interface EndToEndReport {
  storeBuild: { images: number; featureSeconds: number; stores: Array<{ templates: number; dtype: FeatureDType; fileBytes: number; memoryBytes: number; saveMs: number }> };
  rows: EndToEndRow[];
}

// ---- data -------------------------------------------------------------------------

function listImages(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => /\.(jpe?g|png|bmp)$/i.test(f))
    .sort()
    .map((f) => path.join(dir, f));
}

/** Test images: defective ones from every test category and unseen good ones, interleaved. */
function testImages(count: number, skipGood: number): string[] {
  const testDir = path.join(datasetRoot, 'test');
  const defective = readdirSync(testDir)
    .filter((d) => d !== 'good')
    .sort()
    .flatMap((d) => listImages(path.join(testDir, d)));
  const good = listImages(path.join(datasetRoot, 'train', 'good')).slice(skipGood);
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const stride = Math.max(1, Math.floor(defective.length / count));
    const d = defective[(i * stride) % defective.length];
    const g = good[i % good.length];
    if (d !== undefined) out.push(d);
    if (g !== undefined && out.length < count) out.push(g);
    if (d === undefined && g === undefined) throw new Error(`no test images under ${datasetRoot}`);
  }
  return out;
}

// ---- child: one setting, one process --------------------------------------------

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const cpuMs = (since: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
};

async function runChild(config: ChildConfig): Promise<ChildResult> {
  const t0 = performance.now();
  const detector = await Detector.open({ store: config.store, model: config.model, threads: config.ortThreads, preset: 'default', backend: 'fast' });
  const openMs = performance.now() - t0;
  const store = detector.store;
  const elements = store.identity.layers.reduce((s, l) => s + l.channels * l.height * l.width, 0);
  const storeBytesInMemory = store.count * elements * (store.dtype === 'float16' ? 2 : 4);

  for (let i = 0; i < config.warmup; i++) await detector.predict(config.images[i % config.images.length]!);

  const stages: StageStats[] = [];
  const cpu0 = process.cpuUsage();
  for (const file of config.images) {
    const s = performance.now();
    const p = await detector.predict(file);
    const total = performance.now() - s;
    stages.push({ ...p.timings, total });
  }
  const sequentialCpuMs = cpuMs(cpu0) / config.images.length;
  const per = (pick: (s: StageStats) => number, f: (xs: number[]) => number): number => f(stages.map(pick));
  const summary = (f: (xs: number[]) => number): StageStats => ({
    decode: per((s) => s.decode, f),
    backbone: per((s) => s.backbone, f),
    match: per((s) => s.match, f),
    score: per((s) => s.score, f),
    total: per((s) => s.total, f),
  });

  const pipelined: ChildResult['pipelined'] = [];
  for (const concurrency of config.concurrencies) {
    const c0 = process.cpuUsage();
    const s = performance.now();
    let n = 0;
    for await (const r of detector.predictMany(config.images, { concurrency, backboneThread: config.backboneThread === true })) {
      if (r.error !== undefined) throw r.error;
      n++;
    }
    const seconds = (performance.now() - s) / 1000;
    pipelined.push({ concurrency, imagesPerSecond: n / seconds, cpuMsPerImage: cpuMs(c0) / n });
  }
  const deviation = config.deviation ? await int8Deviation(detector, config.images) : undefined;
  const nativeThreads = (detector.backend as Partial<FastBackend>).threads ?? 1;
  await detector.dispose();
  return {
    openMs,
    storeCount: store.count,
    storeDtype: store.dtype,
    storeBytesInMemory,
    sequentialMean: summary(mean),
    sequentialMedian: summary(median),
    sequentialCpuMs,
    pipelined,
    maxRssMiB: peakRssKiB() / 1024,
    nativeThreads,
    loadAverage: os.loadavg() as [number, number, number],
    ...(deviation === undefined ? {} : { deviation }),
  };
}

/**
 * Peak RSS of this process in KiB. On Linux VmHWM, because
 * process.resourceUsage().maxRSS of a spawned child also counts the parent's
 * RSS at fork time (Linux carries the high-water mark across exec), which
 * here would add the parent's just-built stores.
 */
function peakRssKiB(): number {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS;
}

/** Scores and maps of the detector's (int8) backend against float matching of the same features. */
async function int8Deviation(detector: Detector, images: readonly string[]): Promise<NonNullable<ChildResult['deviation']>> {
  const float = await loadFastBackend({ precision: 'float' });
  const layers = detector.backbone.identity.layers;
  let maxScore = 0;
  let sumScore = 0;
  let maxMap = 0;
  let sumMap = 0;
  let mapValues = 0;
  for (const file of images) {
    const { features } = await detector.features(file);
    const { results } = await detector.matchFeatures(features);
    const snapshot = detector.store.snapshot();
    const floatResults = [];
    for (let l = 0; l < layers.length; l++) {
      const layer = layers[l]!;
      const params = detector.preset.layers[l]!;
      floatResults.push(
        await float.matchLayer({ shape: [layer.channels, layer.height, layer.width], data: features[l]! }, snapshot.layers[l]!, {
          forwardPatch: params.forwardPatch,
          backwardPatch: params.backwardPatch,
        }),
      );
    }
    const a = detector.scoreResults(results);
    const b = detector.scoreResults(floatResults);
    const ds = Math.abs(a.score - b.score);
    maxScore = Math.max(maxScore, ds);
    sumScore += ds;
    for (let i = 0; i < a.anomalyMap.length; i++) {
      const d = Math.abs(a.anomalyMap[i]! - b.anomalyMap[i]!);
      if (d > maxMap) maxMap = d;
      sumMap += d;
    }
    mapValues += a.anomalyMap.length;
  }
  return { maxScore, meanScore: sumScore / images.length, maxMap, meanMap: sumMap / mapValues };
}

/** Runs one setting in a fresh process (HETMM_THREADS is read once per process). */
function spawnChild(config: ChildConfig, nativeThreads: number, precision: MatchPrecisionSetting): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify(config)], {
      env: { ...process.env, HETMM_THREADS: String(nativeThreads), HETMM_MATCH_PRECISION: precision },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`benchmark child exited with code ${String(code)}`));
      try {
        resolve(JSON.parse(out) as ChildResult);
      } catch (e) {
        reject(new Error(`benchmark child printed no result: ${out.slice(0, 200)}`, { cause: e }));
      }
    });
  });
}

// ---- parent ------------------------------------------------------------------------

async function buildStores(
  dir: string,
  templates: readonly number[],
  dtypes: readonly FeatureDType[],
  model?: string,
): Promise<EndToEndReport['storeBuild'] & { paths: Map<string, string> }> {
  const trainGood = listImages(path.join(datasetRoot, 'train', 'good'));
  const maxK = Math.max(...templates);
  if (trainGood.length < maxK) throw new Error(`${maxK} templates requested but ${trainGood.length} train/good images exist`);
  const detector = await Detector.open({ preset: 'default', backend: 'fast', model });
  const stores = templates.flatMap((k) => dtypes.map((dtype) => ({ k, dtype, store: TemplateStore.create(detector.backbone.identity, { dtype, meta: { preset: 'default' } }) })));
  const t0 = performance.now();
  for (let i = 0; i < maxK; i++) {
    const { features } = await detector.features(trainGood[i]!);
    for (const s of stores) if (i < s.k) s.store.append(features, trainGood[i]!);
  }
  const featureSeconds = (performance.now() - t0) / 1000;
  const paths = new Map<string, string>();
  const out: EndToEndReport['storeBuild']['stores'] = [];
  for (const s of stores) {
    const file = path.join(dir, `magnetic-tile-${s.k}-${s.dtype}${model ? '-int8bb' : ''}.hetmm`);
    const t = performance.now();
    await s.store.save(file);
    const elements = s.store.identity.layers.reduce((sum, l) => sum + l.channels * l.height * l.width, 0);
    out.push({
      templates: s.k,
      dtype: s.dtype,
      fileBytes: statSync(file).size,
      memoryBytes: s.k * elements * (s.dtype === 'float16' ? 2 : 4),
      saveMs: performance.now() - t,
    });
    paths.set(`${s.k}/${s.dtype}`, file);
  }
  await detector.dispose();
  return { images: maxK, featureSeconds, stores: out, paths };
}

const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);
const fixed = (v: number, d = 1): string => v.toFixed(d);

export async function runEndToEnd(options: EndToEndOptions): Promise<EndToEndReport> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hetmm-bench-'));
  const log = (s: string): void => {
    if (!options.json) console.log(s);
  };
  try {
    log(`\n## End-to-end Detector.predict (256x256, preset default, magnetic tile)\n`);
    const built = await buildStores(dir, options.templates, options.dtypes);
    log(
      `Stores built in ${dir}: features of ${built.images} train/good images in ${fixed(built.featureSeconds)} s ` +
        `(${fixed((built.featureSeconds * 1000) / built.images, 0)} ms/image, load average ${fixed(os.loadavg()[0], 2)}).\n`,
    );
    log('| templates | dtype | file MiB | in memory MiB | save ms |');
    log('|---:|---|---:|---:|---:|');
    for (const s of built.stores) log(`| ${s.templates} | ${s.dtype} | ${mib(s.fileBytes)} | ${mib(s.memoryBytes)} | ${fixed(s.saveMs, 0)} |`);

    let int8Model: string | undefined;
    if (options.int8Backbone) {
      // Calibrated on the images of the smallest store (the images being fitted), at most 32.
      const calibrate = listImages(path.join(datasetRoot, 'train', 'good')).slice(0, Math.min(...options.templates));
      int8Model = path.join(dir, 'backbone-int8.onnx');
      const t = performance.now();
      const q = await quantizeModel({ calibrate, output: int8Model });
      log(`\nint8 backbone: quantize-model (${typeof q.method === 'string' ? q.method : 'percentile'}, ${q.calibrationImages} images) took ${fixed((performance.now() - t) / 1000)} s.`);
      const int8Built = await buildStores(dir, options.templates, ['float32'], int8Model);
      for (const [key, file] of int8Built.paths) built.paths.set(`int8/${key}`, file);
      log(`Stores of the int8 backbone: features of ${int8Built.images} images in ${fixed(int8Built.featureSeconds)} s (${fixed((int8Built.featureSeconds * 1000) / int8Built.images, 0)} ms/image).`);
    }
    const images = testImages(options.images, Math.max(...options.templates));
    const rows: EndToEndRow[] = [];
    const settings: Array<{
      templates: number;
      dtype: FeatureDType;
      precision: MatchPrecisionSetting;
      backbone: BackboneSetting;
      threads: readonly [number, number];
      backboneThread?: boolean;
    }> = [];
    const first = { templates: options.templates[0]!, dtype: options.dtypes[0]!, precision: 'float' as const, backbone: 'float' as const };
    for (const t of options.threadStudy) settings.push({ ...first, threads: t });
    for (const templates of options.templates) {
      for (const dtype of options.dtypes) {
        const dup = settings.some((s) => s.templates === templates && s.dtype === dtype && s.threads[0] === options.threads[0] && s.threads[1] === options.threads[1]);
        if (!dup) settings.push({ templates, dtype, precision: 'float', backbone: 'float', threads: options.threads });
      }
      if (options.int8 && options.dtypes.includes('float32')) {
        settings.push({ templates, dtype: 'float32', precision: 'int8', backbone: 'float', threads: options.threads });
      }
      if (int8Model !== undefined) {
        settings.push({ templates, dtype: 'float32', precision: 'float', backbone: 'int8', threads: options.threads });
        if (options.int8) {
          settings.push({ templates, dtype: 'float32', precision: 'int8', backbone: 'int8', threads: options.threads });
          // the same with predictMany's backbone thread (its own onnxruntime session; wall-clock overlap, RSS cost)
          settings.push({ templates, dtype: 'float32', precision: 'int8', backbone: 'int8', threads: options.threads, backboneThread: true });
        }
      }
    }
    log(`\n${images.length} test images per run (defective test images and unseen good ones); ms are per image.`);
    log(`"CPU-time basis" = ${os.availableParallelism()} cores / CPU time per image: the rate with the cores to itself.\n`);
    const cHeads = options.concurrencies.map((c) => `img/s c=${c}`).join(' | ');
    log(
      `| templates | backbone | store dtype / matching | ORT thr | native thr | decode | backbone | match | score | total (median) | CPU ms/img | ${cHeads} | best img/s CPU-time basis | max RSS MiB | load avg |`,
    );
    log(`|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|${options.concurrencies.map(() => '---:').join('|')}|---:|---:|---:|`);
    for (const s of settings) {
      const store = built.paths.get(`${s.backbone === 'int8' ? 'int8/' : ''}${s.templates}/${s.dtype}`)!;
      const model = s.backbone === 'int8' ? int8Model : undefined;
      const r = await spawnChild(
        { store, model, ortThreads: s.threads[0], images, concurrencies: options.concurrencies, warmup: 3, deviation: s.precision === 'int8' && s.backboneThread !== true, backboneThread: s.backboneThread === true },
        s.threads[1],
        s.precision,
      );
      rows.push({ ...r, templates: s.templates, dtype: s.dtype, precision: s.precision, backbone: s.backbone, ortThreads: s.threads[0], backboneThread: s.backboneThread === true });
      const m = r.sequentialMean;
      const bestCpu = Math.min(r.sequentialCpuMs, ...r.pipelined.map((p) => p.cpuMsPerImage));
      log(
        `| ${s.templates} | ${s.backbone === 'int8' ? '**int8**' : 'float32'}${s.backboneThread === true ? ' (thread)' : ''} | ${s.dtype} / ${s.precision === 'int8' ? 'int8' : s.dtype} | ${s.threads[0]} | ${r.nativeThreads} | ${fixed(m.decode)} | ${fixed(m.backbone)} | ${fixed(m.match)} | ${fixed(m.score)} | ` +
          `${fixed(m.total)} (${fixed(r.sequentialMedian.total)}) | ${fixed(r.sequentialCpuMs)} | ` +
          `${r.pipelined.map((p) => fixed(p.imagesPerSecond, 2)).join(' | ')} | ${fixed((os.availableParallelism() * 1000) / bestCpu, 1)} | ` +
          `${fixed(r.maxRssMiB, 0)} | ${r.loadAverage.map((v) => fixed(v, 2)).join(' ')} |`,
      );
    }
    const deviations = rows.filter((r) => r.deviation !== undefined);
    if (deviations.length > 0) {
      log(`\nint8 matching against float matching of the same features (${images.length} images):\n`);
      log('| templates | max abs score diff | mean abs score diff | max abs map diff | mean abs map diff |');
      log('|---:|---:|---:|---:|---:|');
      for (const r of deviations) {
        const d = r.deviation!;
        log(`| ${r.templates} ${r.backbone === 'int8' ? '(int8 backbone)' : ''} | ${d.maxScore.toExponential(2)} | ${d.meanScore.toExponential(2)} | ${d.maxMap.toExponential(2)} | ${d.meanMap.toExponential(2)} |`);
      }
    }
    const { paths: _paths, ...storeBuild } = built;
    return { storeBuild, rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Child entry point: `node e2e-bench.js --child <config JSON>` prints one JSON result.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv[2] === '--child') {
  runChild(JSON.parse(process.argv[3] ?? '') as ChildConfig).then(
    (r) => process.stdout.write(JSON.stringify(r)),
    (e: unknown) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
      process.exitCode = 1;
    },
  );
}
