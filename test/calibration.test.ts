/**
 * Issue 13: thresholds with a stated false-alarm rate (order statistic,
 * Clopper-Pearson bound), one calibration call (fitStore), label-free preset
 * tuning, and maps written at the input image's own size.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { Detector } from '../src/detector/detector.js';
import { calibrateStore } from '../src/detector/calibrate.js';
import { binomialCdf, clopperPearsonUpper, normalOnlyThreshold, storedThreshold } from '../src/detector/threshold.js';
import { fitStore } from '../src/fit/fit-store.js';
import { makeRng, synthesizeDefect, SYNTHETIC_KINDS } from '../src/fit/synthetic.js';
import { tunePreset } from '../src/fit/tune.js';
import { HetmmError } from '../src/errors.js';
import { loadImage, loadImagesFrom, loadMask } from '../src/image/index.js';
import { runCli } from './helpers/cli.js';
import { datasetsDir, tempDir } from './helpers/io-paths.js';

const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle');
const tmp = tempDir('calibration');

describe('false-alarm thresholds', () => {
  it('picks the order statistic of the rate and states the expected rate and its Clopper-Pearson bound', () => {
    const scores = Array.from({ length: 200 }, (_, i) => (i + 1) / 200).reverse(); // 0.005 ... 1
    const t = normalOnlyThreshold(scores, { falseAlarmRate: 0.01 });
    // k = ceil(201 * 0.99) = 199: the 199th smallest, 0.995; one score (1.0) above it
    assert.equal(t.threshold, 0.995);
    assert.equal(t.empiricalFalseAlarmRate, 1 / 200);
    assert.equal(t.expectedFalseAlarmRate, 2 / 201);
    assert.equal(t.falseAlarmRate, 0.01);
    assert.equal(t.warning, undefined);
    // the bound solves P(Bin(200, p) <= 1) = 0.05
    assert.ok(Math.abs(binomialCdf(1, 200, t.falseAlarmBound) - 0.05) < 1e-9);
    assert.ok(t.falseAlarmBound > 0.02 && t.falseAlarmBound < 0.03, String(t.falseAlarmBound));
    // 0 exceedances of n: closed form 1 - 0.05^(1/n)
    assert.ok(Math.abs(clopperPearsonUpper(0, 50) - (1 - 0.05 ** (1 / 50))) < 1e-9);
    assert.equal(clopperPearsonUpper(3, 3), 1);
    // a 10% rate on the same scores: k = ceil(201 * 0.9) = 181
    assert.equal(normalOnlyThreshold(scores, { falseAlarmRate: 0.1 }).threshold, 181 / 200);
  });

  it('says so when too few normals support the rate', () => {
    const t = normalOnlyThreshold([0.3, 0.1, 0.2, 0.4, 0.25], { falseAlarmRate: 0.01 });
    assert.equal(t.threshold, 0.4);
    assert.equal(t.expectedFalseAlarmRate, 1 / 6);
    assert.match(t.warning ?? '', /too few normals for a 1\.0% false-alarm rate: 5 scores support at best 17%.*99 or more/);
    for (const bad of [0, 1, -0.1, Number.NaN]) {
      assert.throws(() => normalOnlyThreshold([1, 2], { falseAlarmRate: bad }), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT');
    }
  });
});

describe('synthetic defects', () => {
  it('are deterministic for a seed, change the image only under the mask, and have a mask', async () => {
    const files = await loadImagesFrom([path.join(bottle, 'train/good')]);
    const [a, b] = [await loadImage(files[0]!), await loadImage(files[1]!)];
    for (const kind of SYNTHETIC_KINDS) {
      const one = synthesizeDefect(a, b, kind, makeRng(7));
      const two = synthesizeDefect(a, b, kind, makeRng(7));
      assert.deepEqual(one.mask, two.mask, kind);
      assert.deepEqual(one.image.data, two.image.data, kind);
      const area = one.mask.reduce((s, v) => s + v, 0);
      assert.ok(area >= 16, `${kind}: mask area ${area}`);
      const plane = a.height * a.width;
      let changedOutside = 0;
      let changedInside = 0;
      for (let p = 0; p < plane; p++) {
        const diff = Math.abs(one.image.data[p]! - a.data[p]!) + Math.abs(one.image.data[plane + p]! - a.data[plane + p]!);
        if (one.mask[p] === 0 && diff > 0) changedOutside++;
        if (one.mask[p] === 1 && diff > 1e-3) changedInside++;
      }
      assert.equal(changedOutside, 0, kind);
      assert.ok(changedInside > 0, kind);
    }
  });
});

describe('fitStore, tuning and maps at the image size (bottle)', () => {
  let detector: Detector;
  const store = path.join(tmp, 'bottle.hetmm');

  before(async () => {
    detector = await Detector.open({ preset: 'bottle' });
    const fitted = await fitStore(detector, { files: await loadImagesFrom([path.join(bottle, 'train/good')]), output: store });
    assert.ok(fitted.threshold !== undefined);
  });

  it('calibrates once, for the preset, with a stated rate and a warning for 5 normals', () => {
    const t = storedThreshold(detector.store.meta, 'bottle');
    assert.ok(t !== undefined);
    assert.equal(t.falseAlarmRate, 0.01);
    assert.equal(t.scores.length, 5);
    assert.equal(t.value, Math.max(...t.scores)); // 5 normals cannot resolve 1%: the maximum
    assert.equal(t.expectedFalseAlarmRate, 1 / 6);
    assert.match(t.warning ?? '', /too few normals/);
  });

  it('calibration matches as the line predicts (float for a float store); int8 matching scores agree within 5e-3', async (t) => {
    // the threshold fitStore stored came from the detector's own float matching, as predict on this store runs it
    const stored = storedThreshold(detector.store.meta, 'bottle')!;
    assert.doesNotMatch(stored.method, /int8 matching/);
    assert.equal(detector.backend.precision ?? 'float', 'float');
    const float = await calibrateStore(detector, {});
    assert.deepEqual(float.scores, stored.scores);
    const int8 = await Detector.open({ store, matchPrecision: 'int8' }).catch(() => undefined);
    if (int8 === undefined) return t.skip('no int8 matching on this CPU');
    try {
      const scores = (await calibrateStore(int8, {})).scores;
      assert.match(String(int8.store.meta.threshold && (int8.store.meta.threshold as { method: string }).method), /int8 matching/);
      for (let i = 0; i < float.scores.length; i++) assert.ok(Math.abs(float.scores[i]! - scores[i]!) < 5e-3, `${float.scores[i]} vs ${scores[i]}`);
    } finally {
      int8.dispose();
    }
  });

  it('tunePreset within a tiny budget tries the default windows only and records its proxy scores', async () => {
    const result = await tunePreset(detector, { budgetSeconds: 1e-6, seed: 3 });
    assert.equal(result.record.windowsTried, 1);
    assert.equal(result.record.seed, 3);
    assert.ok(result.record.candidates > 1);
    for (const p of [result.record.proxy, result.record.defaultProxy]) {
      for (const v of [p.image_auroc, p.pixel_auroc, p.aupro]) assert.ok(v >= 0 && v <= 1, String(v));
    }
    assert.match(result.notes.join('\n'), /budget/);
    assert.equal(detector.preset.name, 'bottle'); // the detector's preset is left alone
  });

  it('predict -o writes overlays, masks and maps at a non-square image\'s own size, and the mask covers the defect', async () => {
    // a broken bottle resized to 300x180 (W x H), and its ground truth the same way
    const [W, H] = [300, 180];
    const image = path.join(tmp, 'wide.png');
    await sharp(path.join(bottle, 'test/broken_large/000.png')).resize(W, H, { fit: 'fill' }).png().toFile(image);
    const truth = await loadMask(path.join(bottle, 'ground_truth/broken_large/000_mask.png'), [H, W]);
    const out = path.join(tmp, 'pred');
    const r = await runCli('predict', '-t', store, image, '-o', out, '--json', '--quiet');
    assert.equal(r.code, 0, r.stderr);
    const line = JSON.parse(r.stdout.trim()) as { label: string; mask: string; map: string; heatmap: string; size: { model: number[]; original: number[] }; map_size: number[] };
    assert.equal(line.label, 'defect');
    assert.deepEqual(line.size, { model: [256, 256], original: [H, W] });
    assert.deepEqual(line.map_size, [H, W]);
    for (const f of [line.heatmap, line.mask]) {
      const m = await sharp(f).metadata();
      assert.deepEqual([m.width, m.height], [W, H], f);
    }
    const mask = await loadMask(line.mask, [H, W]);
    const box = (m: Uint8Array): number[] => {
      let [y0, x0, y1, x1] = [H, W, -1, -1];
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if (m[y * W + x]) [y0, x0, y1, x1] = [Math.min(y0, y), Math.min(x0, x), Math.max(y1, y), Math.max(x1, x)];
      return [y0, x0, y1, x1];
    };
    const [a, b] = [box(mask), box(truth)];
    const inter = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!) + 1) * Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!) + 1);
    const area = (q: number[]): number => (q[2]! - q[0]! + 1) * (q[3]! - q[1]! + 1);
    const iou = inter / (area(a) + area(b) - inter);
    assert.ok(iou > 0.5, `mask box ${a} vs defect box ${b}: IoU ${iou.toFixed(2)}`);
    // --map-size model: the model's 256x256
    const r2 = await runCli('predict', '-t', store, image, '-o', path.join(tmp, 'pred-model'), '--json', '--quiet', '--map-size', 'model');
    assert.equal(r2.code, 0, r2.stderr);
    const line2 = JSON.parse(r2.stdout.trim()) as { mask: string; map_size: number[] };
    assert.deepEqual(line2.map_size, [256, 256]);
    const m2 = await sharp(line2.mask).metadata();
    assert.deepEqual([m2.width, m2.height], [256, 256]);
    const bad = await runCli('predict', '-t', store, image, '--map-size', 'huge');
    assert.equal(bad.code, 2);
  });

  it('info shows the stated false-alarm rate', async () => {
    const r = await runCli('info', store);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /expected false alarms 17% \(95% upper bound \d+%\) from 5 normal scores, asked 1\.0%/);
  });
});
