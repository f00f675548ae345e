/**
 * Deployment thresholds from normal images only: the statistics (pure
 * functions, no I/O) and the threshold kept in the template store
 * (meta.threshold). The sampling of normal scores lives in ./calibrate.ts,
 * the one calibration module; src/eval/thresholds.ts re-exports the pure
 * functions next to the F1-optimal threshold.
 *
 * One rule everywhere in hetmm: an image (or pixel) is anomalous iff
 * score > threshold.
 */
import { HetmmError } from '../errors.js';

/** The decision rule every hetmm threshold is chosen for. */
export function isAnomalous(score: number, threshold: number): boolean {
  return score > threshold;
}

/** Confidence of the stated false-alarm bound (one-sided). */
export const FALSE_ALARM_CONFIDENCE = 0.95;

export interface NormalThresholdOptions {
  /**
   * target false-alarm rate on new normal images, in (0, 1): the threshold
   * is the order statistic whose expected exceedance is at most this rate
   * (see falseAlarmThreshold). Takes precedence over `quantile`.
   */
  readonly falseAlarmRate?: number;
  /** quantile of the normal scores, in (0, 1]; default 0.99 (1 = the maximum); used without falseAlarmRate */
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
  /** the requested rate, when chosen by rate */
  readonly falseAlarmRate?: number;
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
  /**
   * one-sided upper confidence bound (FALSE_ALARM_CONFIDENCE) on the
   * false-alarm rate on new normal images: the Clopper-Pearson bound for
   * n - k exceedances out of n, which equals the confidence quantile of the
   * Beta(n - k + 1, k) law of a k-th order statistic's exceedance.
   */
  readonly falseAlarmBound: number;
  /** set when the sample is too small for the requested rate or quantile */
  readonly warning?: string;
}

/** P(Binomial(n, p) <= x), summed in log space (x, n integers). */
export function binomialCdf(x: number, n: number, p: number): number {
  if (x < 0) return 0;
  if (x >= n || p <= 0) return 1;
  if (p >= 1) return 0;
  const lp = Math.log(p);
  const lq = Math.log1p(-p);
  let logC = 0; // log C(n, 0)
  let sum = 0;
  for (let j = 0; j <= x; j++) {
    if (j > 0) logC += Math.log((n - j + 1) / j);
    sum += Math.exp(logC + j * lp + (n - j) * lq);
  }
  return Math.min(1, sum);
}

/**
 * One-sided Clopper-Pearson upper bound on a rate after `exceedances` out
 * of `n` trials: the p with P(Binomial(n, p) <= exceedances) = 1 - confidence
 * (bisection to 1e-12). For exceedances = n it is 1.
 */
export function clopperPearsonUpper(exceedances: number, n: number, confidence = FALSE_ALARM_CONFIDENCE): number {
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(exceedances) || exceedances < 0 || exceedances > n) {
    throw new HetmmError('E_ARGUMENT', `clopperPearsonUpper: expected integers 0 <= exceedances <= n, n >= 1, but received ${exceedances} of ${n}`);
  }
  if (!(confidence > 0 && confidence < 1)) {
    throw new HetmmError('E_ARGUMENT', `clopperPearsonUpper: expected a confidence in (0, 1), but received ${String(confidence)}`);
  }
  if (exceedances === n) return 1;
  let lo = exceedances / n;
  let hi = 1;
  while (hi - lo > 1e-12) {
    const mid = (lo + hi) / 2;
    if (binomialCdf(exceedances, n, mid) > 1 - confidence) lo = mid;
    else hi = mid;
  }
  return hi;
}

/**
 * One-sided upper prediction bound on the share of `batch` new normal images
 * that a threshold flags, when it has `exceedances` of `n` calibration scores
 * above it: the `confidence` quantile of the Beta-binomial(batch,
 * exceedances + 1, n - exceedances) law, i.e. the order statistic's Beta law
 * of the true rate (as for falseAlarmBound) mixed with the binomial draw of
 * the batch itself. This, not falseAlarmBound (a bound on the true rate), is
 * what a false-alarm rate measured on `batch` good images should be held
 * against: a batch at exactly the true rate's bound exceeds that bound about
 * half the time. Returned as a rate (flagged / batch).
 */
export function falseAlarmPredictionBound(exceedances: number, n: number, batch: number, confidence = FALSE_ALARM_CONFIDENCE): number {
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(exceedances) || exceedances < 0 || exceedances > n || !Number.isInteger(batch) || batch < 1) {
    throw new HetmmError(
      'E_ARGUMENT',
      `falseAlarmPredictionBound: expected integers 0 <= exceedances <= n, n >= 1, batch >= 1, but received ${exceedances} of ${n}, batch ${batch}`,
    );
  }
  if (!(confidence > 0 && confidence < 1)) {
    throw new HetmmError('E_ARGUMENT', `falseAlarmPredictionBound: expected a confidence in (0, 1), but received ${String(confidence)}`);
  }
  if (exceedances === n) return 1;
  const a = exceedances + 1;
  const b = n - exceedances;
  // pmf(0) = prod_j (b + j) / (a + b + j); pmf(x + 1) / pmf(x) = (batch - x) (x + a) / ((x + 1) (batch - x - 1 + b))
  let logPmf = 0;
  for (let j = 0; j < batch; j++) logPmf += Math.log((b + j) / (a + b + j));
  let cdf = 0;
  for (let x = 0; x < batch; x++) {
    cdf += Math.exp(logPmf);
    if (cdf >= confidence - 1e-12) return x / batch;
    logPmf += Math.log(((batch - x) * (x + a)) / ((x + 1) * (batch - x - 1 + b)));
  }
  return 1;
}

/** Normal scores needed so a rate R can be had below the maximum: n + 1 >= 1 / R. */
export function samplesForRate(rate: number): number {
  return Math.max(1, Math.ceil(1 / rate - 1 - 1e-9));
}

/**
 * A threshold from scores of defect-free images only.
 *
 * By rate (`falseAlarmRate` R, what `hetmm fit` uses): with n scores sorted,
 * the threshold is the k-th smallest, k = ceil((n + 1)(1 - R)): a new normal
 * score from the same distribution exceeds the k-th of n with probability
 * (n - k + 1) / (n + 1) on average (<= R), whatever the distribution. With
 * fewer than samplesForRate(R) scores (99 for 1%) no order statistic reaches
 * R: the threshold is the maximum, the expected rate 1 / (n + 1), and the
 * result carries a warning.
 *
 * By quantile (`quantile` q, default 0.99): numpy's linear interpolation
 * between order statistics; with fewer than 1 / (1 - q) scores the
 * quantile is interpolated between the two largest scores and the result
 * carries a warning.
 *
 * Both report the expected rate and a one-sided 95% upper bound from the
 * sample count (Clopper-Pearson, equivalently the order statistic's Beta
 * law). Leave-one-out scores of the templates come from N - 1 templates
 * instead of N, so they run slightly higher than a new normal image's score:
 * the threshold errs towards fewer false alarms.
 *
 * Throws HetmmError('E_ARGUMENT') for no scores, non-finite scores, a rate
 * outside (0, 1), a quantile outside (0, 1] or a negative margin.
 */
export function normalOnlyThreshold(normalScores: ArrayLike<number>, options: NormalThresholdOptions = {}): NormalThreshold {
  const rate = options.falseAlarmRate;
  const quantile = options.quantile ?? 0.99;
  const margin = options.margin ?? 0;
  if (rate !== undefined && (typeof rate !== 'number' || !(rate > 0 && rate < 1))) {
    throw new HetmmError('E_ARGUMENT', `normalOnlyThreshold: expected a false-alarm rate in (0, 1), but received ${String(rate)}`);
  }
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
  let base: number;
  let usedQuantile: number;
  if (rate !== undefined) {
    const k = Math.min(n, Math.max(1, Math.ceil((n + 1) * (1 - rate) - 1e-9)));
    base = sorted[k - 1]!;
    usedQuantile = n > 1 ? (k - 1) / (n - 1) : 1;
  } else {
    base = at(quantile);
    usedQuantile = quantile;
  }
  const threshold = base + margin * (base - at(0.5));
  let notAbove = 0;
  while (notAbove < n && sorted[notAbove]! <= threshold) notAbove++;
  const result: NormalThreshold = {
    threshold,
    ...(rate === undefined ? {} : { falseAlarmRate: rate }),
    quantile: usedQuantile,
    margin,
    samples: n,
    empiricalFalseAlarmRate: (n - notAbove) / n,
    expectedFalseAlarmRate: (n - notAbove + 1) / (n + 1),
    falseAlarmBound: clopperPearsonUpper(n - notAbove, n),
  };
  if (rate !== undefined) {
    const needed = samplesForRate(rate);
    if (n < needed) {
      return {
        ...result,
        warning:
          `too few normals for a ${formatRate(rate)} false-alarm rate: ${n} scores support at best ${formatRate(1 / (n + 1))} ` +
          `(the threshold is their maximum); ${needed} or more are needed`,
      };
    }
    return result;
  }
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

/** A rate in percent with enough digits to tell 0.5% from 1%. */
export function formatRate(rate: number): string {
  const pct = rate * 100;
  return `${pct >= 10 ? pct.toFixed(0) : pct >= 1 ? pct.toFixed(1) : pct.toPrecision(2)}%`;
}

export interface StoredThreshold {
  /** image score above which a part is a defect */
  readonly value: number;
  /** how it was chosen, in words */
  readonly method: string;
  /** the preset the scores were computed with: the threshold only holds for it */
  readonly preset: string;
  /** median normal pixel value: the colour scale's low end */
  readonly pixelMedian: number;
  /** the calibration scores it came from */
  readonly scores: number[];
  /** requested false-alarm rate on new normal images (absent in stores calibrated by quantile) */
  readonly falseAlarmRate?: number;
  /** expected false-alarm rate of `value` on new normal images, (n - k + 1) / (n + 1) */
  readonly expectedFalseAlarmRate?: number;
  /** one-sided upper confidence bound on it (Clopper-Pearson) */
  readonly falseAlarmBound?: number;
  /** the bound's confidence */
  readonly confidence?: number;
  /** set when too few normals support the requested rate */
  readonly warning?: string;
}

/** The stored threshold, if it was computed with `presetName`. */
export function storedThreshold(meta: Record<string, unknown>, presetName: string): StoredThreshold | undefined {
  const t = meta.threshold as Partial<StoredThreshold> | undefined;
  if (t === undefined || typeof t.value !== 'number' || !Number.isFinite(t.value) || t.preset !== presetName) return undefined;
  return t as StoredThreshold;
}

/** One line on what a stored threshold promises: "expected false alarms 1.0% (95% bound 2.3%) from 200 normals". */
export function describeFalseAlarms(t: StoredThreshold): string {
  if (t.expectedFalseAlarmRate === undefined || t.falseAlarmBound === undefined) return 'false-alarm rate not stated (calibrated by an older hetmm: refit)';
  const conf = Math.round((t.confidence ?? FALSE_ALARM_CONFIDENCE) * 100);
  const line =
    `expected false alarms ${formatRate(t.expectedFalseAlarmRate)} (${conf}% upper bound ${formatRate(t.falseAlarmBound)}) ` +
    `from ${Array.isArray(t.scores) ? t.scores.length : '?'} normal scores` +
    (t.falseAlarmRate === undefined ? '' : `, asked ${formatRate(t.falseAlarmRate)}`);
  return t.warning === undefined ? line : `${line}; warning: ${t.warning}`;
}

/** The calibrated colour scale of heat maps, [median normal pixel, threshold], when `t` gives one. */
export function calibratedHeatmapRange(t: StoredThreshold | undefined): [number, number] | undefined {
  return t !== undefined && t.value > t.pixelMedian ? [t.pixelMedian, t.value] : undefined;
}

/**
 * The colour scale of heat maps: from the median normal pixel to the
 * deployment threshold when the store is calibrated (red = over the
 * threshold), else the maps' own min..max (then colours are not comparable
 * across images, and the caller says so). `prediction`: one map, or several
 * sharing one scale (eval's report).
 */
export function heatmapRange(
  prediction: { readonly pixelMap: ArrayLike<number> } | { readonly pixelMaps: readonly ArrayLike<number>[] },
  meta: Record<string, unknown>,
  presetName: string,
): [number, number] {
  const calibrated = calibratedHeatmapRange(storedThreshold(meta, presetName));
  if (calibrated !== undefined) return calibrated;
  let lo = Infinity;
  let hi = -Infinity;
  for (const map of 'pixelMap' in prediction ? [prediction.pixelMap] : prediction.pixelMaps) {
    for (let i = 0; i < map.length; i++) {
      const v = map[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}
