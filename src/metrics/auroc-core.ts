import { walkThresholdsDescending, type RankedScores } from './ranked.js';
import { defined, undefinedMetric, type MetricResult } from './result.js';

/**
 * ROC AUC of ranked scores: the trapezoid area under the ROC curve through
 * every distinct threshold, which equals the Mann-Whitney U statistic with
 * half credit for tied (positive, negative) pairs, i.e. scikit-learn's
 * roc_auc_score. Twice the area is accumulated in integers
 * (dFP * (TP_before + TP_after)), exact while 2 * P * N < 2^53.
 */
export function aurocOfRanked(ranked: RankedScores, what: string): MetricResult {
  const nPos = ranked.positive.length;
  const nNeg = ranked.negative.length;
  if (nPos === 0 || nNeg === 0) {
    return undefinedMetric(
      `ROC AUC is undefined with only one class: ${nPos} anomalous and ${nNeg} normal ${what}`,
    );
  }
  let twiceArea = 0;
  let prevTp = 0;
  let prevFp = 0;
  walkThresholdsDescending(ranked, (_t, tp, fp) => {
    twiceArea += (fp - prevFp) * (tp + prevTp);
    prevTp = tp;
    prevFp = fp;
  });
  return defined(twiceArea / 2 / nPos / nNeg);
}
