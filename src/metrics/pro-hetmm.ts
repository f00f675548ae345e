import { HetmmError } from '../errors.js';
import { labelComponents8 } from './connected-components.js';
import { defined, undefinedMetric, type MetricResult } from './result.js';
import { checkFprLimit, checkMapsMasks } from './validate.js';

export interface ProHetmmOptions {
  /** row length shared by all maps and masks (heights may differ) */
  readonly width: number;
  /** number of thresholds, linspace(min, max, steps); default 300 */
  readonly steps?: number;
  /** keep the curve points with FPR <= fprLimit; default 0.3 */
  readonly fprLimit?: number;
}

/**
 * Region-overlap epsilon of HETMM's evaluation: PRO of a region is
 * (region pixels above threshold) / (area + 1e-5).
 */
const AREA_EPS = 1e-5;
/** Epsilon of HETMM's min-max rescaling of the kept FPRs and PROs. */
const RESCALE_EPS = 1e-5;

/**
 * numpy.linspace(start, stop, num) bit for bit: start + j * step with
 * step = (stop - start) / (num - 1), and the last value set to stop.
 */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const step = (stop - start) / (num - 1);
  for (let j = 0; j < num; j++) out[j] = step === 0 ? start : j * step + start;
  out[num - 1] = stop;
  return out;
}

/**
 * HETMM's own PRO score (the paper's evaluation), in percent.
 *
 * Steps:
 * 1. thresholds t_0 < ... < t_{S-1} = linspace(min, max, S) over all map
 *    values of all images.
 * 2. At each t_j a pixel is positive iff map > t_j (strict);
 *    FPR_j = #(normal pixels > t_j) / #normal pixels,
 *    PRO_j = mean over all 8-connected ground-truth regions r of all images
 *            of #(pixels of r > t_j) / (A_r + 1e-5).
 *    Computed in one pass: each pixel falls in bin c = #{j : t_j < value}
 *    (it is above exactly t_0..t_{c-1}); normal pixels add 1 to a count
 *    histogram, defective pixels add 1 / (A_r + 1e-5) to a weight
 *    histogram; suffix sums give every FPR_j and PRO_j. O(pixels + S)
 *    time, O(S) memory besides the region labels of one image.
 * 3. Keep the points with FPR_j <= fprLimit (a contiguous run of the
 *    highest thresholds, since FPR falls as t rises).
 * 4. Rescale the kept FPRs and PROs separately with
 *    (x - min) / (max - min + 1e-5).
 * 5. Trapezoid area of PRO over FPR through the kept points in threshold
 *    order (FPR non-increasing, so the absolute value of np.trapz, which
 *    is what sklearn.metrics.auc returns), times 100.
 *
 * Unlike `aupro` this is not normalised by the limit and its rescaling
 * makes it depend only on the curve's shape, which is why it reads higher.
 * Constant maps give 0 (every threshold yields FPR 0 and PRO 0), as
 * HETMM's code does. Returns `{value: null, reason}` without defective or
 * without normal pixels. Throws HetmmError('E_ARGUMENT') for malformed input.
 */
export function proHetmm(maps: readonly Float32Array[], masks: readonly Uint8Array[], options: ProHetmmOptions): MetricResult {
  const steps = options.steps ?? 300;
  const fprLimit = options.fprLimit ?? 0.3;
  if (!Number.isInteger(steps) || steps < 2) {
    throw new HetmmError('E_ARGUMENT', `proHetmm: expected an integer steps >= 2, but received ${String(steps)}`);
  }
  checkFprLimit('proHetmm', fprLimit);
  const width = options.width;
  checkMapsMasks('proHetmm', maps, masks, width);

  let min = Infinity;
  let max = -Infinity;
  for (const map of maps) {
    for (let p = 0; p < map.length; p++) {
      const v = map[p]!;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  const thresholds = linspace(min, max, steps);
  const step = (max - min) / (steps - 1);
  // bin c in 0..steps: the pixel is above thresholds 0..c-1
  const normalHist = new Float64Array(steps + 1);
  const regionWeightHist = new Float64Array(steps + 1);
  let nNormal = 0;
  let nRegions = 0;

  const binOf = (v: number): number => {
    if (step === 0) return 0; // constant maps: v > t never holds
    // a guess from the arithmetic, then exact correction against the
    // linspace values so rounding can never misplace a pixel
    let c = Math.ceil((v - min) / step);
    if (c < 0) c = 0;
    else if (c > steps) c = steps;
    while (c < steps && thresholds[c]! < v) c++;
    while (c > 0 && thresholds[c - 1]! >= v) c--;
    return c;
  };

  for (let i = 0; i < maps.length; i++) {
    const map = maps[i]!;
    const mask = masks[i]!;
    const cc = labelComponents8(mask, width, mask.length / width);
    const weightOfLabel = new Float64Array(cc.count + 1);
    for (let k = 1; k <= cc.count; k++) weightOfLabel[k] = 1 / (cc.areas[k - 1]! + AREA_EPS);
    nRegions += cc.count;
    const labels = cc.labels;
    for (let p = 0; p < map.length; p++) {
      const c = binOf(map[p]!);
      const label = labels[p]!;
      if (label === 0) {
        normalHist[c]!++;
        nNormal++;
      } else {
        regionWeightHist[c]! += weightOfLabel[label]!;
      }
    }
  }
  if (nRegions === 0) return undefinedMetric('PRO is undefined without defective pixels: no ground-truth region');
  if (nNormal === 0) return undefinedMetric('PRO is undefined without normal pixels: every pixel is defective');

  // Suffix sums from the top threshold down: above(t_j) = sum_{c > j} hist[c].
  const fpr = new Float64Array(steps);
  const pro = new Float64Array(steps);
  let normalAbove = 0;
  let weightAbove = 0;
  for (let j = steps - 1; j >= 0; j--) {
    normalAbove += normalHist[j + 1]!;
    weightAbove += regionWeightHist[j + 1]!;
    fpr[j] = normalAbove / nNormal;
    pro[j] = weightAbove / nRegions;
  }
  // FPR is non-increasing in j: the kept points are j = first..steps-1.
  let first = steps - 1;
  while (first > 0 && fpr[first - 1]! <= fprLimit) first--;
  if (steps - first < 2) {
    return undefinedMetric(`PRO curve has fewer than 2 points with FPR <= ${fprLimit}`);
  }
  let fMin = Infinity;
  let fMax = -Infinity;
  let pMin = Infinity;
  let pMax = -Infinity;
  for (let j = first; j < steps; j++) {
    fMin = Math.min(fMin, fpr[j]!);
    fMax = Math.max(fMax, fpr[j]!);
    pMin = Math.min(pMin, pro[j]!);
    pMax = Math.max(pMax, pro[j]!);
  }
  const fScale = fMax - fMin + RESCALE_EPS;
  const pScale = pMax - pMin + RESCALE_EPS;
  let area = 0;
  for (let j = first; j < steps - 1; j++) {
    const f0 = (fpr[j]! - fMin) / fScale;
    const f1 = (fpr[j + 1]! - fMin) / fScale;
    const p0 = (pro[j]! - pMin) / pScale;
    const p1 = (pro[j + 1]! - pMin) / pScale;
    area += ((f0 - f1) * (p0 + p1)) / 2;
  }
  return defined(area * 100);
}
