import { rankPixels, rankScores, walkThresholdsDescending, type RankedScores } from './ranked.js';
import { checkMapsMasks, checkScoresLabels } from './validate.js';

/**
 * The best F1 over all thresholds and where it is reached. The decision
 * rule is "anomalous iff score >= threshold"; `threshold` is one of the
 * input scores.
 */
export interface F1Max {
  readonly f1: number;
  readonly threshold: number;
  readonly precision: number;
  readonly recall: number;
}

export type F1MaxResult =
  | ({ readonly value: F1Max; readonly reason?: undefined })
  | { readonly value: null; readonly reason: string };

/**
 * Steps (shared by image and pixel level):
 * 1. Split by label, sort each part (radix sort for pixels).
 * 2. Walk distinct scores from high to low; at threshold t with TP
 *    positives and FP negatives scoring >= t, F1 = 2 TP / (TP + FP + P)
 *    (= 2 precision recall / (precision + recall), P = all positives).
 * 3. Keep the maximum; among equal F1 the highest threshold wins (the one
 *    met first), i.e. the fewest alarms.
 */
function f1MaxOfRanked(ranked: RankedScores, what: string): F1MaxResult {
  const nPos = ranked.positive.length;
  if (nPos === 0) {
    return { value: null, reason: `F1 is undefined without anomalous ${what}: no true positive is possible` };
  }
  let best: F1Max = { f1: -1, threshold: NaN, precision: 0, recall: 0 };
  walkThresholdsDescending(ranked, (t, tp, fp) => {
    const f1 = (2 * tp) / (tp + fp + nPos);
    if (f1 > best.f1) best = { f1, threshold: t, precision: tp / (tp + fp), recall: tp / nPos };
  });
  return { value: best };
}

/**
 * Image-level F1-max. Returns `{value: null, reason}` when no image is
 * anomalous (F1 is then 0 at every threshold: not informative). Throws
 * HetmmError('E_ARGUMENT') for empty or malformed input.
 */
export function f1Max(scores: ArrayLike<number>, labels: ArrayLike<0 | 1>): F1MaxResult {
  checkScoresLabels('f1Max', scores, labels);
  return f1MaxOfRanked(rankScores(scores, labels), 'images');
}

/** Pixel-level F1-max over all pixels of all maps (mask != 0 is anomalous). */
export function pixelF1Max(maps: readonly Float32Array[], masks: readonly Uint8Array[]): F1MaxResult {
  checkMapsMasks('pixelF1Max', maps, masks);
  return f1MaxOfRanked(rankPixels(maps, masks), 'pixels');
}
