import { labelComponents8 } from './connected-components.js';
import { radixSortFloat32 } from './radix-sort.js';

/**
 * The one sort behind every threshold-sweeping metric: positive and negative
 * scores are kept as two separately sorted typed arrays (ascending), and a
 * merge walk from the top visits every distinct score once as a threshold
 * ("anomalous iff score >= threshold"), with cumulative counts. Splitting by
 * label means no label has to travel through the sort, and only the (usually
 * few) defective pixels carry a payload (their region id, for AUPRO).
 */
export interface RankedScores {
  /** scores of positive (anomalous) samples, ascending */
  readonly positive: Float32Array | Float64Array;
  /** scores of negative (normal) samples, ascending */
  readonly negative: Float32Array | Float64Array;
  /** optional region id of each entry of `positive` (same order) */
  readonly positiveRegion?: Uint32Array;
}

/** Image-level scores -> ranked (float64: image scores are few and exact). */
export function rankScores(scores: ArrayLike<number>, labels: ArrayLike<number>): RankedScores {
  let nPos = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i] === 1) nPos++;
  const positive = new Float64Array(nPos);
  const negative = new Float64Array(scores.length - nPos);
  let ip = 0;
  let ineg = 0;
  for (let i = 0; i < scores.length; i++) {
    if (labels[i] === 1) positive[ip++] = scores[i]!;
    else negative[ineg++] = scores[i]!;
  }
  positive.sort();
  negative.sort();
  return { positive, negative };
}

/** All pixels of all maps -> ranked; a pixel is positive iff its mask byte is nonzero. */
export function rankPixels(maps: readonly Float32Array[], masks: readonly Uint8Array[]): RankedScores {
  let nPos = 0;
  let total = 0;
  for (let i = 0; i < maps.length; i++) {
    const mask = masks[i]!;
    total += mask.length;
    for (let p = 0; p < mask.length; p++) if (mask[p] !== 0) nPos++;
  }
  const positive = new Float32Array(nPos);
  const negative = new Float32Array(total - nPos);
  let ip = 0;
  let ineg = 0;
  for (let i = 0; i < maps.length; i++) {
    const map = maps[i]!;
    const mask = masks[i]!;
    for (let p = 0; p < map.length; p++) {
      if (mask[p] !== 0) positive[ip++] = map[p]!;
      else negative[ineg++] = map[p]!;
    }
  }
  radixSortFloat32(positive);
  radixSortFloat32(negative);
  return { positive, negative };
}

export interface RankedRegions extends RankedScores {
  readonly positiveRegion: Uint32Array;
  /** area (pixel count) of each ground-truth region, indexed by global region id */
  readonly regionArea: Uint32Array;
}

/**
 * Like rankPixels, plus: every mask is split into 8-connected regions, the
 * regions of all images numbered globally, and each defective pixel carries
 * its region id through the sort.
 */
export function rankPixelsWithRegions(
  maps: readonly Float32Array[],
  masks: readonly Uint8Array[],
  width: number,
): RankedRegions {
  const areas: number[] = [];
  const perImage: { labels: Int32Array; firstId: number }[] = [];
  let nPos = 0;
  let total = 0;
  for (let i = 0; i < masks.length; i++) {
    const mask = masks[i]!;
    const cc = labelComponents8(mask, width, mask.length / width);
    // global id = firstId + local label - 1
    perImage.push({ labels: cc.labels, firstId: areas.length });
    for (let k = 0; k < cc.count; k++) {
      areas.push(cc.areas[k]!);
      nPos += cc.areas[k]!;
    }
    total += mask.length;
  }
  const positive = new Float32Array(nPos);
  const positiveRegion = new Uint32Array(nPos);
  const negative = new Float32Array(total - nPos);
  let ip = 0;
  let ineg = 0;
  for (let i = 0; i < maps.length; i++) {
    const map = maps[i]!;
    const { labels, firstId } = perImage[i]!;
    for (let p = 0; p < map.length; p++) {
      const local = labels[p]!;
      if (local !== 0) {
        positive[ip] = map[p]!;
        positiveRegion[ip++] = firstId + local - 1;
      } else {
        negative[ineg++] = map[p]!;
      }
    }
    perImage[i] = { labels: new Int32Array(0), firstId }; // free the label image early
  }
  radixSortFloat32(positive, positiveRegion);
  radixSortFloat32(negative);
  return { positive, negative, positiveRegion, regionArea: Uint32Array.from(areas) };
}

/**
 * Visits each distinct score from the highest down, after counting every
 * sample with that score: `tp` positives and `fp` negatives have score >=
 * threshold; `weight` is the running sum of `regionWeight[region]` over
 * those positives (when given). Return false from `visit` to stop early.
 */
export function walkThresholdsDescending(
  ranked: RankedScores,
  visit: (threshold: number, tp: number, fp: number, weight: number) => boolean | void,
  regionWeight?: Float64Array,
): void {
  const pos = ranked.positive;
  const neg = ranked.negative;
  const region = ranked.positiveRegion;
  if (regionWeight !== undefined && region === undefined) {
    throw new RangeError('walkThresholdsDescending: regionWeight needs ranked.positiveRegion');
  }
  let i = pos.length - 1;
  let j = neg.length - 1;
  let tp = 0;
  let fp = 0;
  let weight = 0;
  while (i >= 0 || j >= 0) {
    const p = i >= 0 ? pos[i]! : -Infinity;
    const q = j >= 0 ? neg[j]! : -Infinity;
    const t = p > q ? p : q;
    if (regionWeight !== undefined && region !== undefined) {
      while (i >= 0 && pos[i] === t) {
        weight += regionWeight[region[i]!]!;
        i--;
        tp++;
      }
    } else {
      while (i >= 0 && pos[i] === t) {
        i--;
        tp++;
      }
    }
    while (j >= 0 && neg[j] === t) {
      j--;
      fp++;
    }
    if (visit(t, tp, fp, weight) === false) return;
  }
}
