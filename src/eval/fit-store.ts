/**
 * fitStore: the one library call that turns normal images into a ready
 * template store: add the normals, optionally tune the preset on synthetic
 * defects (./tune.ts), optionally compress with PTS, calibrate the
 * deployment threshold (src/detector/calibrate.ts) and save. `hetmm fit`,
 * `hetmm demo` and `evaluate` run exactly this; `hetmm compress` runs its
 * compress-and-calibrate half on a loaded store.
 *
 * It sits in the eval layer (not in detector) because tuning scores
 * candidate presets with eval's metrics (image AUROC, pixel AUROC, AUPRO).
 */
import { calibrateStore, DEFAULT_CALIBRATION_SAMPLES, DEFAULT_FALSE_ALARM_RATE } from '../detector/calibrate.js';
import type { Detector } from '../detector/detector.js';
import { HetmmError } from '../errors.js';
import type { StoredThreshold } from '../detector/threshold.js';
import { compressStore, type CompressResult, type PtsGramChoice } from '../selection/compress-store.js';
import { tunePreset, type TuneOptions, type TuneResult } from './tune.js';

export type FitPhase = 'fit' | 'tune' | 'compress' | 'calibrate';

export interface FitStoreOptions {
  /** normal images to add (none: use the detector's store as it is, e.g. a loaded store to compress) */
  readonly files?: readonly string[];
  /** an input that cannot be read or decoded: reported here and skipped (without it, the fit fails) */
  readonly onFailure?: (file: string, error: Error) => void;
  /** entries merged into the store's meta after the images are added (e.g. the int8 backbone's provenance) */
  readonly meta?: Record<string, unknown>;
  /** choose the preset from the normals (synthetic defects); the detector's preset otherwise */
  readonly tune?: boolean | TuneOptions;
  /** compress to K PTS sheets per pixel */
  readonly pts?: number;
  readonly ptsWorkers?: number;
  readonly ptsGram?: PtsGramChoice;
  /** calibrate the deployment threshold (default true when the store has >= 2 templates) */
  readonly calibrate?: boolean;
  /** target false-alarm rate, default 0.01 */
  readonly falseAlarmRate?: number;
  /** cap on calibration samples, default 1000 (DEFAULT_CALIBRATION_SAMPLES) */
  readonly calibrationSamples?: number;
  /** save the store here */
  readonly output?: string;
  readonly onProgress?: (phase: FitPhase, done: number, total: number) => void;
  /** things the user should know (calibration skipped, too few normals, ...) */
  readonly onNote?: (message: string) => void;
}

export interface FitStoreResult {
  readonly threshold?: StoredThreshold;
  readonly tuning?: TuneResult;
  readonly pts?: CompressResult['pts'];
  /** seconds per phase */
  readonly seconds: { readonly fit: number; readonly tune: number; readonly compress: number; readonly calibrate: number };
}

/** Fits the detector's store in place; see the module comment for the steps. */
export async function fitStore(detector: Detector, options: FitStoreOptions = {}): Promise<FitStoreResult> {
  const progress = options.onProgress ?? (() => {});
  const note = options.onNote ?? (() => {});
  const seconds = { fit: 0, tune: 0, compress: 0, calibrate: 0 };
  let t = performance.now();
  const lap = (key: keyof typeof seconds): void => {
    const now = performance.now();
    seconds[key] = (now - t) / 1000;
    t = now;
  };

  const files = options.files ?? [];
  if (files.length > 0) {
    await detector.add(files, (e) => progress('fit', e.done, e.total), options.onFailure === undefined ? {} : { onFailure: options.onFailure });
    if (detector.store.count === 0) {
      throw new HetmmError('E_NO_IMAGES', `none of the ${files.length} inputs could be used (listed above): no store written`);
    }
  }
  if (options.meta !== undefined) Object.assign(detector.store.meta, options.meta);
  lap('fit');

  let tuning: TuneResult | undefined;
  if (options.tune !== undefined && options.tune !== false) {
    const tuneOptions = options.tune === true ? {} : options.tune;
    tuning = await tunePreset(detector, { ...tuneOptions, onProgress: (done, total) => progress('tune', done, total) });
    detector.preset = tuning.preset;
    detector.store.meta.tuning = tuning.record;
    for (const n of tuning.notes) note(n);
  }
  // a store remembers the preset it was fitted (and calibrated) with
  if (files.length > 0 || tuning !== undefined) detector.store.meta.preset = detector.preset;
  lap('tune');

  let pts: CompressResult['pts'] | undefined;
  const source = detector.store.snapshot();
  if (options.pts !== undefined) {
    const compressed = await compressStore(detector.store, options.pts, {
      ...(options.ptsWorkers === undefined ? {} : { workers: options.ptsWorkers }),
      ...(options.ptsGram === undefined ? {} : { gram: options.ptsGram }),
      onProgress: (done, total) => progress('compress', done, total),
    });
    for (const n of compressed.notes) note(n);
    detector.setStore(compressed.store);
    pts = compressed.pts;
  }
  lap('compress');

  let threshold: StoredThreshold | undefined;
  const calibrate = options.calibrate ?? true;
  // PTS before calibration: the threshold must hold for the sheets that get saved
  const compressed = options.pts !== undefined && pts?.minSamples !== null;
  if (calibrate && (compressed || detector.store.count >= 2)) {
    threshold = await calibrateStore(detector, {
      falseAlarmRate: options.falseAlarmRate ?? DEFAULT_FALSE_ALARM_RATE,
      samples: options.calibrationSamples ?? DEFAULT_CALIBRATION_SAMPLES,
      ...(compressed ? { source } : {}),
      onProgress: (e) => progress('calibrate', e.done, e.total),
    });
    if (threshold.warning !== undefined) note(threshold.warning);
  } else if (calibrate) {
    note('not calibrated: leave-one-out calibration needs at least 2 images (predict will print scores without OK/DEFECT)');
  }
  lap('calibrate');

  if (options.output !== undefined) await detector.store.save(options.output);
  return {
    ...(threshold === undefined ? {} : { threshold }),
    ...(tuning === undefined ? {} : { tuning }),
    ...(pts === undefined ? {} : { pts }),
    seconds,
  };
}
