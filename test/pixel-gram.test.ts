/**
 * The native cache-blocked Gram kernel (native/gram_body.h) at the shapes its
 * blocking makes special: N across several image panels (128 images) with a
 * partial last panel and N not a multiple of the register block (4), C across
 * several channel blocks (32) with a partial last one, pixel ranges with partial
 * 16-pixel chunks, float16 input, every compiled variant. Checked against a
 * float64 brute force with the float32 summation error bound, plus exact
 * symmetry and "every entry written" (NaN sentinel).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FeatureStack } from '../src/kernels/contract.js';
import { loadFastBackend, type FastBackend } from '../src/kernels/fast/index.js';
import { float16DecodeTable } from '../src/store/float16.js';
import { NEAR_DUPLICATE_DISTANCE, refineNearDuplicates, refinePairs, selfSimilarities } from '../src/selection/gram.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Random unit vectors over C at every pixel, float32. */
function unitStack(n: number, c: number, h: number, w: number, seed: number): FeatureStack {
  const next = rng(seed);
  const hw = h * w;
  const data = new Float32Array(n * c * hw);
  for (let i = 0; i < data.length; i++) data[i] = next() * 2 - 1;
  for (let k = 0; k < n; k++) {
    for (let p = 0; p < hw; p++) {
      let s = 0;
      for (let ch = 0; ch < c; ch++) s += data[(k * c + ch) * hw + p]! ** 2;
      for (let ch = 0; ch < c; ch++) data[(k * c + ch) * hw + p]! /= Math.sqrt(s);
    }
  }
  return { dtype: 'float32', shape: [n, c, h, w], data };
}

/** Random normal half values of magnitude 2^-7 .. 2^-4, either sign (raw bits). */
function halfStack(n: number, c: number, h: number, w: number, seed: number): FeatureStack {
  const next = rng(seed);
  const data = new Uint16Array(n * c * h * w);
  for (let i = 0; i < data.length; i++) {
    const sign = next() < 0.5 ? 0x8000 : 0;
    const exponent = 8 + Math.floor(next() * 4); // biased 8..11
    data[i] = sign | (exponent << 10) | Math.floor(next() * 1024);
  }
  return { dtype: 'float16', shape: [n, c, h, w], data };
}

/** float64 Gram and, per entry, sum_c |a_c b_c| (for the float32 error bound). */
function bruteGram(stack: FeatureStack, p0: number, p1: number): { gram: Float64Array; absSum: Float64Array } {
  const [n, c, h, w] = stack.shape;
  const hw = h * w;
  const table = float16DecodeTable();
  const value = (e: number): number => (stack.dtype === 'float16' ? table[stack.data[e]!]! : stack.data[e]!);
  const nn = n * n;
  const gram = new Float64Array((p1 - p0) * nn);
  const absSum = new Float64Array((p1 - p0) * nn);
  for (let p = p0; p < p1; p++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        let a = 0;
        for (let ch = 0; ch < c; ch++) {
          const prod = value((i * c + ch) * hw + p) * value((j * c + ch) * hw + p);
          s += prod;
          a += Math.abs(prod);
        }
        gram[(p - p0) * nn + i * n + j] = s;
        absSum[(p - p0) * nn + i * n + j] = a;
      }
    }
  }
  return { gram, absSum };
}

const cases = [
  { n: 262, c: 70, h: 3, w: 7, p0: 2, p1: 19, dtype: 'float32' }, // 3 panels (last: 6 images), 3 channel blocks (last: 6)
  { n: 142, c: 70, h: 4, w: 5, p0: 0, p1: 20, dtype: 'float16' },
  { n: 129, c: 32, h: 4, w: 9, p0: 3, p1: 36, dtype: 'float32' }, // a 1-image last panel, exactly one channel block
  { n: 128, c: 33, h: 2, w: 17, p0: 16, p1: 33, dtype: 'float16' }, // one full panel, a 1-channel last block
  { n: 37, c: 5, h: 5, w: 5, p0: 0, p1: 25, dtype: 'float32' }, // C below one block
  { n: 2, c: 260, h: 1, w: 40, p0: 7, p1: 40, dtype: 'float32' },
] as const;

const backendsPromise: Promise<FastBackend[]> = (async () => {
  const best = await loadFastBackend();
  return Promise.all(best.supportedVariants.map((variant) => loadFastBackend({ variant })));
})();

describe('native pixelGram across panel, channel-block and chunk boundaries', () => {
  cases.forEach((g, index) => {
    it(`N${g.n} C${g.c} ${g.h}x${g.w} [${g.p0}, ${g.p1}) ${g.dtype}`, async () => {
      const stack = g.dtype === 'float16' ? halfStack(g.n, g.c, g.h, g.w, 7 + index) : unitStack(g.n, g.c, g.h, g.w, 7 + index);
      const { gram: expected, absSum } = bruteGram(stack, g.p0, g.p1);
      const n = g.n;
      const nn = n * n;
      for (const backend of await backendsPromise) {
        // one spare pixel past p1: the kernel must not write beyond its range
        const out = new Float32Array((g.p1 - g.p0 + 1) * nn).fill(NaN);
        await backend.pixelGram(stack, g.p0, g.p1, out);
        let worst = 0;
        for (let e = 0; e < expected.length; e++) {
          const got = out[e]!;
          assert.ok(!Number.isNaN(got), `${backend.variant}: entry ${e} (pixel ${g.p0 + Math.floor(e / nn)}, i ${Math.floor((e % nn) / n)}, j ${e % n}) not written`);
          // float32 sequential summation: |error| <= C * 2^-24 * sum |products| (x2 for slack and input rounding)
          const bound = 2 * g.c * 2 ** -24 * absSum[e]! + 1e-30;
          const err = Math.abs(got - expected[e]!);
          assert.ok(err <= bound, `${backend.variant}: entry ${e} = ${got}, expected ${expected[e]} within ${bound}`);
          worst = Math.max(worst, err);
        }
        for (let q = 0; q < g.p1 - g.p0; q++) {
          for (let i = 0; i < n; i++) {
            for (let j = 0; j < i; j++) assert.equal(out[q * nn + i * n + j], out[q * nn + j * n + i], `${backend.variant}: not symmetric at pixel ${q}, (${i}, ${j})`);
          }
        }
        for (let e = expected.length; e < out.length; e++) assert.ok(Number.isNaN(out[e]!), `${backend.variant}: wrote past the range at ${e}`);
        assert.ok(worst < 1e-4, `${backend.variant}: worst error ${worst}`);
      }
    });
  });

  it('reads pixel p of the stack, not of the range (p0 offsets the source)', async () => {
    // image 0 is 1 at pixel 3 only, image 1 is 1 at pixel 4 only (channel 0)
    const data = new Float32Array(2 * 1 * 8);
    data[3] = 1;
    data[8 + 4] = 1;
    const stack: FeatureStack = { dtype: 'float32', shape: [2, 1, 1, 8], data };
    for (const backend of await backendsPromise) {
      const out = new Float32Array(2 * 4).fill(NaN);
      await backend.pixelGram(stack, 3, 5, out);
      assert.deepEqual(Array.from(out), [1, 0, 0, 0, 0, 0, 0, 1], backend.variant);
    }
  });
});

describe('float32 Gram refinement helpers (PTS)', () => {
  for (const dtype of ['float32', 'float16'] as const) {
    it(`selfSimilarities and refinePairs give refineNearDuplicates' values bit for bit (${dtype})`, async () => {
      const [n, c, h, w] = [9, 40, 3, 5];
      const base = dtype === 'float16' ? halfStack(n, c, h, w, 99) : unitStack(n, c, h, w, 99);
      // images 3 and 7 duplicate image 1, so there are near-zero distances to refine
      const data = base.data.slice();
      for (const copy of [3, 7]) data.copyWithin(copy * c * h * w, 1 * c * h * w, 2 * c * h * w);
      const stack = { ...base, data } as FeatureStack;
      const [p0, p1] = [2, 13];
      const self = new Float64Array((p1 - p0) * n).fill(NaN);
      selfSimilarities(stack, p0, p1, self);
      const gram = new Float32Array((p1 - p0) * n * n);
      const best = (await backendsPromise)[0]!;
      await best.pixelGram(stack, p0, p1, gram);
      for (let p = p0; p < p1; p++) {
        const q = p - p0;
        const fill = (): { sim: Float64Array; dist: Float64Array } => {
          const sim = new Float64Array(n * n);
          const dist = new Float64Array(n * n);
          for (let e = 0; e < n * n; e++) {
            sim[e] = gram[q * n * n + e]!;
            dist[e] = 1 - sim[e]!;
          }
          return { sim, dist };
        };
        const a = fill();
        refineNearDuplicates(a.sim, a.dist, stack, p);
        const pairs: number[] = [];
        for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (Math.abs(1 - gram[q * n * n + i * n + j]!) < NEAR_DUPLICATE_DISTANCE) pairs.push(i, j);
        // (the float16 data are not unit vectors: there the duplicates are not near 0 and only the diagonal is refined)
        if (dtype === 'float32') assert.ok(pairs.length >= 6, `pixel ${p}: expected the 3 duplicate pairs among the near ones, got ${pairs.length / 2}`);
        const b = fill();
        refinePairs(b.sim, b.dist, stack, p, Int32Array.from(pairs), pairs.length / 2, self, q * n);
        assert.deepEqual(b.sim, a.sim, `pixel ${p}: similarities`);
        assert.deepEqual(b.dist, a.dist, `pixel ${p}: distances`);
        for (let i = 0; i < n; i++) assert.equal(self[q * n + i], a.sim[i * n + i], `pixel ${p}: self-similarity of image ${i}`);
        // a duplicate pair gets exactly the self-similarity (the float32 Gram is off by ~1e-7)
        if (dtype === 'float32') assert.equal(b.sim[1 * n + 3], self[q * n + 1], `pixel ${p}: duplicate similarity`);
      }
    });
  }
});
