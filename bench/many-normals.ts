/**
 * Many normals (issue 23): throughput, RSS and accuracy as the number of
 * templates N grows, for exact ATMM over all N, PTS-K sheets, and template
 * preselection (the k nearest templates by a global descriptor), in one run.
 * Not part of npm test.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/many-normals.js \
 *     [--data ../shared/datasets/magnetic-tile/magnetic_tile] [--work /tmp/many-normals] \
 *     [--n 60,240,761] [--k 16,32,60] [--exact 60,240] [--pts 60@761,240@761] \
 *     [--grid 2] [--pipelines 2] [--aupro]
 *
 * 1. fits the full store once (`hetmm fit --no-calibrate --dtype float16`:
 *    int8 end to end, the default preset; float16 halves the features' RSS)
 *    and writes stores of its first N templates; PTS-K stores with `hetmm
 *    compress` (`K@N`: K sheets of the first N).
 * 2. runs every case in a child process of its own (so each RSS is that
 *    case's alone): open the store, predict all test images with
 *    predictMany (`--pipelines`, default 2: the fastest end-to-end path on 2
 *    cores), image AUROC, pixel AUROC (and AUPRO with --aupro) at the
 *    model's input size, as hetmm eval computes them.
 * img/s: steady state, from the 10th result to the last (pipeline start-up
 * and the first images' warm-up excluded); RSS: the child's peak
 * (VmHWM) when the last prediction is in, before the metrics (which sort
 * every pixel and take more). Prints a Markdown table and the load average
 * before and after each case; other jobs on the machine change img/s, not
 * the metrics.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Detector } from '../src/detector/detector.js';
import { readMvtecCategory } from '../src/eval/datasets.js';
import { loadMask } from '../src/image/index.js';
import { aupro, imageAuroc, pixelAuroc } from '../src/metrics/index.js';
import { templateFeatures } from '../src/store/feature-stack.js';
import { TemplateStore } from '../src/store/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.resolve(here, '../src/cli/main.js');

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: '../shared/datasets/magnetic-tile/magnetic_tile' },
    work: { type: 'string', default: '/tmp/many-normals' },
    n: { type: 'string', default: '60,240,761' },
    k: { type: 'string', default: '16,32,60' },
    exact: { type: 'string', default: '60,240' },
    pts: { type: 'string', default: '' },
    grid: { type: 'string', default: '2' },
    pipelines: { type: 'string', default: '2' },
    aupro: { type: 'boolean', default: false },
    child: { type: 'string' },
  },
});

const list = (s: string): number[] => (s === '' ? [] : s.split(',').map(Number));
const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');

interface CaseResult {
  readonly name: string;
  readonly store: string;
  readonly templates: number;
  readonly k?: number;
  readonly imgPerS: number;
  /** CPU time of the whole process (every thread) per image over the same steady-state images: steadier than img/s on a shared machine */
  readonly cpuMsPerImg: number;
  /** peak RSS while serving (open + predicting, the maps kept for the metrics: 0.15 GB at 583 x 256 x 256) */
  readonly rssGB: number;
  /** peak RSS of the whole child, the metrics included (pixel AUROC and AUPRO sort all 38 M pixels) */
  readonly rssAllGB: number;
  readonly imageAuroc: number | null;
  readonly pixelAuroc: number | null;
  readonly aupro: number | null;
  readonly openS: number;
  readonly loadBefore: string;
  readonly loadAfter: string;
}

/**
 * This process's peak RSS (VmHWM). Not resourceUsage().maxRSS: Linux carries
 * ru_maxrss over fork and exec, so a child would report its parent's peak.
 */
function peakRssGB(): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'));
  return line === undefined ? Number.NaN : Number(line.split(/\s+/)[1]) / 1024 / 1024;
}

/** The child: one case (store, k or exact), all test images, metrics. */
async function runCase(spec: { name: string; store: string; k?: number; grid: number; pipelines: number; data: string; aupro: boolean }): Promise<CaseResult> {
  const loadBefore = load();
  const dataset = await readMvtecCategory(spec.data);
  const t0 = performance.now();
  const detector = await Detector.open({ store: spec.store, templateSelection: spec.k === undefined ? null : { k: spec.k, grid: spec.grid } });
  const openS = (performance.now() - t0) / 1000;
  const [height, width] = detector.backbone.identity.inputSize;
  const files = dataset.test.map((s) => s.file);
  const scores: number[] = [];
  const maps: Float32Array[] = [];
  const proMaps: Float32Array[] = [];
  let steadyStart = 0;
  let cpuStart = process.cpuUsage();
  let i = 0;
  for await (const r of detector.predictMany(files, { pipelines: spec.pipelines })) {
    if (r.error !== undefined) throw r.error;
    const p = r.prediction!;
    scores.push(p.score);
    maps.push(p.pixelMap);
    proMaps.push(p.proMap ?? p.pixelMap);
    if (++i === 10) {
      steadyStart = performance.now();
      cpuStart = process.cpuUsage();
    }
  }
  const imgPerS = (files.length - 10) / ((performance.now() - steadyStart) / 1000);
  const cpu = process.cpuUsage(cpuStart);
  const cpuMsPerImg = (cpu.user + cpu.system) / 1000 / (files.length - 10);
  const rssGB = peakRssGB();
  const templates = detector.store.count;
  detector.dispose();
  const labels = dataset.test.map((s) => s.label);
  const empty = new Uint8Array(height * width);
  const masks: Uint8Array[] = [];
  for (const s of dataset.test) masks.push(s.label === 0 || s.maskFile === undefined ? empty : await loadMask(s.maskFile, [height, width]));
  const pct = (v: number | null): number | null => (v === null ? null : v * 100);
  return {
    name: spec.name,
    store: spec.store,
    templates,
    ...(spec.k === undefined ? {} : { k: spec.k }),
    imgPerS,
    cpuMsPerImg,
    rssGB,
    rssAllGB: peakRssGB(),
    imageAuroc: pct(imageAuroc(scores, labels).value),
    pixelAuroc: dataset.hasMasks ? pct(pixelAuroc(maps, masks).value) : null,
    aupro: dataset.hasMasks && spec.aupro ? pct(aupro(proMaps, masks, { width }).value) : null,
    openS,
    loadBefore,
    loadAfter: load(),
  };
}

/** A store of the first `n` templates of `full` (same backbone, model, meta). */
async function firstN(full: string, n: number, out: string): Promise<void> {
  const store = await TemplateStore.load(full);
  const sub = TemplateStore.create(store.identity, { dtype: store.dtype, meta: store.meta, ...(store.model === undefined ? {} : { model: store.model }) });
  sub.reserve(n);
  const snapshot = store.snapshot();
  for (let i = 0; i < n; i++) sub.append(templateFeatures(snapshot.layers, i), snapshot.files[i]!);
  await sub.save(out);
}

function run(cmd: string[], what: string): void {
  const r = spawnSync(process.execPath, cmd, { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${what} failed (exit ${String(r.status)})`);
}

if (values.child !== undefined) {
  const result = await runCase(JSON.parse(values.child) as Parameters<typeof runCase>[0]);
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
} else {
  mkdirSync(values.work, { recursive: true });
  const dataset = await readMvtecCategory(values.data);
  const nAll = dataset.trainFiles.length;
  const full = path.join(values.work, `n${nAll}.hetmm`);
  if (!existsSync(full)) {
    const t0 = performance.now();
    run([cli, 'fit', ...dataset.trainFiles, '-o', full, '--preset', 'default', '--no-calibrate', '--dtype', 'float16', '--quiet'], 'fit');
    console.log(`fit ${nAll} templates: ${((performance.now() - t0) / 1000).toFixed(1)} s (load ${load()})`);
  }
  const storeOf = (n: number): string => (n >= nAll ? full : path.join(values.work, `n${n}.hetmm`));
  const ns = list(values.n).map((n) => Math.min(n, nAll));
  const ptsCases = values.pts === '' ? [] : values.pts.split(',').map((s) => s.split('@').map(Number) as [number, number]);
  for (const n of new Set([...ns, ...ptsCases.map(([, n]) => Math.min(n, nAll))])) {
    if (!existsSync(storeOf(n))) await firstN(full, n, storeOf(n));
  }
  const cases: { name: string; store: string; k?: number }[] = [];
  for (const [kSheets, nRaw] of ptsCases) {
    const n = Math.min(nRaw, nAll);
    const out = path.join(values.work, `pts${kSheets}-of-n${n}.hetmm`);
    if (!existsSync(out)) {
      const t0 = performance.now();
      run([cli, 'compress', '-t', storeOf(n), '--size', String(kSheets), '-o', out, '--quiet'], 'compress');
      console.log(`compress ${n} -> ${kSheets} sheets: ${((performance.now() - t0) / 1000).toFixed(1)} s (load ${load()})`);
    }
    cases.push({ name: `PTS-${kSheets} of ${n}`, store: out });
  }
  for (const n of ns) {
    if (list(values.exact).includes(n)) cases.push({ name: `exact ${n}`, store: storeOf(n) });
    for (const k of list(values.k)) if (k < n) cases.push({ name: `select k=${k} of ${n}`, store: storeOf(n), k });
  }
  const results: CaseResult[] = [];
  for (const c of cases) {
    const spec = { ...c, grid: Number(values.grid), pipelines: Number(values.pipelines), data: values.data, aupro: values.aupro };
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify(spec)], { encoding: 'utf8', maxBuffer: 1 << 26 });
    const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (r.status !== 0 || line === undefined) {
      console.log(`${c.name}: failed (exit ${String(r.status)})\n${r.stderr}`);
      continue;
    }
    const result = JSON.parse(line.slice(7)) as CaseResult;
    results.push(result);
    const f = (v: number | null, d = 1): string => (v === null ? '-' : v.toFixed(d));
    console.log(
      `${result.name}: ${f(result.imgPerS)} img/s, ${f(result.cpuMsPerImg)} ms CPU/img, RSS ${f(result.rssGB, 2)} GB (with metrics ${f(result.rssAllGB, 2)}), image AUROC ${f(result.imageAuroc, 2)}, pixel AUROC ${f(result.pixelAuroc, 2)}, AUPRO ${f(result.aupro, 2)}, open ${f(result.openS)} s (load ${result.loadBefore} -> ${result.loadAfter})`,
    );
  }
  console.log('\n| case | templates | img/s | CPU ms / img | RSS GB (serving) | image AUROC | pixel AUROC | AUPRO | load (1/5/15 min) before -> after |\n|---|---:|---:|---:|---:|---:|---:|---:|---|');
  const f = (v: number | null, d = 1): string => (v === null ? '-' : v.toFixed(d));
  for (const r of results) {
    console.log(`| ${r.name} | ${r.templates} | ${f(r.imgPerS)} | ${f(r.cpuMsPerImg)} | ${f(r.rssGB, 2)} | ${f(r.imageAuroc, 2)} | ${f(r.pixelAuroc, 2)} | ${f(r.aupro, 2)} | ${r.loadBefore} -> ${r.loadAfter} |`);
  }
}
