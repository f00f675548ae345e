/**
 * Leave-one-out calibration from the normal images alone: each sampled
 * template is scored against the store without itself, which is what a new
 * normal part from the same line looks like to the detector. The scores give
 * the deployment threshold (src/eval/thresholds.ts) and the heat-map colour
 * range, so heat maps of different images share one scale.
 */
import { HetmmError } from '../errors.js';
import { float16ArrayToFloat32 } from '../store/index.js';
import type { StoreSnapshot } from '../store/index.js';
import type { Detector, ProgressCallback } from './detector.js';

export interface Calibration {
  /** leave-one-out image scores of the sampled templates */
  readonly scores: number[];
  /** indices of the sampled templates */
  readonly indices: number[];
  /** median pixel value of their pixel maps: the colour scale's low end */
  readonly pixelMedian: number;
}

/** Evenly spaced sample of `count` indices out of n (all when n <= count). */
export function evenSample(n: number, count: number): number[] {
  if (count >= n) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: count }, (_, i) => Math.floor(((i + 0.5) * n) / count));
}

export async function leaveOneOutScores(
  detector: Detector,
  options: { samples?: number; onProgress?: ProgressCallback } = {},
): Promise<Calibration> {
  const snapshot = detector.store.snapshot();
  if (snapshot.count < 2) {
    throw new HetmmError('E_ARGUMENT', `leave-one-out calibration needs at least 2 templates, the store has ${snapshot.count}`);
  }
  return scoreTemplates(detector, snapshot, true, options);
}

/**
 * Calibration of a compressed (PTS) store: its sheets are not images, so
 * leave-one-out over them means nothing. Instead a sample of the original
 * store's templates (normal images) is scored against the detector's store
 * as it is. Caveat: a sampled template's own vectors may have been kept as
 * sheets at some pixels, where it then matches perfectly, so these scores
 * are somewhat optimistic (docs/PTS.md).
 */
export async function heldOutTemplateScores(
  detector: Detector,
  source: StoreSnapshot,
  options: { samples?: number; onProgress?: ProgressCallback } = {},
): Promise<Calibration> {
  if (source.count < 1) throw new HetmmError('E_ARGUMENT', 'calibration needs at least 1 original template, the source store is empty');
  return scoreTemplates(detector, source, false, options);
}

/** Scores an even sample of `source`'s templates against the detector's store (leaving each out of it when `leaveOut`). */
async function scoreTemplates(
  detector: Detector,
  source: StoreSnapshot,
  leaveOut: boolean,
  options: { samples?: number; onProgress?: ProgressCallback },
): Promise<Calibration> {
  const indices = evenSample(source.count, options.samples ?? 16);
  const scores: number[] = [];
  const medians: number[] = [];
  for (const [k, i] of indices.entries()) {
    const features = source.layers.map((stack) => {
      const [, c, h, w] = stack.shape;
      const per = c * h * w;
      const slice = stack.data.subarray(i * per, (i + 1) * per);
      return slice instanceof Float32Array ? slice : float16ArrayToFloat32(slice);
    });
    const { results } = await detector.matchFeatures(features, leaveOut ? { exclude: i } : {});
    const scored = detector.scoreResults(results);
    scores.push(scored.score);
    medians.push(median(scored.pixelMap));
    options.onProgress?.({ done: k + 1, total: indices.length, file: source.files[i] ?? String(i) });
  }
  return { scores, indices, pixelMedian: median(Float32Array.from(medians)) };
}

function median(values: Float32Array): number {
  const sorted = Float32Array.from(values).sort();
  const m = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
}
