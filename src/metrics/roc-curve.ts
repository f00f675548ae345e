import { rankScores, walkThresholdsDescending } from './ranked.js';
import { checkScoresLabels } from './validate.js';

/** The ROC curve's vertices, from (0, 0) to (1, 1), false-positive rate ascending. */
export interface RocCurve {
  /** false alarms / normal images at each vertex */
  readonly falsePositiveRate: number[];
  /** detected defects / defective images at each vertex */
  readonly truePositiveRate: number[];
}

/**
 * The image-level ROC curve: one vertex per distinct score (walking the
 * thresholds from the highest score down, ties moving both rates at once),
 * plus the origin. Null without normal or without defective scores (a rate
 * would divide by zero). Throws HetmmError('E_ARGUMENT') for malformed input.
 */
export function rocCurve(scores: ArrayLike<number>, labels: ArrayLike<0 | 1>): RocCurve | null {
  checkScoresLabels('rocCurve', scores, labels);
  const ranked = rankScores(scores, labels);
  const nPos = ranked.positive.length;
  const nNeg = ranked.negative.length;
  if (nPos === 0 || nNeg === 0) return null;
  const falsePositiveRate = [0];
  const truePositiveRate = [0];
  walkThresholdsDescending(ranked, (_t, tp, fp) => {
    falsePositiveRate.push(fp / nNeg);
    truePositiveRate.push(tp / nPos);
  });
  return { falsePositiveRate, truePositiveRate };
}
