/**
 * OPTICS cost at PTS scale, and whether a float32 Gram changes the labels.
 *   npx tsc -p tsconfig.json && node dist/bench/optics-vs-sklearn.js [trials]
 * Writes the first trial's points to $TMPDIR/hetmm-optics-bench.f64 for
 * bench/optics-vs-sklearn.py (scikit-learn timing on the same points).
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { optics, OpticsScratch, cosineDistanceMatrix } from '../src/selection/optics.js';
import { pixelGramReference } from '../src/kernels/reference/gram.js';
import type { FeatureStack } from '../src/kernels/contract.js';
import { rng } from '../test/helpers/random.js';

const N = 761;
const C = 256;
const K = 10; // min_samples = 761 // 10 = 76
const PIXELS_256 = 64 * 64 + 32 * 32 + 16 * 16;
const trials = Number(process.argv[2] ?? 20);
/** share of images replaced by exact copies of others (duplicate frames happen in real stores) */
const duplicateShare = Number(process.argv[3] ?? 0);

/** N unit vectors in C dims: 6 clusters of varying spread, 5% outliers, float32 like a store. */
function structuredPoints(seed: number): Float32Array {
  const rand = rng(seed);
  const gauss = (): number => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  const centres = Array.from({ length: 6 }, () => Array.from({ length: C }, gauss));
  const out = new Float32Array(N * C);
  for (let i = 0; i < N; i++) {
    const outlier = rand() < 0.05;
    const centre = centres[i % 6]!;
    const spread = outlier ? 10 : 0.5 + 0.25 * (i % 6);
    const v = centre.map((m) => m + spread * gauss());
    const norm = Math.hypot(...v);
    for (let c = 0; c < C; c++) out[i * C + c] = v[c]! / norm;
  }
  for (let i = 0; i < N; i++) {
    if (rand() < duplicateShare) out.copyWithin(i * C, Math.floor(rand() * N) * C, Math.floor(rand() * N) * C + C);
  }
  return out;
}

const scratch = new OpticsScratch(N);
const d64 = new Float64Array(N * N);
const d32 = new Float64Array(N * N);
const g64 = new Float64Array(N * N);
let opticsMs = 0;
let gramMs = 0;
let pixelsWithDiff = 0;
let labelDiffs = 0;
let roundedPixelsWithDiff = 0;
for (let t = 0; t < trials; t++) {
  const pts = structuredPoints(1000 + t);
  if (t === 0) writeFileSync(path.join(os.tmpdir(), 'hetmm-optics-bench.f64'), Buffer.from(Float64Array.from(pts).buffer));
  // the Gram of one pixel through the reference kernel ([N, C, 1, 1] stack)
  const stack: FeatureStack = { dtype: 'float32', shape: [N, C, 1, 1], data: pts };
  let t0 = performance.now();
  pixelGramReference(stack, 0, 1, g64);
  gramMs += performance.now() - t0;
  for (let e = 0; e < N * N; e++) d64[e] = 1 - g64[e]!;
  t0 = performance.now();
  const ref = Int32Array.from(optics(d64, N, Math.floor(N / K), scratch).labels);
  opticsMs += performance.now() - t0;
  // (a) float32 accumulation, as a float32 SIMD kernel would sum (8 lanes, then lanes added)
  for (let i = 0; i < N; i++) {
    for (let j = i; j < N; j++) {
      const lanes = new Float32Array(8);
      for (let c = 0; c < C; c++) lanes[c & 7] = Math.fround(lanes[c & 7]! + Math.fround(pts[i * C + c]! * pts[j * C + c]!));
      let s = 0;
      for (let l = 0; l < 8; l++) s = Math.fround(s + lanes[l]!);
      d32[i * N + j] = 1 - s;
      d32[j * N + i] = 1 - s;
    }
  }
  const f32 = optics(d32, N, Math.floor(N / K), scratch).labels;
  let diff = 0;
  for (let i = 0; i < N; i++) if (f32[i] !== ref[i]) diff++;
  if (diff > 0) pixelsWithDiff++;
  labelDiffs += diff;
  // (b) float64 Gram rounded once to float32 (a float32 output buffer)
  for (let e = 0; e < N * N; e++) d32[e] = 1 - Math.fround(g64[e]!);
  const r32 = optics(d32, N, Math.floor(N / K), scratch).labels;
  let rdiff = 0;
  for (let i = 0; i < N; i++) if (r32[i] !== ref[i]) rdiff++;
  if (rdiff > 0) roundedPixelsWithDiff++;
  if (t === 0) {
    writeFileSync(path.join(os.tmpdir(), 'hetmm-optics-bench.labels'), Buffer.from(ref.buffer));
    const sizes = new Map<number, number>();
    for (const l of ref) sizes.set(l, (sizes.get(l) ?? 0) + 1);
    console.log('labels of trial 0 (label: count):', JSON.stringify(Object.fromEntries([...sizes].sort((a, b) => a[0] - b[0]))));
    const cos = cosineDistanceMatrix(pts, N, C);
    let same = true;
    for (let e = 0; e < N * N; e++) if (cos[e] !== d64[e]) same = false;
    console.log('reference Gram distances == sequential cosine distances:', same);
  }
}
// the reference Gram over a realistic pixel block (vectorised over pixels)
{
  const block = 14; // what selectTemplates uses for N = 761 in float64 (64 MiB per block)
  const data = new Float32Array(N * C * block);
  const rand = rng(7);
  for (let e = 0; e < data.length; e++) data[e] = rand() - 0.5;
  const out = new Float64Array(block * N * N);
  const t0 = performance.now();
  pixelGramReference({ dtype: 'float32', shape: [N, C, 1, block], data }, 0, block, out);
  const ms = (performance.now() - t0) / block;
  console.log(`TS reference Gram, ${block}-pixel block: ${ms.toFixed(1)} ms/pixel -> ${((ms * PIXELS_256) / 1000).toFixed(0)} s for ${PIXELS_256} pixels (1 thread)`);
}
const perPixel = opticsMs / trials;
const gramPerPixel = gramMs / trials;
console.log(`N=${N} C=${C} min_samples=${Math.floor(N / K)} trials=${trials} duplicateShare=${duplicateShare}`);
console.log(`TS OPTICS: ${perPixel.toFixed(2)} ms/pixel -> ${((perPixel * PIXELS_256) / 1000).toFixed(1)} s for ${PIXELS_256} pixels (1 thread)`);
console.log(`TS reference Gram (1 pixel, unvectorised): ${gramPerPixel.toFixed(2)} ms/pixel -> ${((gramPerPixel * PIXELS_256) / 1000).toFixed(1)} s (N^2*C/2 = ${((N * N * C) / 2 / 1e6).toFixed(1)} M mul-add per pixel)`);
console.log(`float32-accumulated Gram: ${pixelsWithDiff}/${trials} pixels with label changes (${labelDiffs} labels in total)`);
console.log(`float64 Gram rounded to float32: ${roundedPixelsWithDiff}/${trials} pixels with label changes`);
