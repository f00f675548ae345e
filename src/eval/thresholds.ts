/**
 * Decision thresholds for deployment. One rule everywhere in hetmm:
 * an image (or pixel) is anomalous iff score > threshold.
 *
 * Two ways to choose the threshold, both pure functions:
 * - `f1OptimalThreshold`: from labelled scores (normal and defective
 *   validation images), the threshold of best F1.
 * - `normalOnlyThreshold`: from scores of defect-free images only (held-out
 *   normals, or leave-one-out scores of the templates), a high quantile of
 *   the normal score distribution. This is the usual industrial situation:
 *   defects are rare and unknown in advance, and the operator chooses an
 *   acceptable false-alarm rate instead.
 */
import { HetmmError } from '../errors.js';
import { f1Max } from './metrics/f1-max.js';
import { checkScoresLabels } from './metrics/validate.js';

/** The decision rule every hetmm threshold is chosen for. */
export function isAnomalous(score: number, threshold: number): boolean {
  return score > threshold;
}

/** The largest float64 below x (x finite). */
function nextDown(x: number): number {
  if (x === 0) return -Number.MIN_VALUE;
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, x);
  const bits = buf.getBigUint64(0);
  buf.setBigUint64(0, x > 0 ? bits - 1n : bits + 1n);
  return buf.getFloat64(0);
}

export interface F1Threshold {
  /** use with `score > threshold` */
  readonly threshold: number;
  readonly f1: number;
  readonly precision: number;
  readonly recall: number;
}

/**
 * The F1-optimal threshold of labelled scores (1 = defective).
 *
 * Steps: f1Max finds the best F1 over all cut points and the lowest score
 * s* still flagged; any threshold in [next lower score, s*) classifies the
 * given data identically under `score > threshold`; the midpoint is
 * returned, leaving equal room on both sides for unseen images (below the
 * lowest score: just under s*). Among equal F1 the highest cut wins
 * (fewest false alarms).
 *
 * Throws HetmmError('E_ARGUMENT') for malformed input or when no score is
 * labelled defective (use normalOnlyThreshold then).
 */
export function f1OptimalThreshold(scores: ArrayLike<number>, labels: ArrayLike<0 | 1>): F1Threshold {
  checkScoresLabels('f1OptimalThreshold', scores, labels);
  const best = f1Max(scores, labels);
  if (best.value === null) {
    throw new HetmmError(
      'E_ARGUMENT',
      `f1OptimalThreshold: expected at least one defective (label 1) score, but all ${scores.length} are normal; use normalOnlyThreshold`,
    );
  }
  const cut = best.value.threshold;
  let below = -Infinity;
  for (let i = 0; i < scores.length; i++) if (scores[i]! < cut && scores[i]! > below) below = scores[i]!;
  const threshold = below === -Infinity ? nextDown(cut) : below + (cut - below) / 2;
  return { threshold, f1: best.value.f1, precision: best.value.precision, recall: best.value.recall };
}

export interface NormalThresholdOptions {
  /** quantile of the normal scores, in (0, 1]; default 0.99 (1 = the maximum) */
  readonly quantile?: number;
  /**
   * extra safety margin, as a multiple of the spread (quantile - median) of
   * the normal scores, so it is independent of the score scale; default 0
   */
  readonly margin?: number;
}

export interface NormalThreshold {
  /** use with `score > threshold` */
  readonly threshold: number;
  readonly quantile: number;
  readonly margin: number;
  /** number of normal scores it was estimated from */
  readonly samples: number;
  /** share of the given normal scores above the threshold */
  readonly empiricalFalseAlarmRate: number;
  /**
   * distribution-free estimate of the false-alarm rate on new normal
   * images: (n - k + 1) / (n + 1) with k = #scores <= threshold, i.e. the
   * expected exceedance of the next order statistic above the threshold
   * (an upper estimate; at the maximum it is 1 / (n + 1)).
   */
  readonly expectedFalseAlarmRate: number;
  /** set when the sample is too small for the requested quantile */
  readonly warning?: string;
}

/**
 * A threshold from scores of defect-free images only.
 *
 * Choice: the 0.99 quantile (numpy's default linear interpolation between
 * order statistics), i.e. about 1% of normal images flagged, a common
 * operating point for inspection (a false alarm costs a second look; a
 * miss costs a defective part). With fewer than 1 / (1 - q) scores (100
 * for 0.99) the quantile is interpolated between the two largest scores,
 * so the false-alarm rate cannot be lower than about 1 / (n + 1): the
 * result carries a warning and the distribution-free estimate.
 *
 * Leave-one-out scores of the templates (each template matched against
 * the others) come from N - 1 templates instead of N, so they run slightly
 * higher than a new normal image's score: the threshold errs towards fewer
 * false alarms.
 *
 * Throws HetmmError('E_ARGUMENT') for no scores, non-finite scores, a
 * quantile outside (0, 1] or a negative margin.
 */
export function normalOnlyThreshold(normalScores: ArrayLike<number>, options: NormalThresholdOptions = {}): NormalThreshold {
  const quantile = options.quantile ?? 0.99;
  const margin = options.margin ?? 0;
  if (typeof quantile !== 'number' || !(quantile > 0 && quantile <= 1)) {
    throw new HetmmError('E_ARGUMENT', `normalOnlyThreshold: expected quantile in (0, 1], but received ${String(quantile)}`);
  }
  if (typeof margin !== 'number' || !(margin >= 0 && Number.isFinite(margin))) {
    throw new HetmmError('E_ARGUMENT', `normalOnlyThreshold: expected a finite margin >= 0, but received ${String(margin)}`);
  }
  const n = normalScores.length;
  if (n === 0) throw new HetmmError('E_ARGUMENT', 'normalOnlyThreshold: expected at least one normal score, but received none');
  const sorted = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = normalScores[i];
    if (typeof s !== 'number' || !Number.isFinite(s)) {
      throw new HetmmError('E_ARGUMENT', `normalOnlyThreshold: expected finite scores, but normalScores[${i}] is ${String(s)}`);
    }
    sorted[i] = s;
  }
  sorted.sort();
  const at = (q: number): number => {
    const h = (n - 1) * q;
    const lo = Math.floor(h);
    return lo + 1 < n ? sorted[lo]! + (h - lo) * (sorted[lo + 1]! - sorted[lo]!) : sorted[lo]!;
  };
  const q = at(quantile);
  const threshold = q + margin * (q - at(0.5));
  let notAbove = 0;
  while (notAbove < n && sorted[notAbove]! <= threshold) notAbove++;
  const result: NormalThreshold = {
    threshold,
    quantile,
    margin,
    samples: n,
    empiricalFalseAlarmRate: (n - notAbove) / n,
    expectedFalseAlarmRate: (n - notAbove + 1) / (n + 1),
  };
  // samples needed so the quantile falls below the largest score (1e-9 absorbs 1 / (1 - 0.9) = 10.000000000000002)
  const needed = quantile < 1 ? Math.ceil(1 / (1 - quantile) - 1e-9) : 0;
  if (n < needed) {
    return {
      ...result,
      warning:
        `only ${n} normal scores for the ${quantile} quantile (needs ${needed}): ` +
        `the threshold sits near the maximum and the false-alarm rate is about ${result.expectedFalseAlarmRate.toFixed(3)}, not ${(1 - quantile).toFixed(3)}`,
    };
  }
  return result;
}

export interface OperatingPoint {
  /** TP / (TP + FP); null when no image is flagged */
  readonly precision: number | null;
  /** TP / positives; null when there is no positive */
  readonly recall: number | null;
  /** FP / negatives; null when there is no negative */
  readonly falsePositiveRate: number | null;
  readonly truePositives: number;
  readonly falsePositives: number;
}

/**
 * How a threshold does on labelled scores (1 = defective) under the rule
 * `score > threshold` (isAnomalous). Rates that would divide by zero are
 * null, never NaN. Throws HetmmError('E_ARGUMENT') for malformed input or a
 * non-finite threshold.
 */
export function operatingPoint(scores: ArrayLike<number>, labels: ArrayLike<0 | 1>, threshold: number): OperatingPoint {
  checkScoresLabels('operatingPoint', scores, labels);
  if (typeof threshold !== 'number' || !Number.isFinite(threshold)) {
    throw new HetmmError('E_ARGUMENT', `operatingPoint: expected a finite threshold, but received ${String(threshold)}`);
  }
  let tp = 0;
  let fp = 0;
  let positives = 0;
  for (let i = 0; i < scores.length; i++) {
    const flagged = isAnomalous(scores[i]!, threshold);
    if (labels[i] === 1) {
      positives++;
      if (flagged) tp++;
    } else if (flagged) fp++;
  }
  const negatives = scores.length - positives;
  return {
    precision: tp + fp > 0 ? tp / (tp + fp) : null,
    recall: positives > 0 ? tp / positives : null,
    falsePositiveRate: negatives > 0 ? fp / negatives : null,
    truePositives: tp,
    falsePositives: fp,
  };
}
