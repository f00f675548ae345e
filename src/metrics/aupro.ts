import { rankPixelsWithRegions, walkThresholdsDescending } from './ranked.js';
import { defined, undefinedMetric, type MetricResult } from './result.js';
import { checkFprLimit, checkMapsMasks } from './validate.js';

export interface AuproOptions {
  /** row length shared by all maps and masks (heights may differ) */
  readonly width: number;
  /** integrate the PRO curve over FPR in [0, fprLimit]; default 0.3 */
  readonly fprLimit?: number;
}

/**
 * AUPRO as defined by MVTec AD's evaluation code (also anomalib's): the
 * normalised area under the per-region-overlap curve up to a false positive
 * rate limit. Returned as a fraction in [0, 1].
 *
 * Steps:
 * 1. Split each ground-truth mask into 8-connected regions; R = number of
 *    regions over all images, A_r = area of region r. Normal pixels are all
 *    mask-0 pixels of all images (N of them).
 * 2. Sort all pixels by score, descending (one radix sort of the normal
 *    pixels, one of the defective pixels carrying their region id).
 * 3. Every distinct score t is a threshold (pixel positive iff score >= t):
 *    FPR(t) = #(normal pixels >= t) / N;
 *    PRO(t) = (1/R) * sum_r #(pixels of r >= t) / A_r, kept incrementally
 *    as a running sum of 1/A_r over the defective pixels passed.
 *    Both are clipped to [0, 1].
 * 4. The curve runs (0,0), the points in threshold order, (1,1). Its
 *    trapezoid area over FPR in [0, limit] is taken, with the last segment
 *    cut at FPR = limit by linear interpolation, and divided by the limit.
 *
 * Returns `{value: null, reason}` when no pixel is defective (no region) or
 * none is normal. Throws HetmmError('E_ARGUMENT') for malformed input or a
 * limit outside (0, 1].
 */
export function aupro(maps: readonly Float32Array[], masks: readonly Uint8Array[], options: AuproOptions): MetricResult {
  const fprLimit = options.fprLimit ?? 0.3;
  checkFprLimit('aupro', fprLimit);
  checkMapsMasks('aupro', maps, masks, options.width);
  const ranked = rankPixelsWithRegions(maps, masks, options.width);
  const nRegions = ranked.regionArea.length;
  const nNormal = ranked.negative.length;
  if (nRegions === 0) return undefinedMetric('AUPRO is undefined without defective pixels: no ground-truth region');
  if (nNormal === 0) return undefinedMetric('AUPRO is undefined without normal pixels: every pixel is defective');
  const regionWeight = new Float64Array(nRegions);
  for (let r = 0; r < nRegions; r++) regionWeight[r] = 1 / ranked.regionArea[r]!;

  let area = 0;
  let prevFpr = 0;
  let prevPro = 0;
  let crossed = false;
  // Adds the segment from the previous point to (fpr, pro); returns false
  // once the limit is crossed (the segment is then cut at the limit).
  const addPoint = (fpr: number, pro: number): boolean => {
    if (fpr <= fprLimit) {
      area += 0.5 * (pro + prevPro) * (fpr - prevFpr);
      prevFpr = fpr;
      prevPro = pro;
      return true;
    }
    const proAtLimit = prevPro + ((pro - prevPro) * (fprLimit - prevFpr)) / (fpr - prevFpr);
    area += 0.5 * (proAtLimit + prevPro) * (fprLimit - prevFpr);
    crossed = true;
    return false;
  };
  walkThresholdsDescending(
    ranked,
    (_t, _tp, fp, weight) => {
      const fpr = Math.min(1, fp / nNormal);
      const pro = Math.min(1, weight / nRegions);
      return addPoint(fpr, pro);
    },
    regionWeight,
  );
  if (!crossed) addPoint(1, 1); // only reached when fprLimit == 1
  return defined(area / fprLimit);
}
