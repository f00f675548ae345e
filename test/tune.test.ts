/**
 * Issue 13, label-free preset tuning: the harder synthetic defects (thin
 * cracks, faint blobs, shaded regions) and the search's candidate table
 * (per-kind proxy scores, normal-scaled layer weights).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Detector } from '../src/detector/detector.js';
import { makeRng, synthesizeDefect } from '../src/fit/synthetic.js';
import { BAND_MAX_STRUCTURE, TUNE_ALPHAS, TUNE_BAND_FRACTIONS, TUNE_KINDS, TUNE_LAMBDAS, TUNE_PIXEL_POSTS, tunePreset } from '../src/fit/tune.js';
import { loadImage, loadImagesFrom } from '../src/image/index.js';
import { validatePreset } from '../src/matching/index.js';
import { datasetsDir } from './helpers/io-paths.js';

const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle');

describe('harder synthetic defects', () => {
  it('a crack is a thin line, a region a large part of the image, a faint blob a small low-contrast change', async () => {
    const files = await loadImagesFrom([path.join(bottle, 'train/good')]);
    const [a, b] = [await loadImage(files[0]!), await loadImage(files[1]!)];
    const { height: h, width: w } = a;
    const plane = h * w;
    for (let seed = 0; seed < 5; seed++) {
      const crack = synthesizeDefect(a, b, 'crack', makeRng(seed)).mask;
      const area = crack.reduce((s, v) => s + v, 0);
      // thin: every row and column crosses the line at most a few times, so the area is far below its bounding box
      let [y0, x0, y1, x1] = [h, w, -1, -1];
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (crack[y * w + x]) [y0, x0, y1, x1] = [Math.min(y0, y), Math.min(x0, x), Math.max(y1, y), Math.max(x1, x)];
      const long = Math.max(y1 - y0, x1 - x0) + 1;
      assert.ok(long >= 0.1 * Math.min(h, w), `seed ${seed}: crack spans ${long} px`);
      assert.ok(area <= 4 * 0.45 * Math.min(h, w) + 16, `seed ${seed}: crack area ${area} is not thin`);

      const region = synthesizeDefect(a, b, 'region', makeRng(seed)).mask;
      const fraction = region.reduce((s, v) => s + v, 0) / plane;
      assert.ok(fraction >= 0.08 && fraction <= 0.6, `seed ${seed}: region covers ${fraction}`);

      const faint = synthesizeDefect(a, b, 'faint', makeRng(seed));
      let maxChange = 0;
      for (let p = 0; p < 3 * plane; p++) maxChange = Math.max(maxChange, Math.abs(faint.image.data[p]! - a.data[p]!));
      assert.ok(maxChange > 0 && maxChange <= 0.15 + 1e-6, `seed ${seed}: faint change ${maxChange}`);
    }
  });
});

describe('tunePreset candidates (bottle, one window setting)', () => {
  let detector: Detector;
  before(async () => {
    detector = await Detector.open({});
    await detector.add(await loadImagesFrom([path.join(bottle, 'train/good')]));
  });
  after(() => detector.dispose());

  it('scores every candidate per kind, averages the kinds, adds normal-scaled weights, and picks the best or the default', async () => {
    // bandMaxStructure: bottle is an object (band structure about 13), on which the band cue is not tried by default
    const result = await tunePreset(detector, { budgetSeconds: 1e-6, seed: 1, bandMaxStructure: Infinity });
    const perWindow = (TUNE_ALPHAS.length * TUNE_LAMBDAS.length + TUNE_ALPHAS.length) * TUNE_PIXEL_POSTS.length;
    assert.equal(result.table.length, perWindow);
    assert.equal(result.record.candidates, perWindow);
    assert.deepEqual(result.record.kinds, TUNE_KINDS);
    const objective = (p: { image_auroc: number; pixel_auroc: number; aupro: number }): number => (p.image_auroc + p.pixel_auroc + p.aupro) / 3;
    for (const c of result.table) {
      assert.deepEqual(Object.keys(c.perKind).sort(), [...TUNE_KINDS].sort());
      const kinds = Object.values(c.perKind);
      for (const key of ['image_auroc', 'pixel_auroc', 'aupro'] as const) {
        const mean = kinds.reduce((s, p) => s + p[key], 0) / kinds.length;
        assert.ok(Math.abs(c.proxy[key] - mean) < 1e-12, key);
      }
      validatePreset({ ...c.preset, name: 'x' });
    }
    // the normal-scaled weights: not on the alpha grid, lambdas scaled to a maximum of 1
    const scaled = result.table.filter((c) => !TUNE_ALPHAS.some((a) => a.every((v, l) => v === c.preset.layers[l]!.alpha)));
    assert.equal(scaled.length, TUNE_ALPHAS.length * TUNE_PIXEL_POSTS.length);
    for (const c of scaled) assert.equal(Math.max(...c.preset.layers.map((l) => l.lambda)), 1);
    // a blur is eligible only when it beats the same weights without blur (the candidate just before it, in order) by more than 0.002
    const eligible = result.table.filter((c, k) => {
      if (c.preset.pixel.kind === 'none') return true;
      const plain = result.table.slice(0, k).reverse().find((p) => p.preset.pixel.kind === 'none')!;
      assert.deepEqual(plain.preset.layers, c.preset.layers);
      return objective(c.proxy) > objective(plain.proxy) + 0.002;
    });
    const best = Math.max(...eligible.map((c) => objective(c.proxy)));
    if (result.record.proxy === result.record.defaultProxy) assert.ok(best <= objective(result.record.defaultProxy) + 0.002);
    else assert.equal(objective(result.record.proxy), best);
    // the band cue step: weight 0 (off) first, then fractions of the clean maps' level; kept only when it beats no cue
    const bands = result.record.bands!;
    assert.equal(bands.weights[0], 0);
    assert.equal(bands.weights.length, TUNE_BAND_FRACTIONS.length + 1);
    assert.ok(bands.weights.every((w, i) => i === 0 || w > bands.weights[i - 1]!), String(bands.weights));
    assert.deepEqual(bands.kinds, [...TUNE_KINDS, 'region']);
    assert.ok(bands.weights.includes(bands.weight));
    if (bands.weight === 0) assert.equal(result.preset.bands, undefined);
    else {
      assert.equal(result.preset.bands!.weight, bands.weight);
      assert.ok(objective(bands.proxy!) > objective(bands.proxyWithout!) + 0.002);
    }
    assert.equal(result.bandTable?.length, bands.weights.length);
    // deterministic for the seed
    const again = await tunePreset(detector, { budgetSeconds: 1e-6, seed: 1, bandMaxStructure: Infinity });
    assert.deepEqual(again.table.map((c) => c.proxy), result.table.map((c) => c.proxy));
    assert.deepEqual({ ...again.record.bands, seconds: 0 }, { ...bands, seconds: 0 });
    assert.deepEqual(again.preset, result.preset);
    // without the step, no band record and no cue
    const off = await tunePreset(detector, { budgetSeconds: 1e-6, seed: 1, bands: false });
    assert.equal(off.record.bands, undefined);
    assert.equal(off.preset.bands, undefined);
    // by default: an object's band structure is too high, no weight is tried
    const object = await tunePreset(detector, { budgetSeconds: 1e-6, seed: 1 });
    assert.ok(object.record.bands!.structure > BAND_MAX_STRUCTURE, String(object.record.bands!.structure));
    assert.deepEqual(object.record.bands!.weights, []);
    assert.equal(object.preset.bands, undefined);
  });
});
