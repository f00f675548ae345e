/**
 * ATMM combination, post-processing and presets: known values, independent
 * brute-force definitions, and the argument errors users will see.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isHetmmError } from '../src/errors.js';
import {
  applyOverrides,
  combineLayers,
  DEFAULT_PRESET,
  gaussianBlur,
  MVTEC_CATEGORIES,
  MVTEC_PRESETS,
  maxPoolMean,
  overridesFromConfig,
  parseLayerSpec,
  parsePostProcess,
  resolvePreset,
  scoreMap,
  upsampleBilinearAlignCorners,
  validatePreset,
  type Preset,
} from '../src/matching/index.js';

const close = (actual: number, expected: number, tol = 1e-6, what = '') =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what} got ${actual}, expected ${expected}`);

const rejectsArg = (fn: () => unknown, pattern: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(isHetmmError(e), `expected a HetmmError, got ${String(e)}`);
    assert.equal(e.code, 'E_ARGUMENT');
    assert.match(e.message, pattern);
    return true;
  });

function pseudoRandom(n: number, seed: number): Float64Array {
  let s = seed;
  return new Float64Array(n).map(() => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  });
}

describe('upsampleBilinearAlignCorners', () => {
  test('2x2 -> 3x3 by hand', () => {
    const out = upsampleBilinearAlignCorners([0, 1, 2, 3], 2, 2, 3, 3);
    assert.deepEqual([...out], [0, 0.5, 1, 1, 1.5, 2, 2, 2.5, 3]);
  });

  test('corners are preserved and a linear ramp stays linear', () => {
    const [h, w, outH, outW] = [5, 7, 23, 16];
    const src = new Float64Array(h * w);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) src[y * w + x] = 0.3 * y - 0.2 * x + 1;
    const out = upsampleBilinearAlignCorners(src, h, w, outH, outW);
    close(out[0]!, src[0]!);
    close(out[outW - 1]!, src[w - 1]!);
    close(out[(outH - 1) * outW]!, src[(h - 1) * w]!);
    close(out[outH * outW - 1]!, src[h * w - 1]!);
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++) {
        const sy = (oy * (h - 1)) / (outH - 1);
        const sx = (ox * (w - 1)) / (outW - 1);
        close(out[oy * outW + ox]!, 0.3 * sy - 0.2 * sx + 1, 1e-5, `(${oy},${ox})`);
      }
    }
  });

  test('a 1-pixel input is replicated; 1-pixel axes and same size work', () => {
    assert.deepEqual([...upsampleBilinearAlignCorners([0.25], 1, 1, 3, 2)], [0.25, 0.25, 0.25, 0.25, 0.25, 0.25]);
    // 1 x 3 -> 2 x 5: rows replicated, columns interpolated
    assert.deepEqual([...upsampleBilinearAlignCorners([0, 2, 4], 1, 3, 2, 5)], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    // output size 1 samples the first pixel (torch align_corners=True)
    assert.deepEqual([...upsampleBilinearAlignCorners([5, 6, 7, 8], 2, 2, 1, 1)], [5]);
    const src = pseudoRandom(12, 1);
    assert.deepEqual(upsampleBilinearAlignCorners(src, 3, 4, 3, 4), Float32Array.from(src));
  });

  test('rejects bad sizes', () => {
    rejectsArg(() => upsampleBilinearAlignCorners([1, 2], 1, 2, 0, 4), /positive integer for outH but received 0/);
    rejectsArg(() => upsampleBilinearAlignCorners([1, 2], 2, 2, 4, 4), /at least h\*w = 4 values but received 2/);
  });
});

describe('combineLayers', () => {
  test('constant layers give the weighted sum everywhere', () => {
    const out = combineLayers(
      [
        { forward: [0.2], backward: [0.6], height: 1, width: 1, alpha: 0.3, lambda: 2 },
        { forward: [0.9, 0.9, 0.9, 0.9], backward: [0.5, 0.5, 0.5, 0.5], height: 2, width: 2, alpha: 1, lambda: 0.5 },
      ],
      4,
      3,
    );
    // 2*(0.3*0.8 + 0.7*0.4) + 0.5*(1*0.1 + 0*0.5) = 1.04 + 0.05
    for (const v of out) close(v, 1.09);
  });

  test('equals the formula with separately upsampled terms', () => {
    const fwd = pseudoRandom(6, 2);
    const bwd = pseudoRandom(6, 3);
    const out = combineLayers([{ forward: fwd, backward: bwd, height: 2, width: 3, alpha: 0.7, lambda: 0.8 }], 5, 8);
    const upF = upsampleBilinearAlignCorners(fwd.map((v) => 1 - v), 2, 3, 5, 8);
    const upB = upsampleBilinearAlignCorners(bwd.map((v) => 1 - v), 2, 3, 5, 8);
    for (let i = 0; i < out.length; i++) close(out[i]!, 0.8 * (0.7 * upF[i]! + 0.3 * upB[i]!), 1e-6);
  });
});

/** Direct 2-D convolution with the outer-product kernel, zero padding, float64. */
function blur2dDirect(map: ArrayLike<number>, h: number, w: number, sigma: number, k: number): Float64Array {
  const kernel2d: number[] = [];
  let sum = 0;
  const c = (k - 1) / 2;
  for (let i = 0; i < k; i++)
    for (let j = 0; j < k; j++) {
      const v = Math.exp(-(((i - c) / sigma) ** 2) / 2) * Math.exp(-(((j - c) / sigma) ** 2) / 2);
      kernel2d.push(v);
      sum += v;
    }
  const out = new Float64Array(h * w);
  const pad = k >> 1;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let i = 0; i < k; i++)
        for (let j = 0; j < k; j++) {
          const yy = y + i - pad;
          const xx = x + j - pad;
          if (yy >= 0 && yy < h && xx >= 0 && xx < w) s += (kernel2d[i * k + j]! / sum) * map[yy * w + xx]!;
        }
      out[y * w + x] = s;
    }
  return out;
}

describe('gaussianBlur', () => {
  test('equals direct 2-D convolution (odd sizes, kernel larger than the map)', () => {
    for (const [h, w, sigma, k] of [
      [9, 13, 1.5, 5],
      [6, 4, 3.0, 11],
      [1, 7, 0.8, 3],
    ] as const) {
      const map = pseudoRandom(h * w, h + w);
      const got = gaussianBlur(map, h, w, sigma, k);
      const want = blur2dDirect(map, h, w, sigma, k);
      for (let i = 0; i < got.length; i++) close(got[i]!, want[i]!, 1e-6, `${h}x${w} s=${sigma} k=${k} [${i}]`);
    }
  });

  test('preserves the sum of an impulse away from the borders, and constant interiors', () => {
    const [h, w] = [21, 21];
    const impulse = new Float64Array(h * w);
    impulse[10 * w + 10] = 3;
    const out = gaussianBlur(impulse, h, w, 2.0, 9);
    close(out.reduce((a, b) => a + b, 0), 3, 1e-5);
    close(out[10 * w + 9]!, out[10 * w + 11]!, 1e-7, 'symmetric');
    close(out[9 * w + 10]!, out[10 * w + 9]!, 1e-7, 'isotropic');
    const constant = gaussianBlur(new Float64Array(h * w).fill(0.5), h, w, 2.0, 9);
    close(constant[10 * w + 10]!, 0.5, 1e-6, 'interior');
    assert.ok(constant[0]! < 0.5, 'zero padding darkens the corner');
  });

  test('rejects bad sigma and kernel', () => {
    rejectsArg(() => gaussianBlur([1], 1, 1, 0, 3), /positive finite sigma but received 0/);
    rejectsArg(() => gaussianBlur([1], 1, 1, 1, 4), /odd positive integer for the blur kernel size but received 4/);
  });
});

describe('maxPoolMean', () => {
  test('by hand, with floor on both axes', () => {
    // 4x5 map, k = 2: windows rows {0,1},{2,3} x cols {0,1},{2,3}; column 4 dropped
    const map = [
      1, 2, 0, 0, 99,
      3, 0, 0, 5, 99,
      0, 0, 7, 0, 99,
      0, 4, 0, 1, 99,
    ];
    assert.equal(maxPoolMean(map, 4, 5, 2), (3 + 5 + 4 + 7) / 4);
    assert.equal(maxPoolMean(map, 4, 5, 4), 7); // single 4x4 window
    assert.equal(maxPoolMean(map, 4, 5, 1), map.slice(0, 20).reduce((a, b) => a + b, 0) / 20);
  });
  test('rejects a window larger than the map', () => {
    rejectsArg(() => maxPoolMean([1, 2, 3, 4], 2, 2, 3), /kernel 3 is larger than the 2x2 map/);
  });
});

describe('presets', () => {
  test('all 15 MVTec AD categories and the default validate', () => {
    assert.equal(MVTEC_CATEGORIES.length, 15);
    for (const c of MVTEC_CATEGORIES) {
      assert.equal(MVTEC_PRESETS[c].name, c);
      validatePreset(MVTEC_PRESETS[c]);
    }
    validatePreset(DEFAULT_PRESET);
  });

  test('table spot checks', () => {
    const L = (p: Preset) => p.layers.map((l) => [l.forwardPatch, l.backwardPatch, l.alpha, l.lambda]);
    assert.deepEqual(L(DEFAULT_PRESET), [[5, 3, 0.3, 1], [5, 3, 0.3, 1], [7, 3, 0.3, 0.8]]);
    assert.deepEqual([DEFAULT_PRESET.image.kind, DEFAULT_PRESET.pixel.kind], ['none', 'none']);

    assert.deepEqual(L(MVTEC_PRESETS.cable), [[13, 7, 0.7, 1], [5, 5, 0.7, 0.8], [7, 1, 0.3, 0.8]]);
    assert.deepEqual(MVTEC_PRESETS.cable.image, { kind: 'blur', sigma: 5.5, kernel: 39 });
    assert.deepEqual(MVTEC_PRESETS.cable.pixel, { kind: 'blur', sigma: 8.6, kernel: 61 });

    assert.deepEqual(L(MVTEC_PRESETS.pill), [[11, 5, 0.5, 1], [9, 1, 0.7, 0.5], [7, 1, 0.3, 0.5]]);
    assert.deepEqual(MVTEC_PRESETS.pill.image, { kind: 'maxpool_mean', kernel: 25 });
    assert.deepEqual(MVTEC_PRESETS.pill.pixel, { kind: 'blur', sigma: 15, kernel: 61 });

    assert.deepEqual(L(MVTEC_PRESETS.zipper), [[13, 5, 0.3, 1], [7, 5, 0.7, 1], [7, 1, 0.7, 0.3]]);
    assert.deepEqual(MVTEC_PRESETS.zipper.image, { kind: 'maxpool_mean', kernel: 11 });
    assert.deepEqual(MVTEC_PRESETS.zipper.pro, { kind: 'blur', sigma: 6.0, kernel: 31 });

    assert.deepEqual(L(MVTEC_PRESETS.carpet), [[7, 3, 0.7, 1], [9, 1, 0.3, 0.8], [3, 1, 0.3, 0.5]]);
    assert.deepEqual(MVTEC_PRESETS.carpet.image, { kind: 'blur', sigma: 5.5, kernel: 35 });
    assert.deepEqual(MVTEC_PRESETS.carpet.pixel, { kind: 'none' });
    assert.deepEqual(MVTEC_PRESETS.carpet.pro, { kind: 'blur', sigma: 3.0, kernel: 11 });

    assert.deepEqual(L(MVTEC_PRESETS.transistor), [[13, 5, 0.3, 1], [5, 3, 0.5, 0.5], [5, 1, 0.3, 0.8]]);
    assert.deepEqual(MVTEC_PRESETS.transistor.image, { kind: 'blur', sigma: 5.1, kernel: 31 });
    assert.deepEqual(MVTEC_PRESETS.transistor.pro, { kind: 'blur', sigma: 6.6, kernel: 39 });

    assert.deepEqual(L(MVTEC_PRESETS.wood), [[7, 3, 0.7, 1], [5, 3, 0.7, 0.8], [7, 1, 0.7, 0.3]]);
    assert.deepEqual(MVTEC_PRESETS.screw.pixel, { kind: 'blur', sigma: 3.3, kernel: 45 });
    assert.deepEqual(MVTEC_PRESETS.toothbrush.pixel, { kind: 'blur', sigma: 3.0, kernel: 11 });
    assert.deepEqual(MVTEC_PRESETS.grid.pro, { kind: 'none' });
  });

  test('resolvePreset', () => {
    assert.equal(resolvePreset('auto', 'metal_nut'), MVTEC_PRESETS.metal_nut);
    assert.equal(resolvePreset('auto', 'my_widget'), DEFAULT_PRESET);
    assert.equal(resolvePreset('auto'), DEFAULT_PRESET);
    assert.equal(resolvePreset('hazelnut', 'cable'), MVTEC_PRESETS.hazelnut);
    rejectsArg(() => resolvePreset('bottel'), /Unknown preset "bottel" \(expected auto, default or one of bottle,/);
  });
});

describe('override parsing', () => {
  test('parseLayerSpec', () => {
    assert.deepEqual(parseLayerSpec('13x3,0.7,1'), { forwardPatch: 13, backwardPatch: 3, alpha: 0.7, lambda: 1 });
    assert.deepEqual(parseLayerSpec(' 5X1, .3 ,0'), { forwardPatch: 5, backwardPatch: 1, alpha: 0.3, lambda: 0 });
    rejectsArg(() => parseLayerSpec('12x3,0.7,1', 'layer1'), /odd positive integer for layer1 forward patch but received 12/);
    rejectsArg(() => parseLayerSpec('13x0,0.7,1'), /backward patch but received 0/);
    rejectsArg(() => parseLayerSpec('13x3,1.5,1', 'layer2'), /alpha in \[0, 1\] for layer2 but received 1.5/);
    rejectsArg(() => parseLayerSpec('13x3,0.5,-1'), /lambda >= 0 for layer but received -1/);
    rejectsArg(() => parseLayerSpec('13x3,0.5'), /"FxB,alpha,lambda" \(e.g. "13x3,0.7,1"\) but received "13x3,0.5"/);
    rejectsArg(() => parseLayerSpec('13,0.5,1'), /windows as "FxB"/);
    rejectsArg(() => parseLayerSpec('13x3,abc,1'), /number for alpha in "13x3,abc,1" but received "abc"/);
    rejectsArg(() => parseLayerSpec('13.5x3,0.5,1'), /forward patch but received 13.5/);
  });

  test('parsePostProcess', () => {
    assert.deepEqual(parsePostProcess('blur:5.5/39'), { kind: 'blur', sigma: 5.5, kernel: 39 });
    assert.deepEqual(parsePostProcess('none'), { kind: 'none' });
    assert.deepEqual(parsePostProcess('clean'), { kind: 'none' });
    assert.deepEqual(parsePostProcess('maxpool-mean:11'), { kind: 'maxpool_mean', kernel: 11 });
    assert.deepEqual(parsePostProcess('maxpool_mean:25'), { kind: 'maxpool_mean', kernel: 25 });
    rejectsArg(() => parsePostProcess('blur:0/39', 'image'), /sigma > 0 for the image blur but received 0/);
    rejectsArg(() => parsePostProcess('blur:5.5/40', 'pixel'), /odd positive integer for the pixel blur kernel but received 40/);
    rejectsArg(() => parsePostProcess('blur:5.5'), /"blur:SIGMA\/K"/);
    rejectsArg(() => parsePostProcess('gauss:3'), /none, blur:SIGMA\/K or maxpool_mean:K but received "gauss:3"/);
    rejectsArg(() => parsePostProcess('maxpool_mean:11', 'pixel', false), /cannot be the pixel post-processing/);
  });

  test('applyOverrides changes only what is given and validates', () => {
    const base = MVTEC_PRESETS.cable;
    const p = applyOverrides(base, {
      layers: [parseLayerSpec('13x3,0.7,1'), undefined, { lambda: 0.2 }],
      pixel: parsePostProcess('none'),
    });
    assert.deepEqual(p.layers[0], { forwardPatch: 13, backwardPatch: 3, alpha: 0.7, lambda: 1 });
    assert.deepEqual(p.layers[1], base.layers[1]);
    assert.deepEqual(p.layers[2], { ...base.layers[2], lambda: 0.2 });
    assert.deepEqual(p.pixel, { kind: 'none' });
    assert.deepEqual(p.image, base.image);
    assert.equal(p.name, 'cable+overrides');
    assert.equal(base.layers[0].forwardPatch, 13);
    assert.equal(base.layers[0].backwardPatch, 7, 'base preset untouched');
    rejectsArg(() => applyOverrides(base, { layers: [{ forwardPatch: 4 }] }), /layer1 forward patch but received 4/);
    rejectsArg(() => applyOverrides(base, { pixel: { kind: 'maxpool_mean', kernel: 3 } }), /cannot be the pixel/);
  });

  test('overridesFromConfig (JSON config file form)', () => {
    const o = overridesFromConfig({ layer1: '9x3,0.5,1', layer3: { alpha: 0.1 }, image: 'blur:5.5/39', pixel: { kind: 'none' } });
    const p = applyOverrides(DEFAULT_PRESET, o);
    assert.deepEqual(p.layers[0], { forwardPatch: 9, backwardPatch: 3, alpha: 0.5, lambda: 1 });
    assert.deepEqual(p.layers[2], { forwardPatch: 7, backwardPatch: 3, alpha: 0.1, lambda: 0.8 });
    assert.deepEqual(p.image, { kind: 'blur', sigma: 5.5, kernel: 39 });
    rejectsArg(() => overridesFromConfig({ layer4: '5x3,0.3,1' }), /Unknown preset override "layer4"/);
    rejectsArg(() => overridesFromConfig({ layer1: { alfa: 0.3 } }), /Unknown key "alfa" in layer1/);
    rejectsArg(() => overridesFromConfig({ pixel: 'maxpool_mean:3' }), /cannot be the pixel/);
    rejectsArg(() => overridesFromConfig([1]), /JSON object of preset overrides/);
  });
});

describe('scoreMap', () => {
  const layerShapes = [[4, 4], [2, 2], [1, 1]] as const;
  const results = [
    { forward: Float32Array.from(pseudoRandom(16, 5)), backward: Float32Array.from(pseudoRandom(16, 6)) },
    { forward: Float32Array.from(pseudoRandom(4, 7)), backward: Float32Array.from(pseudoRandom(4, 8)) },
    { forward: Float32Array.of(0.9), backward: Float32Array.of(0.4) },
  ];
  const out: [number, number] = [32, 40];

  test('raw map is the ATMM combination; pixel map and score follow the preset', () => {
    const preset: Preset = {
      ...MVTEC_PRESETS.zipper,
      pixel: { kind: 'blur', sigma: 2, kernel: 7 },
      image: { kind: 'maxpool_mean', kernel: 8 },
      pro: { kind: 'blur', sigma: 1, kernel: 3 },
    };
    const r = scoreMap(results, layerShapes, preset, out);
    const raw = combineLayers(
      results.map((m, i) => ({
        ...m,
        height: layerShapes[i]![0],
        width: layerShapes[i]![1],
        alpha: preset.layers[i]!.alpha,
        lambda: preset.layers[i]!.lambda,
      })),
      ...out,
    );
    assert.deepEqual(r.anomalyMap, raw);
    assert.deepEqual(r.pixelMap, gaussianBlur(raw, 32, 40, 2, 7));
    assert.deepEqual(r.proMap, gaussianBlur(raw, 32, 40, 1, 3));
    assert.equal(r.score, maxPoolMean(raw, 32, 40, 8));
  });

  test('image score: max of the raw map (none) or of the blurred map (blur)', () => {
    const r = scoreMap(results, layerShapes, DEFAULT_PRESET, out);
    assert.equal(r.score, Math.max(...r.anomalyMap));
    assert.deepEqual(r.pixelMap, r.anomalyMap);
    assert.notEqual(r.pixelMap, r.anomalyMap, 'pixel map is a separate array');
    const blurred = scoreMap(results, layerShapes, { ...DEFAULT_PRESET, image: { kind: 'blur', sigma: 3, kernel: 9 } }, out);
    assert.equal(blurred.score, Math.max(...gaussianBlur(blurred.anomalyMap, 32, 40, 3, 9)));
    assert.ok(blurred.score < r.score, 'blurring lowers the peak');
  });

  test('default output size is 256x256 and layer count is checked', () => {
    assert.equal(scoreMap(results, layerShapes, DEFAULT_PRESET).anomalyMap.length, 256 * 256);
    rejectsArg(() => scoreMap(results.slice(0, 2), layerShapes, DEFAULT_PRESET), /Expected 3 layer results/);
  });
});
