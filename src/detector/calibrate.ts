/**
 * Calibration, in one place: the deployment threshold of a template store
 * from its normal images alone (`calibrateStore`, the only function that
 * writes meta.threshold; `hetmm fit`, `compress`, `demo` and `evaluate` all
 * reach it through it).
 *
 * Leave-one-out: each sampled template is scored against the store without
 * itself, which is what a new normal part from the same line looks like to
 * the detector. All templates are sampled up to a cap (default 1000), so the
 * order statistic of a 1% false-alarm rate exists (./threshold.ts) and is
 * estimated from as many scores as the normals allow. The
 * matching runs in int8 where the CPU has it (a few times faster; scores
 * within ~2e-3 of float). A PTS store (sheets, not images) is calibrated
 * instead from the original templates it came from. The scores also give
 * the heat-map colour range, so heat maps of different images share a scale.
 */
import { HetmmError } from '../errors.js';
import type { KernelBackend } from '../kernels/contract.js';
import { getBackend } from '../kernels/index.js';
import { float16ArrayToFloat32 } from '../store/index.js';
import type { StoreSnapshot } from '../store/index.js';
import type { Detector, ProgressCallback } from './detector.js';
import { FALSE_ALARM_CONFIDENCE, formatRate, normalOnlyThreshold, type StoredThreshold } from './threshold.js';

/** Default target false-alarm rate on new normal images. */
export const DEFAULT_FALSE_ALARM_RATE = 0.01;
/**
 * Default cap on the leave-one-out samples (each costs one matching against
 * the whole store, so calibration time grows as N * min(N, cap)). High
 * enough that a store of up to 1000 normals is calibrated on all of them:
 * the order statistic's spread shrinks with the sample, and on Magnetic
 * Tile 200 evenly spaced samples gave a threshold that flagged 3.7% of the
 * good test tiles where all 761 gave 1.6% (docs/THRESHOLDS.md).
 */
export const DEFAULT_CALIBRATION_SAMPLES = 1000;

export interface CalibrateOptions {
  /** target false-alarm rate in (0, 1); default 0.01 */
  readonly falseAlarmRate?: number;
  /** at most this many templates are scored (evenly spaced); default DEFAULT_CALIBRATION_SAMPLES */
  readonly samples?: number;
  /** a PTS store: score this snapshot's templates (the original images) against the sheets, not leave-one-out */
  readonly source?: StoreSnapshot;
  /** 'auto' (default): int8 matching when the fast backend has it, else the detector's; 'detector': the detector's backend */
  readonly matching?: 'auto' | 'detector';
  readonly onProgress?: ProgressCallback;
}

/**
 * Calibrates the detector's store for its current preset and stores the
 * threshold in meta.threshold. Throws HetmmError('E_ARGUMENT') for a rate
 * outside (0, 1), fewer than 2 templates (leave-one-out) or an empty source.
 */
export async function calibrateStore(detector: Detector, options: CalibrateOptions = {}): Promise<StoredThreshold> {
  const rate = options.falseAlarmRate ?? DEFAULT_FALSE_ALARM_RATE;
  if (typeof rate !== 'number' || !(rate > 0 && rate < 1)) {
    throw new HetmmError('E_ARGUMENT', `expected a false-alarm rate in (0, 1), e.g. 0.01 for 1%, but received ${String(rate)}`);
  }
  const samples = options.samples ?? DEFAULT_CALIBRATION_SAMPLES;
  const backend = options.matching === 'detector' ? undefined : await int8MatchingBackend(detector);
  const sampling = { samples, onProgress: options.onProgress, backend };
  const cal =
    options.source === undefined ? await leaveOneOutScores(detector, sampling) : await heldOutTemplateScores(detector, options.source, sampling);
  const what = options.source === undefined ? 'leave-one-out template scores' : 'original template scores against the PTS sheets';
  const chosen = normalOnlyThreshold(cal.scores, { falseAlarmRate: rate });
  const int8 = backend !== undefined || detector.backend.precision === 'int8';
  const matching = int8 ? ', int8 matching' : '';
  const threshold: StoredThreshold = {
    value: chosen.threshold,
    method: `${formatRate(rate)} false-alarm order statistic of ${cal.scores.length} ${what}${matching}`,
    preset: detector.preset.name,
    pixelMedian: cal.pixelMedian,
    scores: cal.scores,
    falseAlarmRate: rate,
    expectedFalseAlarmRate: chosen.expectedFalseAlarmRate,
    falseAlarmBound: chosen.falseAlarmBound,
    confidence: FALSE_ALARM_CONFIDENCE,
    ...(chosen.warning === undefined ? {} : { warning: chosen.warning }),
  };
  detector.store.meta.threshold = threshold;
  return threshold;
}

/** The detector's backend matching in int8, for calibration, when it does not match in int8 already and can (the fast one on a VNNI CPU). */
export async function int8MatchingBackend(detector: Detector): Promise<KernelBackend | undefined> {
  if (detector.backend.precision === 'int8') return undefined;
  try {
    return await getBackend(detector.backend.name, { precision: 'int8' });
  } catch {
    return undefined; // no int8 matching (the reference, no VNNI): calibrate with the detector's own backend
  }
}

export interface Calibration {
  /** leave-one-out image scores of the sampled templates */
  readonly scores: number[];
  /** indices of the sampled templates */
  readonly indices: number[];
  /** median pixel value of their pixel maps: the colour scale's low end */
  readonly pixelMedian: number;
}

/** Evenly spaced sample of `count` indices out of n (all when n <= count). */
export function evenSample(n: number, count: number): number[] {
  if (count >= n) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: count }, (_, i) => Math.floor(((i + 0.5) * n) / count));
}

interface SamplingOptions {
  readonly samples?: number;
  readonly onProgress?: ProgressCallback | undefined;
  /** match with this backend instead of the detector's (int8 calibration) */
  readonly backend?: KernelBackend | undefined;
}

export async function leaveOneOutScores(
  detector: Detector,
  options: SamplingOptions = {},
): Promise<Calibration> {
  const snapshot = detector.store.snapshot();
  if (snapshot.count < 2) {
    throw new HetmmError('E_ARGUMENT', `leave-one-out calibration needs at least 2 templates, the store has ${snapshot.count}`);
  }
  return scoreTemplates(detector, snapshot, true, options);
}

/**
 * Calibration of a compressed (PTS) store: its sheets are not images, so
 * leave-one-out over them means nothing. Instead a sample of the original
 * store's templates (normal images) is scored against the detector's store
 * as it is. Caveat: a sampled template's own vectors may have been kept as
 * sheets at some pixels, where it then matches perfectly, so these scores
 * are somewhat optimistic (docs/PTS.md).
 */
export async function heldOutTemplateScores(
  detector: Detector,
  source: StoreSnapshot,
  options: SamplingOptions = {},
): Promise<Calibration> {
  if (source.count < 1) throw new HetmmError('E_ARGUMENT', 'calibration needs at least 1 original template, the source store is empty');
  return scoreTemplates(detector, source, false, options);
}

/** Scores an even sample of `source`'s templates against the detector's store (leaving each out of it when `leaveOut`). */
async function scoreTemplates(
  detector: Detector,
  source: StoreSnapshot,
  leaveOut: boolean,
  options: SamplingOptions,
): Promise<Calibration> {
  const indices = evenSample(source.count, options.samples ?? DEFAULT_CALIBRATION_SAMPLES);
  const scores: number[] = [];
  const medians: number[] = [];
  for (const [k, i] of indices.entries()) {
    const features = source.layers.map((stack) => {
      const [, c, h, w] = stack.shape;
      const per = c * h * w;
      const slice = stack.data.subarray(i * per, (i + 1) * per);
      return slice instanceof Float32Array ? slice : float16ArrayToFloat32(slice);
    });
    const { results } = await detector.matchFeatures(features, {
      ...(leaveOut ? { exclude: i } : {}),
      ...(options.backend === undefined ? {} : { backend: options.backend }),
    });
    // a band cue (pixel map only: the display range's median) needs the image itself; the score never does
    const file = detector.preset.bands !== undefined ? source.files[i] : undefined;
    const image = file === undefined ? undefined : await detector.loadImage(file).catch(() => undefined);
    const scored = detector.scoreResults(results, image);
    scores.push(scored.score);
    medians.push(median(scored.pixelMap));
    options.onProgress?.({ done: k + 1, total: indices.length, file: source.files[i] ?? String(i) });
  }
  return { scores, indices, pixelMedian: median(Float32Array.from(medians)) };
}

function median(values: Float32Array): number {
  const sorted = Float32Array.from(values).sort();
  const m = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
}
