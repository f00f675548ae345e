/**
 * Decision thresholds for deployment. One rule everywhere in hetmm:
 * an image (or pixel) is anomalous iff score > threshold.
 *
 * Two ways to choose the threshold, both pure functions:
 * - `f1OptimalThreshold`: from labelled scores (normal and defective
 *   validation images), the threshold of best F1.
 * - `normalOnlyThreshold` (src/detector/threshold.ts, re-exported): from
 *   scores of defect-free images only, the order statistic of a stated
 *   false-alarm rate. This is the usual industrial situation: defects are
 *   rare and unknown in advance, and the operator chooses an acceptable
 *   false-alarm rate instead.
 */
import { HetmmError } from '../errors.js';
import { f1Max } from '../metrics/f1-max.js';
import { checkScoresLabels } from '../metrics/validate.js';
import { isAnomalous } from '../detector/threshold.js';

// Normal-only thresholds are chosen at fit, in the detector layer; re-exported here next to the labelled ones.
export {
  clopperPearsonUpper,
  isAnomalous,
  normalOnlyThreshold,
  type NormalThreshold,
  type NormalThresholdOptions,
} from '../detector/threshold.js';

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
