/**
 * Issue 13, the band cue (src/matching/bands.ts, docs/TUNING.md "The band
 * cue"): the profile against a hand-computed reference, the cue map, the
 * pixel map with and without it, and a preset with a band cue through a
 * store file and back.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Detector } from '../src/detector/detector.js';
import { HetmmError } from '../src/errors.js';
import { loadImagesFrom } from '../src/image/index.js';
import type { MatchResult } from '../src/kernels/contract.js';
import { bandMap, bandProfile, bandStatistics, DEFAULT_PRESET, scoreMap, validatePreset, type Preset } from '../src/matching/index.js';
import { datasetsDir, tempDir } from './helpers/io-paths.js';

/** A 3x4x4 image whose grey rows are 0, 0.1, 0.1, 0.4 (all channels alike). */
function rowsImage(): Float32Array {
  const grey = [0, 0.1, 0.1, 0.4];
  const data = new Float32Array(3 * 16);
  for (let c = 0; c < 3; c++) for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) data[c * 16 + y * 4 + x] = grey[y]!;
  return data;
}

describe('band cue', () => {
  it('profiles an image against a hand-computed reference', () => {
    const p = bandProfile(rowsImage(), 4, 4, 2);
    // row band 0 (rows 0-1): |0.1-0| and |0.1-0.1| -> 0.05; band 1 (rows 2-3): |0.4-0.1| twice (the last row looks back) -> 0.3
    // logs minus the median (the upper one of two): [ln(0.051) - ln(0.301), 0]; columns are flat: [0, 0]
    const expected = [Math.log(0.051) - Math.log(0.301), 0, 0, 0];
    assert.equal(p.length, 4);
    for (let i = 0; i < 4; i++) assert.ok(Math.abs(p[i]! - expected[i]!) < 1e-6, `${i}: ${p[i]} vs ${expected[i]}`);
    // transposing the image swaps rows and columns
    const t = rowsImage();
    const tr = new Float32Array(48);
    for (let c = 0; c < 3; c++) for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) tr[c * 16 + x * 4 + y] = t[c * 16 + y * 4 + x]!;
    const q = bandProfile(tr, 4, 4, 2);
    assert.deepEqual(Array.from(q), [p[2], p[3], p[0], p[1]]);
    assert.throws(() => bandProfile(new Float32Array(10), 4, 4, 2), HetmmError);
    assert.throws(() => bandProfile(rowsImage(), 4, 4, 8), HetmmError);
  });

  it('scores the deviation from the normals band by band, a pixel taking its row and column bands\' mean', () => {
    const stats = bandStatistics([Float32Array.from([0, 0, 0, 0]), Float32Array.from([2, 0, 0, 2])]);
    assert.deepEqual(stats, { mean: [1, 0, 0, 1], sd: [1, 0, 0, 1] });
    // half the mean sd (0.25) is added to every band's sd
    const profile = Float32Array.from([3, 0.5, 0, 1]);
    const z = [2 / 1.25, 0.5 / 0.25, 0, 0];
    const map = bandMap(profile, stats, 2, 2);
    assert.deepEqual(Array.from(map).map((v) => +v.toFixed(6)), [(z[0]! + z[2]!) / 2, (z[0]! + z[3]!) / 2, (z[1]! + z[2]!) / 2, (z[1]! + z[3]!) / 2].map((v) => +v.toFixed(6)));
    const big = bandMap(profile, stats, 3, 3);
    assert.ok(Math.abs(big[4]! - (map[0]! + map[1]! + map[2]! + map[3]!) / 4) < 1e-6); // band centres interpolated
    assert.throws(() => bandMap(profile, { mean: [0, 0], sd: [1, 1] }, 2, 2), HetmmError);
  });

  it('adds the weighted cue to the pixel map only, and needs the profile', () => {
    const shapes = [[4, 4], [2, 2], [2, 2]] as const;
    const results: MatchResult[] = shapes.map(([h, w], l) => {
      const forward = Float32Array.from({ length: h * w }, (_, i) => 0.9 - 0.01 * i - 0.1 * l);
      return { forward, backward: forward.map((v) => v + 0.05) } as unknown as MatchResult;
    });
    const stats = { mean: [0, 0, 0, 0], sd: [1, 1, 1, 1] };
    const preset: Preset = { ...DEFAULT_PRESET, name: 'with bands', bands: { weight: 0.5, ...stats } };
    validatePreset(preset);
    const profile = Float32Array.from([1, -1, 2, 0]);
    const base = scoreMap(results, shapes, DEFAULT_PRESET, [8, 8]);
    const withBands = scoreMap(results, shapes, preset, [8, 8], profile);
    const cue = bandMap(profile, stats, 8, 8);
    assert.equal(withBands.score, base.score);
    assert.deepEqual(withBands.anomalyMap, base.anomalyMap);
    for (let i = 0; i < 64; i++) assert.ok(Math.abs(withBands.pixelMap[i]! - (base.pixelMap[i]! + 0.5 * cue[i]!)) < 1e-6);
    assert.throws(() => scoreMap(results, shapes, preset, [8, 8]), /band profile/);
    for (const bands of [{ weight: -1, ...stats }, { weight: 1, mean: [0, 0, 0], sd: [1, 1, 1] }, { weight: 1, mean: [0, 0], sd: [1, -1] }]) {
      assert.throws(() => validatePreset({ ...DEFAULT_PRESET, bands }), HetmmError);
    }
  });
});

describe('a preset with a band cue in a store (bottle)', () => {
  let detector: Detector;
  let files: string[];
  before(async () => {
    files = await loadImagesFrom([path.join(datasetsDir, 'mvtec-bottle-xs/bottle/train/good')]);
    detector = await Detector.open({});
    await detector.add(files.slice(0, 3));
  });
  after(() => detector.dispose());

  it('is saved with the store, reopened, and applied by predict', async () => {
    const profiles = [];
    for (const f of files.slice(0, 3)) {
      const image = await detector.loadImage(f);
      profiles.push(bandProfile(image.data, image.height, image.width));
    }
    const preset: Preset = { ...DEFAULT_PRESET, name: 'tuned', bands: { weight: 0.05, ...bandStatistics(profiles) } };
    const query = files[3]!;
    const plain = await detector.predict(query);
    detector.preset = preset;
    detector.store.meta.preset = preset;
    const file = path.join(tempDir('hetmm-bands-'), 'bands.hetmm');
    await detector.store.save(file);
    const reopened = await Detector.open({ store: file });
    try {
      assert.deepEqual(reopened.preset.bands, preset.bands);
      const p = await reopened.predict(query);
      const image = await reopened.loadImage(query);
      const cue = bandMap(bandProfile(image.data, image.height, image.width), preset.bands!, image.height, image.width);
      assert.equal(p.score, plain.score);
      let moved = 0;
      for (let i = 0; i < cue.length; i++) {
        assert.ok(Math.abs(p.pixelMap[i]! - (plain.pixelMap[i]! + 0.05 * cue[i]!)) < 1e-5);
        moved = Math.max(moved, Math.abs(p.pixelMap[i]! - plain.pixelMap[i]!));
      }
      assert.ok(moved > 1e-4, 'the cue changes the pixel map');
    } finally {
      reopened.dispose();
    }
  });
});
