/**
 * Per-pixel similarity Gram matrices of a template stack: for every pixel p of
 * a range, G_p[i][j] = <x_i(p), x_j(p)> over the C channels of images i, j.
 *
 * Layout of `out` (shared with any fast kernel of the same signature): pixel
 * blocks of N*N, row-major, both triangles filled:
 *   out[(p - p0) * N * N + i * N + j],  p in [p0, p1).
 */
import type { FeatureStack } from '../kernels/contract.js';
import { HetmmError } from '../errors.js';

/** A Gram kernel writing float32 (e.g. the native fast kernel); fills `out` as documented above. */
export type Float32GramFunction = (stack: FeatureStack, p0: number, p1: number, out: Float32Array) => Promise<void> | void;
/** A Gram kernel writing float64 (the precision the OPTICS labels are pinned in). */
export type Float64GramFunction = (stack: FeatureStack, p0: number, p1: number, out: Float64Array) => Promise<void> | void;

let halfTable: Float64Array | undefined;

/** IEEE half bits -> value, for all 65536 patterns (built once, 512 KiB). */
export function halfToFloatTable(): Float64Array {
  if (halfTable) return halfTable;
  const t = new Float64Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24; // subnormal
    else if (exp === 31) t[h] = frac === 0 ? sign * Infinity : NaN;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  halfTable = t;
  return t;
}

/**
 * Plain TypeScript reference Gram. Vectorised over pixels: for each image
 * pair, the channel loop is outer and the pixel loop inner over contiguous
 * NCHW rows. Each G_p[i][j] is summed over c in ascending order in float64
 * (the same rounding as a sequential dot product, which the OPTICS parity
 * fixtures depend on); a Float32Array `out` receives it rounded once.
 */
export function pixelGramReference(
  stack: FeatureStack,
  p0: number,
  p1: number,
  out: Float32Array | Float64Array,
): void {
  const [n, c, h, w] = stack.shape;
  const hw = h * w;
  if (!Number.isInteger(p0) || !Number.isInteger(p1) || p0 < 0 || p1 > hw || p0 >= p1) {
    throw new HetmmError('E_ARGUMENT', `pixelGram: expected a pixel range 0 <= p0 < p1 <= ${hw}, got [${p0}, ${p1})`);
  }
  const count = p1 - p0;
  const nn = n * n;
  if (out.length < count * nn) {
    throw new HetmmError('E_ARGUMENT', `pixelGram: expected out of length >= ${count}*${n}*${n} = ${count * nn}, got ${out.length}`);
  }
  const data = stack.data;
  const table = stack.dtype === 'float16' ? halfToFloatTable() : undefined;
  const acc = new Float64Array(count);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      acc.fill(0);
      for (let ch = 0; ch < c; ch++) {
        const ri = (i * c + ch) * hw + p0;
        const rj = (j * c + ch) * hw + p0;
        if (table) {
          for (let q = 0; q < count; q++) acc[q] += table[data[ri + q]!]! * table[data[rj + q]!]!;
        } else {
          for (let q = 0; q < count; q++) acc[q] += data[ri + q]! * data[rj + q]!;
        }
      }
      for (let q = 0; q < count; q++) {
        const v = acc[q]!;
        out[q * nn + i * n + j] = v;
        out[q * nn + j * n + i] = v;
      }
    }
  }
}

/**
 * Distances below this (in absolute value) are recomputed in float64 by
 * {@link refineNearDuplicates}: a float32 Gram leaves ~1e-7 where float64
 * gives |d| < 5e-16, which OPTICS rounds to a signed zero; the sign decides
 * the xi steep-down test, so duplicates would change the labels.
 */
export const NEAR_DUPLICATE_DISTANCE = 1e-5;

/**
 * Recomputes at pixel p, as the reference does (float64, channels summed in
 * order), the similarity and distance 1 - <x_i, x_j> of every pair whose
 * distance is within NEAR_DUPLICATE_DISTANCE of zero, and the whole diagonal
 * (self-similarities decide the centre of two-member clusters). `similarity`
 * and `distance` are [n, n], row-major. With `selfSimilarity` (from
 * {@link selfSimilarities}, pixel p's n values at `selfOffset`) the diagonal
 * is taken from there: the same sums, computed for a whole block at once.
 */
export function refineNearDuplicates(
  similarity: Float64Array,
  distance: Float64Array,
  stack: FeatureStack,
  p: number,
  selfSimilarity?: Float64Array,
  selfOffset = 0,
): void {
  const n = stack.shape[0];
  for (let i = 0; i < n; i++) {
    setPair(similarity, distance, n, i, i, selfSimilarity ? selfSimilarity[selfOffset + i]! : dotAt(stack, p, i, i));
    for (let j = i + 1; j < n; j++) {
      if (Math.abs(distance[i * n + j]!) < NEAR_DUPLICATE_DISTANCE) setPair(similarity, distance, n, i, j, dotAt(stack, p, i, j));
    }
  }
}

/**
 * {@link refineNearDuplicates} for a known list of near-duplicate pairs:
 * `pairs[2k], pairs[2k + 1]` (i < j) for k < pairCount, found by the caller
 * while it filled `similarity` (PTS does it in its copy loop, saving a second
 * pass over the matrix). Same results; `distance` may be null when the
 * caller keeps only similarities (PTS: OPTICS forms 1 - similarity itself).
 */
export function refinePairs(
  similarity: Float64Array,
  distance: Float64Array | null,
  stack: FeatureStack,
  p: number,
  pairs: Int32Array,
  pairCount: number,
  selfSimilarity?: Float64Array,
  selfOffset = 0,
): void {
  const n = stack.shape[0];
  for (let i = 0; i < n; i++) {
    setPair(similarity, distance, n, i, i, selfSimilarity ? selfSimilarity[selfOffset + i]! : dotAt(stack, p, i, i));
  }
  for (let k = 0; k < pairCount; k++) {
    const i = pairs[2 * k]!;
    const j = pairs[2 * k + 1]!;
    setPair(similarity, distance, n, i, j, dotAt(stack, p, i, j));
  }
}

function setPair(similarity: Float64Array, distance: Float64Array | null, n: number, i: number, j: number, dot: number): void {
  similarity[i * n + j] = dot;
  similarity[j * n + i] = dot;
  if (distance === null) return;
  distance[i * n + j] = 1 - dot;
  distance[j * n + i] = 1 - dot;
}

/** <x_i(p), x_j(p)> in float64, channels summed in ascending order (the reference's rounding). */
function dotAt(stack: FeatureStack, p: number, i: number, j: number): number {
  const [, c, h, w] = stack.shape;
  const hw = h * w;
  const data = stack.data;
  const table = stack.dtype === 'float16' ? halfToFloatTable() : undefined;
  let dot = 0;
  for (let ch = 0; ch < c; ch++) {
    const a = data[(i * c + ch) * hw + p]!;
    const b = data[(j * c + ch) * hw + p]!;
    dot += table ? table[a]! * table[b]! : a * b;
  }
  return dot;
}

/**
 * Self-similarities <x_i(p), x_i(p)> for pixels [p0, p1), float64, channels
 * summed in ascending order exactly like {@link refineNearDuplicates}:
 * out[(p - p0) * N + i]. One pass over contiguous NCHW rows for the whole
 * range; per pixel, the same sums walk the stack with a stride of H*W
 * elements and miss the cache at every channel (measured: 5-14 ms per pixel
 * at N = 761, C = 256-1024, more than OPTICS itself).
 */
export function selfSimilarities(stack: FeatureStack, p0: number, p1: number, out: Float64Array): void {
  const [n, c, h, w] = stack.shape;
  const hw = h * w;
  const count = p1 - p0;
  if (!Number.isInteger(p0) || !Number.isInteger(p1) || p0 < 0 || p1 > hw || p0 > p1) {
    throw new HetmmError('E_ARGUMENT', `selfSimilarities: expected a pixel range 0 <= p0 <= p1 <= ${hw}, got [${p0}, ${p1})`);
  }
  if (out.length < count * n) {
    throw new HetmmError('E_ARGUMENT', `selfSimilarities: expected out of length >= ${count}*${n} = ${count * n}, got ${out.length}`);
  }
  const data = stack.data;
  const table = stack.dtype === 'float16' ? halfToFloatTable() : undefined;
  const acc = new Float64Array(count);
  for (let i = 0; i < n; i++) {
    acc.fill(0);
    for (let ch = 0; ch < c; ch++) {
      const r = (i * c + ch) * hw + p0;
      if (table) {
        for (let q = 0; q < count; q++) {
          const v = table[data[r + q]!]!;
          acc[q] += v * v;
        }
      } else {
        for (let q = 0; q < count; q++) {
          const v = data[r + q]!;
          acc[q] += v * v;
        }
      }
    }
    for (let q = 0; q < count; q++) out[q * n + i] = acc[q]!;
  }
}
