import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { selectTemplates, ptsMinSamples, selectAtPixel, PtsPixelScratch } from '../src/selection/pts.js';
import { pixelGramReference } from '../src/kernels/reference/gram.js';
import { float16DecodeTable } from '../src/store/float16.js';
import { opticsCosine } from '../src/selection/optics.js';
import type { FeatureStack } from '../src/kernels/contract.js';
import { HetmmError } from '../src/errors.js';
import ptsParity from './parity/ops/pts.js';
import { rng } from './helpers/random.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** [N, C, H, W] float32 stack of unit vectors around a few centres per pixel, some duplicated images. */
function syntheticStack(n: number, c: number, h: number, w: number, seed: number): FeatureStack {
  const rand = rng(seed);
  const gauss = (): number => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  const hw = h * w;
  const data = new Float32Array(n * c * hw);
  const centres = Array.from({ length: 3 }, () => Array.from({ length: c }, gauss));
  for (let i = 0; i < n; i++) {
    const centre = centres[i % 3]!;
    for (let p = 0; p < hw; p++) {
      const v = centre.map((m) => m + 0.4 * gauss());
      const norm = Math.hypot(...v);
      for (let q = 0; q < c; q++) data[(i * c + q) * hw + p] = v[q]! / norm;
    }
  }
  // image n-1 duplicates image 0: exact ties in the similarity sums
  data.copyWithin((n - 1) * c * hw, 0, c * hw);
  return { dtype: 'float32', shape: [n, c, h, w], data };
}

function pixelVectors(stack: FeatureStack, p: number): Float64Array {
  const [n, c, h, w] = stack.shape;
  const hw = h * w;
  const out = new Float64Array(n * c);
  for (let i = 0; i < n; i++) for (let q = 0; q < c; q++) out[i * c + q] = Number(stack.data[(i * c + q) * hw + p]);
  return out;
}

/** The README's selection rule written plainly from vectors (independent of selectAtPixel). */
function ptsRule(x: Float64Array, n: number, c: number, k: number, labels: ArrayLike<number>): number[] {
  const dot = (i: number, j: number): number => {
    let s = 0;
    for (let q = 0; q < c; q++) s += x[i * c + q]! * x[j * c + q]!;
    return s;
  };
  const chosen: number[] = [];
  const ids: number[] = [];
  for (let i = 0; i < n; i++) if (labels[i]! >= 0 && !ids.includes(labels[i]!)) ids.push(labels[i]!);
  for (const id of ids) {
    if (chosen.length >= k) break;
    const members = [...Array(n).keys()].filter((i) => labels[i] === id);
    const sums = members.map((j) => members.reduce((s, m) => s + dot(j, m), 0));
    chosen.push(members[sums.indexOf(Math.max(...sums))]!);
  }
  if (chosen.length === 0) {
    const sums = [...Array(n).keys()].map((i) => [...Array(n).keys()].reduce((s, j) => s + dot(i, j), 0));
    chosen.push(sums.indexOf(Math.max(...sums)));
  }
  while (chosen.length < k) {
    let best = -1;
    let bestSum = Infinity;
    for (let i = 0; i < n; i++) {
      if (chosen.includes(i)) continue;
      const s = chosen.reduce((acc, t) => acc + dot(i, t), 0);
      if (s < bestSum) {
        bestSum = s;
        best = i;
      }
    }
    chosen.push(best);
  }
  return chosen;
}

test('pixelGramReference equals per-pixel dot products, both triangles, float16 too', () => {
  const stack = syntheticStack(7, 5, 3, 4, 1);
  const [n, c] = stack.shape;
  const out = new Float64Array(5 * n * n);
  pixelGramReference(stack, 3, 8, out);
  for (let p = 3; p < 8; p++) {
    const x = pixelVectors(stack, p);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < c; q++) s += x[i * c + q]! * x[j * c + q]!;
        assert.equal(out[(p - 3) * n * n + i * n + j], s);
      }
    }
  }
  // float16: 1.0 = 0x3c00, -2 = 0xc000, 0.5 = 0x3800, smallest subnormal 0x0001
  const t = float16DecodeTable();
  assert.deepEqual([t[0x3c00], t[0xc000], t[0x3800], t[0x0001]], [1, -2, 0.5, 2 ** -24]);
  const half: FeatureStack = { dtype: 'float16', shape: [2, 2, 1, 1], data: Uint16Array.from([0x3c00, 0x3800, 0xc000, 0x3800]) };
  const g = new Float32Array(4);
  pixelGramReference(half, 0, 1, g);
  assert.deepEqual(Array.from(g), [1.25, -1.75, -1.75, 4.25]);
  // an empty range is a no-op (one contract with the fast kernel); a reversed or out-of-map one is an E_ARGUMENT naming the bound
  const untouched = out.slice();
  pixelGramReference(stack, 5, 5, out);
  assert.deepEqual(out, untouched);
  const isRangeError = (bound: RegExp) => (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT' && bound.test(e.message);
  assert.throws(() => pixelGramReference(stack, 5, 4, out), isRangeError(/\[5, 12\] for p1 but received 4/));
  assert.throws(() => pixelGramReference(stack, 0, 13, out), isRangeError(/\[0, 12\] for p1 but received 13/));
});

test('selectTemplates: K sheets, each pixel vector one of the inputs there, chosen by the PTS rule', async () => {
  for (const [n, k, seed] of [[12, 3, 2], [20, 4, 3], [9, 2, 4], [16, 5, 5]] as const) {
    const stack = syntheticStack(n, 6, 3, 5, seed);
    const [, c, h, w] = stack.shape;
    const hw = h * w;
    const progress: number[] = [];
    const r = await selectTemplates([stack], k, { returnIndices: true, onProgress: (d, t) => progress.push(d / t) });
    assert.deepEqual(r.layers[0]!.shape, [k, c, h, w]);
    assert.equal(r.layers[0]!.dtype, 'float32');
    assert.equal(progress.at(-1), 1);
    const { minSamples } = ptsMinSamples(n, k);
    const sel = r.indices![0]!.selected;
    const labels = r.indices![0]!.labels!;
    for (let p = 0; p < hw; p++) {
      const x = pixelVectors(stack, p);
      const picks = Array.from({ length: k }, (_, s) => sel[s * hw + p]!);
      assert.equal(new Set(picks).size, k, `distinct picks at pixel ${p}`);
      // the sheet vector is input image picks[s]'s vector, bit for bit
      for (let s = 0; s < k; s++) {
        for (let q = 0; q < c; q++) assert.equal(r.layers[0]!.data[(s * c + q) * hw + p], stack.data[(picks[s]! * c + q) * hw + p]);
      }
      // labels agree with OPTICS on the pixel's vectors (cosine path, not the Gram path)
      const expectLabels = opticsCosine(x, n, c, minSamples).labels;
      const got = Array.from({ length: n }, (_, i) => labels[i * hw + p]!);
      assert.deepEqual(got, Array.from(expectLabels), `labels at pixel ${p}`);
      assert.deepEqual(picks, ptsRule(x, n, c, k, expectLabels), `picks at pixel ${p}`);
    }
  }
});

test('a float32 Gram kernel is accepted (injected), same layout', async () => {
  const stack = syntheticStack(10, 4, 2, 3, 9);
  let calls = 0;
  const r = await selectTemplates([stack, syntheticStack(10, 3, 1, 2, 10)], 3, {
    gramPrecision: 'float32',
    gram: async (s, p0, p1, out) => {
      calls++;
      assert.ok(out instanceof Float32Array);
      pixelGramReference(s, p0, p1, out);
    },
  });
  assert.equal(calls, 2);
  assert.equal(r.layers.length, 2);
  assert.deepEqual(r.layers[1]!.shape, [3, 3, 1, 2]);
});

/** A float32 Gram as a SIMD kernel sums it: 8 float32 lanes over c, then the lanes. */
function gramFloat32Lanes(stack: FeatureStack, p0: number, p1: number, out: Float32Array | Float64Array): void {
  const [n, c, h, w] = stack.shape;
  const hw = h * w;
  const lanes = new Float32Array(8);
  for (let p = p0; p < p1; p++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        lanes.fill(0);
        for (let q = 0; q < c; q++) {
          lanes[q & 7] = Math.fround(lanes[q & 7]! + Math.fround(Number(stack.data[(i * c + q) * hw + p]) * Number(stack.data[(j * c + q) * hw + p])));
        }
        let s = 0;
        for (let l = 0; l < 8; l++) s = Math.fround(s + lanes[l]!);
        out[(p - p0) * n * n + i * n + j] = s;
      }
    }
  }
}

test('float32 Gram + near-duplicate refinement keeps the float64 labels with many exact duplicates', async () => {
  const n = 20;
  const k = 10; // min_samples 2: pairs of duplicates become core at distance ~0
  const stack = syntheticStack(n, 64, 3, 4, 11);
  const [, c, h, w] = stack.shape;
  const hw = h * w;
  const rand = rng(12);
  for (let i = 1; i < n; i++) {
    if (rand() < 0.4) {
      const src = Math.floor(rand() * n);
      for (let q = 0; q < c; q++) for (let p = 0; p < hw; p++) stack.data[(i * c + q) * hw + p] = stack.data[(src * c + q) * hw + p]!;
    }
  }
  const ref = await selectTemplates([stack], k, { returnIndices: true });
  const fast = await selectTemplates([stack], k, { returnIndices: true, gram: gramFloat32Lanes, gramPrecision: 'float32' });
  assert.deepEqual(Array.from(fast.indices![0]!.labels!), Array.from(ref.indices![0]!.labels!));
  assert.deepEqual(Array.from(fast.indices![0]!.selected), Array.from(ref.indices![0]!.selected));
  // without the refinement the float32 Gram does change labels here (why it exists)
  const g = new Float32Array(hw * n * n);
  gramFloat32Lanes(stack, 0, hw, g);
  const scratch = new PtsPixelScratch(n);
  const labels = new Int32Array(n);
  const chosen = new Int32Array(k);
  let changed = 0;
  for (let p = 0; p < hw; p++) {
    selectAtPixel(g, p * n * n, n, k, 2, scratch, labels, chosen);
    for (let i = 0; i < n; i++) if (labels[i] !== ref.indices![0]!.labels![i * hw + p]) changed++;
  }
  assert.ok(changed > 0, 'expected the unrefined float32 Gram to change some labels');
});

test('worker_threads path gives the same sheets, labels and indices as one thread', async () => {
  const layers = [syntheticStack(14, 5, 4, 5, 21), syntheticStack(14, 3, 2, 3, 22)];
  const one = await selectTemplates(layers, 4, { returnIndices: true });
  const progress: number[] = [];
  const two = await selectTemplates(layers, 4, { returnIndices: true, workers: 2, onProgress: (d) => progress.push(d) });
  assert.equal(progress.at(-1), 4 * 5 + 2 * 3);
  for (let l = 0; l < layers.length; l++) {
    assert.deepEqual(two.layers[l]!.shape, one.layers[l]!.shape);
    assert.deepEqual(Array.from(two.layers[l]!.data), Array.from(one.layers[l]!.data));
    assert.deepEqual(Array.from(two.indices![l]!.labels!), Array.from(one.indices![l]!.labels!));
    assert.deepEqual(Array.from(two.indices![l]!.selected), Array.from(one.indices![l]!.selected));
  }
  // a custom Gram kernel with workers: Gram on this thread, selection on the workers (float32 and float64 buffers)
  for (const variant of [
    { gram: pixelGramReference },
    { gram: gramFloat32Lanes, gramPrecision: 'float32' as const },
  ]) {
    // blocks of 3 pixels: many blocks, both buffers reused, a short last block
    const piped = await selectTemplates(layers, 4, { returnIndices: true, workers: 2, gramBlockBytes: 3 * 14 * 14 * 8, ...variant });
    assert.deepEqual(piped.notes, []);
    for (let l = 0; l < layers.length; l++) {
      assert.deepEqual(Array.from(piped.layers[l]!.data), Array.from(one.layers[l]!.data));
      assert.deepEqual(Array.from(piped.indices![l]!.labels!), Array.from(one.indices![l]!.labels!));
      assert.deepEqual(Array.from(piped.indices![l]!.selected), Array.from(one.indices![l]!.selected));
    }
  }
});

test('N <= K keeps all N images and says so', async () => {
  const stack = syntheticStack(4, 3, 2, 2, 6);
  const r = await selectTemplates([stack], 4, { returnIndices: true });
  assert.deepEqual(r.layers[0]!.shape, [4, 3, 2, 2]);
  assert.deepEqual(Array.from(r.layers[0]!.data), Array.from(stack.data));
  assert.equal(r.notes.length, 1);
  assert.match(r.notes[0]!, /N = 4 templates <= K = 4/);
  assert.equal(r.indices![0]!.labels, null);
});

test('min_samples below 2 is clamped to 2 with a note', async () => {
  assert.deepEqual(ptsMinSamples(7, 4), { minSamples: 2, clamped: true });
  assert.deepEqual(ptsMinSamples(12, 4), { minSamples: 3, clamped: false });
  const r = await selectTemplates([syntheticStack(7, 3, 2, 2, 7)], 4);
  assert.deepEqual(r.layers[0]!.shape, [4, 3, 2, 2]);
  assert.equal(r.notes.length, 1);
  assert.match(r.notes[0]!, /N \/\/ K = 1 is below 2.*min_samples = 2/);
  const none = await selectTemplates([syntheticStack(8, 3, 2, 2, 7)], 4);
  assert.deepEqual(none.notes, []);
});

test('float16 stacks select the same images as their decoded float32 values', async () => {
  const f32 = syntheticStack(12, 4, 2, 2, 8);
  // round-trip through half: encode by nearest table entry search over the used values
  const table = float16DecodeTable();
  const bits = new Uint16Array(f32.data.length);
  const dec = new Float32Array(f32.data.length);
  for (let e = 0; e < bits.length; e++) {
    const v = f32.data[e]!;
    let best = 0;
    let bestErr = Infinity;
    // bracket by exponent is overkill for a test; scan finite patterns of the right sign
    for (let hb = v < 0 ? 0x8000 : 0; hb < (v < 0 ? 0xfc00 : 0x7c00); hb++) {
      const err = Math.abs(table[hb]! - v);
      if (err < bestErr) {
        bestErr = err;
        best = hb;
      }
    }
    bits[e] = best;
    dec[e] = table[best]!;
  }
  const half: FeatureStack = { dtype: 'float16', shape: f32.shape, data: bits };
  const a = await selectTemplates([half], 3, { returnIndices: true });
  const b = await selectTemplates([{ dtype: 'float32', shape: f32.shape, data: dec }], 3, { returnIndices: true });
  assert.equal(a.layers[0]!.dtype, 'float16');
  assert.deepEqual(Array.from(a.indices![0]!.selected), Array.from(b.indices![0]!.selected));
  assert.deepEqual(Array.from(a.indices![0]!.labels!), Array.from(b.indices![0]!.labels!));
});

test('bad arguments name the value', async () => {
  const s = syntheticStack(6, 3, 2, 2, 1);
  await assert.rejects(selectTemplates([s], 0), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT' && /got 0/.test(e.message));
  await assert.rejects(selectTemplates([], 2), /at least one layer/);
  await assert.rejects(selectTemplates([s, syntheticStack(5, 3, 2, 2, 1)], 2), /layer 1 has N = 5 images, expected 6/);
});

test('pts parity fixtures (../shared) pass the checker', async () => {
  const dir = path.resolve(repoRoot, '../shared/fixtures/parity');
  for (const f of ['pts_1_0.json', 'pts_1_1.json', 'pts_1_2.json']) {
    let text: string;
    try {
      text = readFileSync(path.join(dir, f), 'utf8');
    } catch {
      continue;
    }
    const r = await ptsParity({ file: f, ...JSON.parse(text) });
    assert.ok(r.ok, `${f}: ${r.detail}`);
  }
});
