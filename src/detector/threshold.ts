/**
 * The deployment threshold kept in the template store (meta.threshold), and
 * the heat-map colour range derived from the same calibration.
 */
import { normalOnlyThreshold } from '../eval/thresholds.js';
import type { StoreSnapshot } from '../store/index.js';
import { heldOutTemplateScores, leaveOneOutScores, type Calibration } from './calibrate.js';
import type { Detector, Prediction, ProgressCallback } from './detector.js';

export interface StoredThreshold {
  /** image score above which a part is a defect */
  readonly value: number;
  /** how it was chosen, in words */
  readonly method: string;
  /** the preset the scores were computed with: the threshold only holds for it */
  readonly preset: string;
  /** median normal pixel value: the colour scale's low end */
  readonly pixelMedian: number;
  /** the calibration scores it came from */
  readonly scores: number[];
}

export async function calibrateStore(
  detector: Detector,
  options: { samples?: number; onProgress?: ProgressCallback } = {},
): Promise<StoredThreshold> {
  const cal = await leaveOneOutScores(detector, options);
  return storeThreshold(detector, cal, 'leave-one-out template scores');
}

/**
 * Calibrates a PTS store (same rule as calibrateStore) from a sample of the
 * original templates it was compressed from, scored against it.
 */
export async function calibrateStoreFromTemplates(
  detector: Detector,
  source: StoreSnapshot,
  options: { samples?: number; onProgress?: ProgressCallback } = {},
): Promise<StoredThreshold> {
  const cal = await heldOutTemplateScores(detector, source, options);
  return storeThreshold(detector, cal, 'original template scores against the PTS sheets');
}

function storeThreshold(detector: Detector, cal: Calibration, what: string): StoredThreshold {
  // The 0.99 quantile of normal scores: about 1 false alarm in 100 good parts
  // (with few samples it sits at or near the highest one; docs/THRESHOLDS.md).
  const chosen = normalOnlyThreshold(cal.scores, { quantile: 0.99 });
  const threshold: StoredThreshold = {
    value: chosen.threshold,
    method: `0.99 quantile of ${cal.scores.length} ${what}`,
    preset: detector.preset.name,
    pixelMedian: cal.pixelMedian,
    scores: cal.scores,
  };
  detector.store.meta.threshold = threshold;
  return threshold;
}

/** The stored threshold, if it was computed with `presetName`. */
export function storedThreshold(meta: Record<string, unknown>, presetName: string): StoredThreshold | undefined {
  const t = meta.threshold as Partial<StoredThreshold> | undefined;
  if (t === undefined || typeof t.value !== 'number' || !Number.isFinite(t.value) || t.preset !== presetName) return undefined;
  return t as StoredThreshold;
}

/**
 * The colour scale of heat maps: from the median normal pixel to the
 * deployment threshold when the store is calibrated (red = over the
 * threshold), else the map's own min..max (then colours are not comparable
 * across images, and the caller says so).
 */
export function heatmapRange(prediction: Pick<Prediction, 'pixelMap'>, meta: Record<string, unknown>, presetName: string): [number, number] {
  const t = storedThreshold(meta, presetName);
  if (t !== undefined && t.value > t.pixelMedian) return [t.pixelMedian, t.value];
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of prediction.pixelMap) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}
