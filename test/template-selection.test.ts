/**
 * Template preselection (issue 23, item 1): the selection step against a
 * brute-force reference (descriptors pooled by hand, exact top-k by
 * similarity, ties to the lower index), the detector matching exactly the
 * chosen templates, k >= N equal to exact ATMM bit for bit (one thread and
 * pipelines), a hot update described at once, and the option's errors.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Detector } from '../src/detector/detector.js';
import { HetmmError } from '../src/errors.js';
import { loadImagesFrom } from '../src/image/index.js';
import { TemplateDescriptors, globalDescriptor, nearestTemplates, resolveTemplateSelection } from '../src/selection/nearest-templates.js';
import { float32ArrayToFloat16 } from '../src/store/float16.js';
import { TemplateStore } from '../src/store/index.js';
import { datasetsDir } from './helpers/io-paths.js';
import { randomUnitMaps, rng } from './helpers/random.js';

// ---- brute force, straight from the definition ---------------------------------

/** Per grid cell (row-major) and channel, the mean of the cell's pixels; then unit length. */
function bruteDescriptor(map: ArrayLike<number>, c: number, h: number, w: number, grid: number): Float64Array {
  const out = new Float64Array(c * grid * grid);
  for (let gy = 0; gy < grid; gy++) {
    for (let gx = 0; gx < grid; gx++) {
      const pixels: [number, number][] = [];
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (Math.min(grid - 1, Math.floor((y * grid) / h)) === gy && Math.min(grid - 1, Math.floor((x * grid) / w)) === gx) pixels.push([y, x]);
      for (let ch = 0; ch < c; ch++) {
        let s = 0;
        for (const [y, x] of pixels) s += map[ch * h * w + y * w + x]!;
        out[(gy * grid + gx) * c + ch] = pixels.length > 0 ? s / pixels.length : 0;
      }
    }
  }
  const norm = Math.hypot(...out);
  return out.map((v) => (norm > 0 ? v / norm : 0));
}

/** The exact top k by similarity (ties: lower index), `exclude` left out, in ascending index order. */
function bruteTopK(descriptors: readonly ArrayLike<number>[], query: ArrayLike<number>, k: number, exclude?: number): number[] {
  const sims = descriptors.map((d) => {
    let s = 0;
    for (let i = 0; i < query.length; i++) s += d[i]! * query[i]!;
    return s;
  });
  const order = sims.map((_, i) => i).filter((i) => i !== exclude);
  order.sort((a, b) => (sims[b]! > sims[a]! ? 1 : sims[b]! < sims[a]! ? -1 : a - b));
  return order.slice(0, k).sort((a, b) => a - b);
}

describe('the selection step against brute force', () => {
  test('globalDescriptor pools each grid cell and normalises, for grids finer and coarser than the map', () => {
    for (const [c, h, w, grid] of [[3, 4, 4, 1], [5, 5, 3, 2], [8, 16, 16, 2], [4, 7, 9, 3], [2, 2, 2, 4]] as const) {
      const map = randomUnitMaps(1, c, h, w, c * 31 + h);
      const out = new Float32Array(c * grid * grid + 2);
      globalDescriptor(map, 0, [c, h, w], grid, out, 2);
      const expected = bruteDescriptor(map, c, h, w, grid);
      expected.forEach((v, i) => assert.ok(Math.abs(out[2 + i]! - v) < 1e-6, `[${c},${h},${w}] grid ${grid} element ${i}: ${out[2 + i]} vs ${v}`));
    }
  });

  test('nearestTemplates is the exact top k, ties to the lower index, never the excluded one', () => {
    const random = rng(7);
    const n = 40;
    const d = 24;
    const rows: Float32Array[] = Array.from({ length: n }, () => Float32Array.from({ length: d }, () => random() * 2 - 1));
    // exact ties: copies of earlier rows
    rows[17] = rows[3]!.slice();
    rows[30] = rows[3]!.slice();
    rows[25] = rows[9]!.slice();
    const flat = new Float32Array(n * d);
    rows.forEach((r, i) => flat.set(r, i * d));
    for (const [qi, k, exclude] of [[3, 1, undefined], [3, 2, undefined], [3, 3, 3], [9, 1, 9], [5, 7, undefined], [0, 39, 12], [11, 40, undefined], [11, 100, 4]] as const) {
      const query = rows[qi]!;
      const got = [...nearestTemplates(flat, n, query, k, exclude)];
      assert.deepEqual(got, bruteTopK(rows, query, k, exclude), `query ${qi}, k ${k}, exclude ${String(exclude)}`);
    }
    // the copies of row 3 tie with it: the lowest indices win
    assert.deepEqual([...nearestTemplates(flat, n, rows[3]!, 2)], [3, 17]);
    assert.deepEqual([...nearestTemplates(flat, n, rows[3]!, 2, 3)], [17, 30]);
    assert.throws(() => nearestTemplates(flat, n, rows[0]!, 0), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT');
  });

  test('TemplateDescriptors: float32 and float16 stores, computed once, a grown store only for its new templates', () => {
    const [c, h, w] = [6, 5, 8];
    const maps = randomUnitMaps(9, c, h, w, 99);
    for (const dtype of ['float32', 'float16'] as const) {
      const data = dtype === 'float32' ? maps : float32ArrayToFloat16(maps);
      const descriptors = new TemplateDescriptors(2);
      const first = descriptors.of({ dtype, shape: [4, c, h, w], data });
      const firstCopy = first.slice();
      const all = descriptors.of({ dtype, shape: [9, c, h, w], data });
      assert.deepEqual(all.subarray(0, firstCopy.length), firstCopy, `${dtype}: the first 4 kept`);
      for (let t = 0; t < 9; t++) {
        const map = dtype === 'float32' ? maps.subarray(t * c * h * w) : decodeHalf(data as Uint16Array, t * c * h * w, c * h * w);
        const expected = bruteDescriptor(map, c, h, w, 2);
        expected.forEach((v, i) => assert.ok(Math.abs(all[t * expected.length + i]! - v) < 1e-6, `${dtype} template ${t} element ${i}`));
      }
    }
  });

  test('the option is checked: k a positive integer, grid and layer in range, no unknown keys', () => {
    assert.deepEqual(resolveTemplateSelection({ k: 8 }, 3, 'o'), { k: 8, grid: 2, layer: 2 });
    assert.deepEqual(resolveTemplateSelection({ k: 8, grid: 1, layer: 0 }, 3, 'o'), { k: 8, grid: 1, layer: 0 });
    for (const bad of [{ k: 0 }, { k: 1.5 }, { k: '8' }, {}, { k: 4, grid: 0 }, { k: 4, layer: 3 }, { k: 4, kk: 1 }, null, [4], 4]) {
      assert.throws(() => resolveTemplateSelection(bad, 3, 'options.templateSelection'), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT' && /options\.templateSelection/.test(e.message), JSON.stringify(bad));
    }
  });
});

function decodeHalf(bits: Uint16Array, offset: number, length: number): Float32Array {
  // the store's own decoding is what descriptors see; a plain re-implementation of IEEE half
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    const b = bits[offset + i]!;
    const sign = b & 0x8000 ? -1 : 1;
    const exp = (b >> 10) & 0x1f;
    const frac = b & 0x3ff;
    out[i] = exp === 0 ? sign * 2 ** -14 * (frac / 1024) : exp === 31 ? (frac ? NaN : sign * Infinity) : sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return out;
}

// ---- the detector: the unaligned hazelnut set (28 normals), float model ------------

describe('a detector with template selection', () => {
  const category = path.join(datasetsDir, 'hazelnut-toy/hazelnut');
  let trainFiles: string[];
  let testFiles: string[];
  let exact: Detector;
  let features: Float32Array[][];

  before(async () => {
    trainFiles = (await loadImagesFrom([path.join(category, 'train/good')])).slice(0, 12);
    testFiles = (await loadImagesFrom([path.join(category, 'test/good'), path.join(category, 'test/colour')])).filter((_, i) => i % 4 === 0);
    exact = await Detector.open({ preset: 'hazelnut' });
    await exact.add(trainFiles);
    features = [];
    for (const f of trainFiles) features.push((await exact.features(f)).features);
  });

  after(() => exact.dispose());

  const withSelection = (k: number, grid = 2): Promise<Detector> => Detector.open({ store: exact.store, preset: 'hazelnut', templateSelection: { k, grid } });

  test('k >= N: every prediction equals exact ATMM bit for bit, on one thread and on pipelines', async () => {
    for (const k of [trainFiles.length, 1000]) {
      const selecting = await withSelection(k);
      assert.deepEqual(selecting.templateSelection, { k, grid: 2, layer: 2 });
      for (const file of testFiles) {
        const [a, b] = [await exact.predict(file), await selecting.predict(file)];
        assert.equal(b.score, a.score, `${file} k ${k}`);
        assert.deepEqual(b.anomalyMap, a.anomalyMap);
        assert.deepEqual(b.pixelMap, a.pixelMap);
        assert.equal(b.templates, trainFiles.length);
      }
      const piped = [];
      for await (const r of selecting.predictMany(testFiles, { pipelines: 2 })) piped.push(r.prediction!);
      for (const [i, file] of testFiles.entries()) assert.equal(piped[i]!.score, (await exact.predict(file)).score, `pipelines ${file} k ${k}`);
      selecting.dispose();
    }
  });

  test('k < N: matches exactly the brute-force k nearest templates (bit for bit a store of just those), on one thread and on pipelines', async () => {
    const layer = 2;
    const [, c, h, w] = exact.store.snapshot().layers[layer]!.shape;
    const descriptors = features.map((f) => bruteDescriptor(f[layer]!, c, h, w, 2));
    for (const k of [1, 3, 5]) {
      const selecting = await withSelection(k);
      const piped = [];
      for await (const r of selecting.predictMany(testFiles, { pipelines: 2 })) piped.push(r.prediction!);
      for (const [i, file] of testFiles.entries()) {
        const query = (await exact.features(file)).features;
        const chosen = bruteTopK(descriptors, bruteDescriptor(query[layer]!, c, h, w, 2), k);
        const just = await Detector.open({ preset: 'hazelnut' });
        for (const t of chosen) just.store.append(features[t]!, trainFiles[t]!);
        const expected = await just.predict(file);
        const actual = await selecting.predict(file);
        assert.equal(actual.templates, k, 'matched against k templates');
        assert.equal(actual.score, expected.score, `${file}: k ${k} chosen ${chosen.join(',')}`);
        assert.deepEqual(actual.anomalyMap, expected.anomalyMap);
        assert.equal(piped[i]!.templates, k);
        assert.equal(piped[i]!.score, expected.score, `pipelines ${file}: k ${k}`);
        just.dispose();
      }
      selecting.dispose();
    }
  });

  test('leave-one-out with selection never picks the left-out template and equals a store without it', async () => {
    const selecting = await withSelection(4);
    for (const exclude of [0, 5, trainFiles.length - 1]) {
      const out = await selecting.matchFeatures(features[exclude]!, { exclude });
      assert.equal(out.templates, 4);
      const store = TemplateStore.create(exact.store.identity);
      features.forEach((f, i) => i !== exclude && store.append(f, trainFiles[i]!));
      const without = await Detector.open({ store, preset: 'hazelnut', templateSelection: { k: 4 } });
      const expected = await without.matchFeatures(features[exclude]!);
      out.results.forEach((r, l) => {
        assert.deepEqual(r.forward, expected.results[l]!.forward, `exclude ${exclude} layer ${l} forward`);
        assert.deepEqual(r.backward, expected.results[l]!.backward, `exclude ${exclude} layer ${l} backward`);
      });
      without.dispose();
      const self = await selecting.matchFeatures(features[exclude]!);
      assert.ok(self.results[0]!.forward.every((v) => Math.abs(v - 1) < 1e-5), 'without exclusion the image finds itself');
      assert.ok(!out.results[0]!.forward.every((v) => Math.abs(v - 1) < 1e-5), 'with exclusion it does not');
    }
    selecting.dispose();
  });

  test('a hot update is described at once: the added image is its own nearest template', async () => {
    const store = TemplateStore.create(exact.store.identity);
    for (let i = 0; i < 6; i++) store.append(features[i]!, trainFiles[i]!);
    const selecting = await Detector.open({ store, preset: 'hazelnut', templateSelection: { k: 1 } });
    const added = trainFiles[9]!;
    const before = await selecting.predict(added);
    assert.ok(before.score > 0.01, 'not yet a template: some anomaly');
    await selecting.add([added]);
    const after = await selecting.predict(added);
    assert.equal(after.templates, 1);
    assert.ok(after.score < 1e-4, `matched against itself (score ${after.score})`);
    selecting.dispose();
  });

  test('a store\'s meta.templateSelection applies without the option; null turns it off; a bad one is E_STORE_FORMAT', async () => {
    const store = TemplateStore.create(exact.store.identity, { meta: { templateSelection: { k: 2 } } });
    for (let i = 0; i < 6; i++) store.append(features[i]!, trainFiles[i]!);
    const fromMeta = await Detector.open({ store, preset: 'hazelnut' });
    assert.deepEqual(fromMeta.templateSelection, { k: 2, grid: 2, layer: 2 });
    assert.equal((await fromMeta.predict(testFiles[0]!)).templates, 2);
    fromMeta.dispose();
    const off = await Detector.open({ store, preset: 'hazelnut', templateSelection: null });
    assert.equal(off.templateSelection, undefined);
    assert.equal((await off.predict(testFiles[0]!)).templates, 6);
    off.dispose();
    store.meta.templateSelection = { k: -1 };
    await assert.rejects(Detector.open({ store, preset: 'hazelnut' }), (e: unknown) => e instanceof HetmmError && e.code === 'E_STORE_FORMAT');
    await assert.rejects(Detector.open({ store, templateSelection: { k: 0 } as never }), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT');
  });
});
