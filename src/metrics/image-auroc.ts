import { aurocOfRanked } from './auroc-core.js';
import { rankScores } from './ranked.js';
import type { MetricResult } from './result.js';
import { checkScoresLabels } from './validate.js';

/**
 * Image-level ROC AUC, exactly as scikit-learn's roc_auc_score.
 *
 * Steps:
 * 1. Split the scores by label (1 = anomalous) and sort each part.
 * 2. Walk the distinct scores from high to low as thresholds (anomalous iff
 *    score >= threshold), keeping cumulative true/false positive counts.
 * 3. Sum the trapezoids between consecutive (FPR, TPR) points, from (0, 0)
 *    to (1, 1). Tied scores form one point, so a tied
 *    (anomalous, normal) pair counts one half (Mann-Whitney).
 *
 * Returns `{value: null, reason}` when only one class is present (what
 * scikit-learn refuses to compute). Constant scores give 0.5.
 * Throws HetmmError('E_ARGUMENT') for empty input, mismatched lengths,
 * non-finite scores or labels other than 0/1.
 */
export function imageAuroc(scores: ArrayLike<number>, labels: ArrayLike<0 | 1>): MetricResult {
  checkScoresLabels('imageAuroc', scores, labels);
  return aurocOfRanked(rankScores(scores, labels), 'images');
}
