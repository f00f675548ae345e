import { HetmmError } from '../errors.js';
import { rankScores } from './ranked.js';
import { checkScoresLabels } from './validate.js';

/** The operating point of one stated false-alarm rate (rule: anomalous iff score > threshold). */
export interface RecallAtRate {
  /** the stated false-alarm rate, as given */
  readonly rate: number;
  /** the lowest threshold at which at most `allowedFalseAlarms` normal images score above it */
  readonly threshold: number;
  /** defective images scoring above the threshold / defective images; null without defective images */
  readonly recall: number | null;
  /** the false-alarm rate actually reached: falseAlarms / normal images (<= rate; lower under ties) */
  readonly falseAlarmRate: number;
  /** normal images scoring above the threshold */
  readonly falseAlarms: number;
  /** floor(rate x normal images): 0 when there are fewer than 1 / rate normal images */
  readonly allowedFalseAlarms: number;
}

export type RecallAtRatesResult =
  | { readonly value: readonly RecallAtRate[]; readonly reason?: undefined }
  | { readonly value: null; readonly reason: string };

/**
 * Recall at stated false-alarm rates, measured on labelled scores
 * (1 = defective, 0 = normal) under the rule "anomalous iff score >
 * threshold" (as isAnomalous and the deployment threshold).
 *
 * Algorithm, for each rate r in [0, 1) with N normal scores sorted
 * descending g[0] >= g[1] >= ... >= g[N-1]:
 * 1. k = floor(r N) false alarms are allowed (a 1e-9 slack absorbs binary
 *    rounding such as 0.29 x 100 = 28.999...). With N < 1/r, k = 0: no
 *    false alarm at all, the threshold is the highest normal score.
 * 2. threshold = g[k]. Exactly the normals strictly above g[k] are flagged,
 *    at most k of them; any lower threshold flags g[0..k], k + 1 normals.
 *    So g[k] is the lowest admissible threshold: the highest recall.
 * 3. Ties: normals tied with g[k] are not flagged, so the achieved rate
 *    (falseAlarms / N) can be below r; it is reported, never assumed.
 *    A defective score equal to the threshold is not flagged either.
 * Cost: one sort of each label's scores, then a binary search per rate.
 *
 * Returns `{value: null, reason}` without normal scores (no false-alarm
 * rate is measurable); recall is null when there is no defective score.
 * Throws HetmmError('E_ARGUMENT') for malformed scores / labels or a rate
 * outside [0, 1).
 */
export function recallAtFalseAlarmRate(
  scores: ArrayLike<number>,
  labels: ArrayLike<0 | 1>,
  rates: readonly number[],
): RecallAtRatesResult {
  checkScoresLabels('recallAtFalseAlarmRate', scores, labels);
  for (const r of rates) {
    if (typeof r !== 'number' || !(r >= 0 && r < 1)) {
      throw new HetmmError('E_ARGUMENT', `recallAtFalseAlarmRate: expected rates in [0, 1), but received ${String(r)}`);
    }
  }
  const { positive, negative } = rankScores(scores, labels); // both ascending
  const n = negative.length;
  if (n === 0) return { value: null, reason: 'no normal test image: a false-alarm rate needs normal examples' };
  /** how many of the ascending `sorted` are > t */
  const countAbove = (sorted: Float64Array | Float32Array, t: number): number => {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid]! > t) hi = mid;
      else lo = mid + 1;
    }
    return sorted.length - lo;
  };
  const value = rates.map((rate): RecallAtRate => {
    const allowed = Math.min(n - 1, Math.floor(rate * n + 1e-9));
    const threshold = negative[n - 1 - allowed]!; // g[k] of the descending order
    const falseAlarms = countAbove(negative, threshold);
    return {
      rate,
      threshold,
      recall: positive.length > 0 ? countAbove(positive, threshold) / positive.length : null,
      falseAlarmRate: falseAlarms / n,
      falseAlarms,
      allowedFalseAlarms: allowed,
    };
  });
  return { value };
}
