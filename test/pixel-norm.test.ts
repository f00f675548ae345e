import assert from 'node:assert/strict';
import { test } from 'node:test';
import { l2NormalisePixels } from '../src/backbone/index.js';
import { loadFastBackend } from '../src/kernels/fast/index.js';
import { Detector } from '../src/detector/detector.js';
import { expectHetmm } from './helpers/errors.js';
import { rng } from './helpers/random.js';

function randomMap(length: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length }, () => (r() - 0.5) * 8);
}

test('native l2NormalisePixels is bit-identical to the TypeScript reference (offsets, odd sizes, zero pixels)', async () => {
  const fast = await loadFastBackend();
  const native = fast.l2NormalisePixels;
  assert.ok(native, 'the addon exports l2NormalizePixels');
  for (const [c, h, w] of [[256, 64, 64], [1024, 16, 16], [3, 5, 7], [1, 1, 1], [7, 33, 31]] as const) {
    const size = c * h * w;
    const src = randomMap(2 * size + 3, c + h + w);
    src.fill(0, size + 3, size + 3 + h * w); // channel 0 of the second map: pixels whose norm may hit the epsilon
    for (const offset of [0, 3, size + 3]) {
      const a = l2NormalisePixels(src, c, h, w, offset);
      const b = native(src, c, h, w, offset);
      assert.equal(b.length, size);
      assert.deepEqual(b, a, `[${c},${h},${w}] offset ${offset}`);
    }
  }
  const zeros = native(new Float32Array(12), 3, 2, 2);
  assert.deepEqual([...zeros], new Array(12).fill(0), 'a zero pixel stays zero (divided by the epsilon)');
  assert.throws(() => native(new Float32Array(10), 3, 2, 2), expectHetmm('E_ARGUMENT', 'does not fit'));
  assert.throws(() => native(new Float32Array(12), 3, 2, 2, 1), expectHetmm('E_ARGUMENT', 'does not fit'));
});

test('Detector.open plugs the native normaliser into the backbone (same features as the reference path)', async () => {
  const d = await Detector.open({ backend: 'fast', threads: 1 });
  const image = { source: 'synthetic', width: 256, height: 256, data: randomMap(3 * 256 * 256, 5).map((v) => Math.abs(v) / 4) } as never;
  assert.notEqual(d.backbone.pixelNormaliser, l2NormalisePixels, 'the native normaliser is in use');
  assert.equal(d.backbone.pixelNormaliser, (d.backend as { l2NormalisePixels?: unknown }).l2NormalisePixels);
  const viaDetector = (await d.features(image)).features;
  d.backbone.usePixelNormaliser(l2NormalisePixels);
  const viaReference = (await d.features(image)).features;
  viaDetector.forEach((f, l) => assert.deepEqual(f, viaReference[l]));
  d.dispose();
});
