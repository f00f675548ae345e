/** Seeded random test data, so failures reproduce (shared by tests and benches). */

/** mulberry32: a small seeded PRNG returning numbers in [0, 1) (the one synthetic defects use). */
import { makeRng as rng } from '../../src/fit/synthetic.js';

export { rng };

/**
 * [M, C, H, W] random signed values, each pixel vector L2-normalised over C.
 * `random` is a seed, or a generator shared with other draws (successive
 * calls then give different maps).
 */
export function randomUnitMaps(m: number, c: number, h: number, w: number, random: number | (() => number)): Float32Array {
  const next = typeof random === 'number' ? rng(random) : random;
  const data = new Float32Array(m * c * h * w);
  for (let i = 0; i < data.length; i++) data[i] = next() * 2 - 1;
  const hw = h * w;
  for (let k = 0; k < m; k++) {
    for (let p = 0; p < hw; p++) {
      let s = 0;
      for (let ch = 0; ch < c; ch++) s += data[(k * c + ch) * hw + p]! ** 2;
      const inv = 1 / Math.sqrt(s);
      for (let ch = 0; ch < c; ch++) data[(k * c + ch) * hw + p]! *= inv;
    }
  }
  return data;
}
