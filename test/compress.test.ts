/**
 * `hetmm compress` and `hetmm fit --pts` in-process on a real store (the 25
 * MVTec grid train images, real model), plus the agreement of the native
 * (float32, refined) and reference (float64) Gram paths on that store.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { before, test } from 'node:test';
import type { FeatureStack } from '../src/kernels/contract.js';
import { selectTemplates } from '../src/selection/pts.js';
import { TemplateStore } from '../src/store/index.js';
import { runCli } from './helpers/cli.js';
import { datasetsDir, tempDir } from './helpers/io-paths.js';

const grid = path.join(datasetsDir, 'mvtec-grid-subset/grid');
const trainDir = path.join(grid, 'train/good');
const tmp = tempDir('compress');
const full = path.join(tmp, 'grid.hetmm');
const K = 8;

const run = runCli;

interface PtsRecord {
  sheets: number;
  fromImages: number;
  minSamples: number | null;
  seconds: number;
  gram: string;
  notes: string[];
}

/** Every sheet vector at every pixel equals (bit for bit) some source image's vector at that pixel. */
function assertSheetsFromSources(sheets: FeatureStack, source: FeatureStack, label: string): void {
  const [k, c, h, w] = sheets.shape;
  const [n] = source.shape;
  const hw = h * w;
  for (let s = 0; s < k; s++) {
    for (let p = 0; p < hw; p++) {
      let found = false;
      for (let i = 0; i < n && !found; i++) {
        let same = true;
        for (let ch = 0; ch < c && same; ch++) same = sheets.data[(s * c + ch) * hw + p] === source.data[(i * c + ch) * hw + p];
        found = same;
      }
      assert.ok(found, `${label}: sheet ${s} pixel ${p} is no source image's vector`);
    }
  }
}

before(async () => {
  const r = await run('fit', trainDir, '-o', full, '--quiet', '--preset', 'default', '--calibrate', '4');
  assert.equal(r.code, 0, r.stderr);
});

test('compress keeps K sheets made of source vectors and records meta.pts', async () => {
  const out = path.join(tmp, 'grid-8.hetmm');
  const r = await run('compress', '-t', full, '--size', String(K), '-o', out, '--json', '--workers', '2', '--no-recalibrate');
  assert.equal(r.code, 0, r.stderr);
  const record = JSON.parse(r.stdout) as { sheets: number; pts: PtsRecord };
  assert.equal(record.sheets, K);
  const source = await TemplateStore.load(full);
  const small = await TemplateStore.load(out);
  assert.equal(small.count, K);
  assert.equal(small.dtype, source.dtype);
  assert.deepEqual(small.identity, source.identity);
  assert.deepEqual(small.files, Array.from({ length: K }, (_, i) => `pts-sheet-00${i}`));
  const pts = small.meta.pts as PtsRecord;
  assert.equal(pts.sheets, K);
  assert.equal(pts.fromImages, 25);
  assert.equal(pts.minSamples, 3); // 25 // 8
  assert.ok(pts.seconds > 0);
  assert.deepEqual(small.meta.preset, source.meta.preset);
  // --no-recalibrate: the full store's threshold is carried over
  assert.deepEqual(small.meta.threshold, source.meta.threshold);
  for (let l = 0; l < source.layerCount; l++) assertSheetsFromSources(small.layer(l), source.layer(l), `layer ${l}`);
});

test('predict works on the PTS store, and add appends one sheet', async () => {
  const out = path.join(tmp, 'grid-8-add.hetmm');
  assert.equal((await run('compress', '-t', full, '--size', String(K), '-o', out, '--quiet')).code, 0);
  const test = path.join(grid, 'test/good');
  const p = await run('predict', '-t', out, test, '--json', '--quiet');
  assert.equal(p.code, 0, p.stderr);
  const lines = p.stdout.trim().split('\n').map((l) => JSON.parse(l) as { score: number; templates?: number });
  assert.equal(lines.length, 3);
  for (const l of lines) assert.ok(Number.isFinite(l.score));
  const a = await run('add', '-t', out, path.join(test, '000.png'), '--quiet');
  assert.equal(a.code, 0, a.stderr);
  const grown = await TemplateStore.load(out);
  assert.equal(grown.count, K + 1);
  assert.equal(grown.files.at(-1), path.join(test, '000.png'));
  assert.equal((grown.meta.pts as PtsRecord).sheets, K, 'meta.pts records the compression, not later additions');
});

test('by default compress recalibrates: original templates scored against the sheets', async () => {
  const out = path.join(tmp, 'grid-8-cal.hetmm');
  const r = await run('compress', '-t', full, '--size', String(K), '-o', out, '--calibrate', '5', '--quiet');
  assert.equal(r.code, 0, r.stderr);
  const small = await TemplateStore.load(out);
  const t = small.meta.threshold as { value: number; method: string; scores: number[] };
  assert.equal(t.scores.length, 5);
  assert.match(t.method, /original template scores against the PTS sheets/);
  assert.ok(Number.isFinite(t.value) && t.value >= Math.min(...t.scores));
});

test('fit --pts writes a compressed, calibrated store in one run', async () => {
  const out = path.join(tmp, 'grid-fit-pts.hetmm');
  const r = await run('fit', trainDir, '-o', out, '--pts', '6', '--preset', 'default', '--calibrate', '3', '--quiet');
  assert.equal(r.code, 0, r.stderr);
  const small = await TemplateStore.load(out);
  assert.equal(small.count, 6);
  assert.equal((small.meta.pts as PtsRecord).minSamples, 4); // 25 // 6
  assert.match((small.meta.threshold as { method: string }).method, /3 original template scores/);
});

test('N <= K keeps every template and says so', async () => {
  const out = path.join(tmp, 'grid-all.hetmm');
  const r = await run('compress', '-t', full, '--size', '30', '-o', out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /N = 25 templates <= K = 30: all 25 are kept/);
  const source = await TemplateStore.load(full);
  const kept = await TemplateStore.load(out);
  assert.equal(kept.count, 25);
  assert.deepEqual(kept.files, source.files);
  for (let l = 0; l < source.layerCount; l++) {
    const a = source.layer(l).data;
    const b = kept.layer(l).data;
    assert.equal(b.length, a.length);
    assert.ok(a.every((v, i) => v === b[i]), `layer ${l} changed`);
  }
});

test('a small K clamps min_samples to 2 with a note', async () => {
  const out = path.join(tmp, 'grid-20.hetmm');
  const r = await run('compress', '-t', full, '--size', '20', '-o', out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /min_samples = N \/\/ K = 1 is below 2/);
});

test('bad K and missing options are one-line E_ARGUMENT errors (exit 2)', async () => {
  for (const [size, shown] of [['0', '"0"'], ['-3', '"-3"'], ['2.5', '"2.5"'], ['ten', '"ten"']] as const) {
    const r = await run('compress', '-t', full, `--size=${size}`, '-o', path.join(tmp, 'x.hetmm'));
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(`Expected an integer >= 1 for --size but received ${shown}`), r.stderr);
    assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
  }
  const missing = await run('compress', '-t', full, '-o', path.join(tmp, 'x.hetmm'));
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /needs --size K/);
  const noStore = await run('compress', '-t', path.join(tmp, 'nope.hetmm'), '--size', '3', '-o', path.join(tmp, 'x.hetmm'));
  assert.equal(noStore.code, 4);
  assert.match(noStore.stderr, /cannot read template store/);
});

test('the native Gram path selects exactly what the float64 reference selects on the real store', async () => {
  // like test/conformance.test.ts, this needs the built addon (npm run install)
  const { loadFastBackend } = await import('../src/kernels/fast/index.js');
  const fast = await loadFastBackend();
  const pixelGram = (s: FeatureStack, p0: number, p1: number, out: Float32Array): Promise<void> => fast.pixelGram(s, p0, p1, out);
  const source = await TemplateStore.load(full);
  const layers = source.snapshot().layers;
  const reference = await selectTemplates(layers, K, { returnIndices: true, workers: 2 });
  const native = await selectTemplates(layers, K, { returnIndices: true, workers: 2, gram: pixelGram, gramPrecision: 'float32' });
  for (let l = 0; l < layers.length; l++) {
    const a = reference.indices![l]!;
    const b = native.indices![l]!;
    let labelDiffs = 0;
    for (let e = 0; e < a.labels!.length; e++) if (a.labels![e] !== b.labels![e]) labelDiffs++;
    let selectedDiffs = 0;
    for (let e = 0; e < a.selected.length; e++) if (a.selected[e] !== b.selected[e]) selectedDiffs++;
    assert.equal(labelDiffs, 0, `layer ${l}: ${labelDiffs} OPTICS labels differ`);
    assert.equal(selectedDiffs, 0, `layer ${l}: ${selectedDiffs} selected indices differ`);
  }
});
