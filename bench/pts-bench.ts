/**
 * PTS timing on a real store (not part of npm test).
 *   npx tsc -p tsconfig.json && node dist/bench/pts-bench.js [STORE] [--k 60] [--pixels 32] [--full fast|reference|none] [--workers N]
 * STORE defaults to /tmp/mt-all.hetmm, built with
 *   node dist/src/cli/main.js fit ../shared/datasets/magnetic-tile/magnetic_tile/train/good -o /tmp/mt-all.hetmm --no-calibrate
 * 1. per pixel, on `--pixels` pixels spread over each layer: the reference
 *    path (float64 TS Gram in the workers) and the fast path (native Gram on
 *    the main thread, OPTICS in the workers), their agreement, and the whole
 *    store's time extrapolated from them;
 * 2. OPTICS alone per pixel (one thread) vs scikit-learn's
 *    OPTICS(metric='precomputed') on the same distance matrices, labels
 *    compared, when /usr/bin/python3 has scikit-learn;
 * 3. with --full, the whole compression timed (what `hetmm compress` runs);
 * 4. the native Gram kernel alone on one 48-pixel block per layer (the
 *    pipeline's block size at N = 761): GMAC/s of wall time and per core of
 *    CPU time (the latter is what it would reach on an idle machine), and the
 *    load average, since other jobs share the machine.
 */
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { FeatureStack } from '../src/kernels/contract.js';
import { loadFastBackend } from '../src/kernels/fast/index.js';
import { compressStore } from '../src/selection/compress-store.js';
import { pixelGramReference } from '../src/kernels/reference/gram.js';
import { optics, OpticsScratch } from '../src/selection/optics.js';
import { ptsMinSamples, selectTemplates } from '../src/selection/pts.js';
import { TemplateStore } from '../src/store/index.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    k: { type: 'string', default: '60' },
    pixels: { type: 'string', default: '32' },
    full: { type: 'string', default: 'none' },
    workers: { type: 'string', default: String(os.availableParallelism()) },
    'sklearn-pixels': { type: 'string', default: '6' },
  },
});
const storePath = positionals[0] ?? '/tmp/mt-all.hetmm';
const K = Number(values.k);
const samplePixels = Number(values.pixels);
const workers = Number(values.workers);
const seconds = (t0: number): number => (performance.now() - t0) / 1000;

let t0 = performance.now();
const store = await TemplateStore.load(storePath);
const layers = store.snapshot().layers;
const n = store.count;
const { minSamples } = ptsMinSamples(n, K);
const totalPixels = layers.reduce((s, l) => s + l.shape[2] * l.shape[3], 0);
console.log(`store ${storePath}: N = ${n}, ${store.dtype}, layers ${layers.map((l) => l.shape.join('x')).join(', ')}; load ${seconds(t0).toFixed(1)} s`);
console.log(`K = ${K}, min_samples = ${minSamples}, ${totalPixels} pixels, ${workers} workers, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})`);

/** `count` pixels spread evenly over the layer, as a compact [N, C, 1, count] stack. */
function samplePixelsOf(stack: FeatureStack, count: number): FeatureStack {
  const [sn, c, h, w] = stack.shape;
  const hw = h * w;
  const picks = Array.from({ length: Math.min(count, hw) }, (_, i) => Math.floor(((i + 0.5) * hw) / Math.min(count, hw)));
  const out = stack.dtype === 'float16' ? new Uint16Array(sn * c * picks.length) : new Float32Array(sn * c * picks.length);
  for (let row = 0; row < sn * c; row++) picks.forEach((p, q) => (out[row * picks.length + q] = stack.data[row * hw + p]!));
  return { dtype: stack.dtype, shape: [sn, c, 1, picks.length], data: out };
}

const fast = await loadFastBackend();
console.log(`native backend: ${fast.variant}, ${fast.threads} kernel threads`);
const fastGram = (s: FeatureStack, p0: number, p1: number, out: Float32Array): Promise<void> => fast.pixelGram(s, p0, p1, out);

// 1. per-pixel cost of both paths on sampled pixels, and their agreement
let refTotal = 0;
let fastTotal = 0;
let labelDiffs = 0;
let pixelDiffs = 0;
for (const [l, stack] of samplePixels > 0 ? layers.entries() : []) {
  const sub = samplePixelsOf(stack, samplePixels);
  const count = sub.shape[3];
  const hw = stack.shape[2] * stack.shape[3];
  t0 = performance.now();
  const ref = await selectTemplates([sub], K, { returnIndices: true, workers });
  const refPerPixel = seconds(t0) / count;
  t0 = performance.now();
  const fst = await selectTemplates([sub], K, { returnIndices: true, workers, gram: fastGram, gramPrecision: 'float32' });
  const fastPerPixel = seconds(t0) / count;
  refTotal += refPerPixel * hw;
  fastTotal += fastPerPixel * hw;
  const a = ref.indices![0]!;
  const b = fst.indices![0]!;
  for (let q = 0; q < count; q++) {
    let differs = false;
    for (let i = 0; i < n; i++) if (a.labels![i * count + q] !== b.labels![i * count + q]) (labelDiffs++, (differs = true));
    for (let s = 0; s < K; s++) if (a.selected[s * count + q] !== b.selected[s * count + q]) differs = true;
    if (differs) pixelDiffs++;
  }
  console.log(
    `layer ${l} (C = ${stack.shape[1]}, ${hw} px): reference ${(refPerPixel * 1000).toFixed(1)} ms/px, fast ${(fastPerPixel * 1000).toFixed(1)} ms/px (${count} sampled pixels, wall time with ${workers} workers)`,
  );
}
if (samplePixels > 0) console.log(`extrapolated whole store: reference ${refTotal.toFixed(0)} s, fast ${fastTotal.toFixed(0)} s`);
if (samplePixels > 0) console.log(`fast vs reference on the sampled pixels: ${pixelDiffs} pixels differ, ${labelDiffs} OPTICS labels differ`);

// 2. OPTICS alone vs scikit-learn on the same float64 distance matrices
{
  const count = Number(values['sklearn-pixels']);
  const sub = samplePixelsOf(layers[0]!, count);
  const m = sub.shape[3];
  const nn = n * n;
  const gram = new Float64Array(m * nn);
  pixelGramReference(sub, 0, m, gram);
  const distances = new Float64Array(m * nn);
  // scikit-learn's 'precomputed' rejects negative entries (self-distances like
  // -2e-16): both sides get the same matrix clipped at 0
  for (let e = 0; e < distances.length; e++) distances[e] = Math.max(0, 1 - gram[e]!);
  const scratch = new OpticsScratch(n);
  const labels = new Int32Array(m * n);
  optics(distances.subarray(0, nn), n, minSamples, scratch); // warm-up
  t0 = performance.now();
  for (let q = 0; q < m; q++) labels.set(optics(distances.subarray(q * nn, (q + 1) * nn), n, minSamples, scratch).labels, q * n);
  const tsMs = (seconds(t0) * 1000) / m;
  console.log(`TS OPTICS alone: ${tsMs.toFixed(2)} ms/pixel (1 thread, ${m} layer-0 pixels) -> ${((tsMs * totalPixels) / 1000).toFixed(1)} s for ${totalPixels} pixels on 1 thread`);
  const dir = os.tmpdir();
  const dPath = path.join(dir, `hetmm-pts-bench-${process.pid}.f64`);
  const lPath = path.join(dir, `hetmm-pts-bench-${process.pid}.labels`);
  writeFileSync(dPath, distances);
  writeFileSync(lPath, labels);
  const script = `
import sys, time, warnings
import numpy as np
from sklearn.cluster import OPTICS
warnings.filterwarnings("ignore")
n, m, ms = ${n}, ${m}, ${minSamples}
d = np.fromfile(sys.argv[1], dtype=np.float64).reshape(m, n, n)
ts = np.fromfile(sys.argv[2], dtype=np.int32).reshape(m, n)
same = 0
t0 = time.perf_counter()
for q in range(m):
    lab = OPTICS(min_samples=ms, metric="precomputed").fit(d[q]).labels_
    same += int((lab == ts[q]).all())
dt = (time.perf_counter() - t0) / m
print(f"scikit-learn OPTICS(metric='precomputed'): {dt * 1000:.1f} ms/pixel; labels equal to TS on {same}/{m} pixels")
`;
  const py = spawnSync('/usr/bin/python3', ['-c', script, dPath, lPath], { encoding: 'utf8' });
  if (py.status === 0) process.stdout.write(py.stdout);
  else console.log(`scikit-learn comparison skipped (/usr/bin/python3 with scikit-learn not available): ${(py.stderr || py.error?.message || '').trim().split('\n').at(-1)}`);
  rmSync(dPath, { force: true });
  rmSync(lPath, { force: true });
}

// 3. the whole compression, as `hetmm compress` runs it
if (values.full === 'fast' || values.full === 'reference') {
  let last = 0;
  t0 = performance.now();
  const result = await compressStore(store, K, {
    gram: values.full,
    workers,
    onProgress: (done, total) => {
      if (done - last >= total / 20 || done === total) {
        last = done;
        process.stdout.write(`  ${done}/${total} px, ${seconds(t0).toFixed(0)} s\n`);
      }
    },
  });
  console.log(`full compression (${values.full}): ${n} -> ${result.store.count} in ${result.pts.seconds.toFixed(1)} s (selection only; store load not included)`);
  console.log(`peak RSS ${(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2)} GiB`);
}

// 4. the native Gram kernel alone, per layer
{
  const blockPixels = 48;
  for (const [l, stack] of layers.entries()) {
    const [, c, h, w] = stack.shape;
    const sub = samplePixelsOf(stack, blockPixels);
    const count = sub.shape[3];
    const out = new Float32Array(count * n * n);
    await fast.pixelGram(sub, 0, count, out); // warm-up (scratch allocation)
    const cpu0 = process.cpuUsage();
    t0 = performance.now();
    const reps = 3;
    for (let r = 0; r < reps; r++) await fast.pixelGram(sub, 0, count, out);
    const wall = seconds(t0) / reps;
    const cpu = process.cpuUsage(cpu0);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6 / reps;
    const macs = (count * n * (n + 1) * c) / 2;
    console.log(
      `native Gram, layer ${l} (C = ${c}, ${h * w} px): ${(macs / wall / 1e9).toFixed(1)} GMAC/s wall, ${(macs / cpuSeconds / 1e9).toFixed(1)} GMAC/s per core of CPU time ` +
        `(${count} px, ${fast.threads} threads, load average ${os.loadavg()[0]!.toFixed(1)})`,
    );
  }
}
