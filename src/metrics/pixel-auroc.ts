import { aurocOfRanked } from './auroc-core.js';
import { rankPixels } from './ranked.js';
import type { MetricResult } from './result.js';
import { checkMapsMasks } from './validate.js';

/**
 * Pixel-level ROC AUC over all pixels of all images (one pooled ranking, as
 * MVTec AD, anomalib and HETMM report it), equal to scikit-learn's
 * roc_auc_score(masks.ravel(), maps.ravel()).
 *
 * Steps:
 * 1. Copy the pixel scores into two Float32Arrays, defective (mask != 0)
 *    and normal, and radix-sort each: O(n), about 8 bytes of extra memory
 *    per pixel, no per-pixel objects.
 * 2. Merge-walk both from the top; every distinct score is a threshold.
 * 3. Trapezoid area under the ROC curve (ties count one half), accumulated
 *    in integers.
 *
 * Returns `{value: null, reason}` when there are no defective pixels or no
 * normal pixels. Throws HetmmError('E_ARGUMENT') for empty input, a map and
 * mask of different sizes, or non-finite map values.
 */
export function pixelAuroc(maps: readonly Float32Array[], masks: readonly Uint8Array[]): MetricResult {
  checkMapsMasks('pixelAuroc', maps, masks);
  return aurocOfRanked(rankPixels(maps, masks), 'pixels');
}
