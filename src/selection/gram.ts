/**
 * Precision helpers around the per-pixel Gram matrices PTS clusters
 * (G_p[i][j] = <x_i(p), x_j(p)>; the kernel itself and its `out` layout:
 * ../kernels/reference/gram.ts). A float32 Gram (the fast
 * kernel) is exact enough except for near-duplicate pairs and the diagonal,
 * which these recompute the reference's way: float64, channels in order.
 */
import type { FeatureStack } from '../kernels/contract.js';
import { HetmmError } from '../errors.js';
import { float16DecodeTable } from '../store/float16.js';

/** A Gram kernel writing float32 (e.g. the native fast kernel); fills `out` like pixelGramReference. */
export type Float32GramFunction = (stack: FeatureStack, p0: number, p1: number, out: Float32Array) => Promise<void> | void;
/** A Gram kernel writing float64 (the precision the OPTICS labels are pinned in). */
export type Float64GramFunction = (stack: FeatureStack, p0: number, p1: number, out: Float64Array) => Promise<void> | void;

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
  const table = stack.dtype === 'float16' ? float16DecodeTable() : undefined;
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
 * elements and miss the cache at every channel, which cost more than OPTICS
 * itself (figures: docs/PERFORMANCE.md).
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
  const table = stack.dtype === 'float16' ? float16DecodeTable() : undefined;
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
