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
 *
 * Precision: given detector options (not an opened Detector), fitStore opens
 * the detector itself and, for a new store written to `output`, fits it int8
 * end to end by default: the backbone is quantised on the normals first, in
 * memory (src/detector/precision.ts), embedded in the new store, and the
 * features and the threshold come from that int8 backbone, the one predict
 * and serve then run (calibration parity). `precision: 'float'` fits the
 * float reference. Given an opened Detector, its backbone is used as it is
 * (float unless it was opened with an int8 model).
 *
 * Nothing is written before the final save, which replaces `output` by an
 * atomic rename: a failed or killed fit leaves an existing store at
 * `output` exactly as it was. The output path is checked first, so a
 * missing directory fails before minutes of work.
 */
import { calibrateStore, DEFAULT_CALIBRATION_SAMPLES, DEFAULT_FALSE_ALARM_RATE } from '../detector/calibrate.js';
import { Detector, type DetectorOptions } from '../detector/detector.js';
import { openNewInt8Detector } from '../detector/store-detector.js';
import { HetmmError } from '../errors.js';
import type { StoredThreshold } from '../detector/threshold.js';
import { compressStore, type CompressResult, type PtsGramChoice } from '../selection/compress-store.js';
import { TemplateStore } from '../store/index.js';
import { tunePreset, type TuneOptions, type TuneResult } from './tune.js';

export type FitPhase = 'quantize' | 'fit' | 'tune' | 'compress' | 'calibrate';

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
  /** the detector that fitted the store: the one passed in, or the one fitStore opened from options (the caller disposes it) */
  readonly detector: Detector;
  /** 'int8' when fitStore quantised the backbone (the store then names it: int8 end to end); 'float' otherwise */
  readonly precision: 'float' | 'int8';
  /** the int8 backbone embedded in the store (int8 only): its sha256, size in bytes and calibration images */
  readonly int8Backbone?: { readonly sha256: string; readonly bytes: number; readonly calibrationImages: number };
  readonly threshold?: StoredThreshold;
  readonly tuning?: TuneResult;
  readonly pts?: CompressResult['pts'];
  /** seconds per phase */
  readonly seconds: { readonly quantize: number; readonly fit: number; readonly tune: number; readonly compress: number; readonly calibrate: number };
}

/**
 * Fits a store: into an opened detector's store in place, or (detector
 * options) into a new detector fitStore opens, int8 end to end by default;
 * see the module comment.
 */
export async function fitStore(target: Detector | DetectorOptions, options: FitStoreOptions = {}): Promise<FitStoreResult> {
  if (options.output !== undefined) await TemplateStore.checkWritable(options.output);
  if (target instanceof Detector) return fitInto(target, options, { precision: 'float', quantizeSeconds: 0 });
  const files = options.files ?? [];
  // The default for a new store: int8 (an explicit `model` is used as given unless precision: 'int8' asks to quantise it).
  const fresh = files.length > 0 && target.store === undefined && options.output !== undefined && target.model === undefined;
  const precision = target.precision ?? (fresh ? 'int8' : 'float');
  if (precision === 'float' || target.store !== undefined) {
    const detector = await Detector.open(target);
    return fitInto(detector, options, { precision, quantizeSeconds: 0 }).catch((e: unknown) => {
      detector.dispose();
      throw e;
    });
  }
  if (options.output === undefined || files.length === 0) {
    throw new HetmmError('E_ARGUMENT', 'fitting int8 end to end quantises the backbone on the normal images (files) and embeds it in the store (output): give both, or precision: \'float\'');
  }
  const t0 = performance.now();
  const { decodableCalibrationFiles, quantizeBackboneToEmbed } = await import('../detector/precision.js');
  options.onProgress?.('quantize', 0, 1);
  // with onFailure a bad input is reported by the features phase and skipped: the quantiser skips it too
  const calibration = options.onFailure === undefined ? files : await decodableCalibrationFiles(files, target.maxPixels);
  if (calibration.length === 0) return fitStore({ ...target, precision: 'float' }, options); // reports every input, then E_NO_IMAGES
  const q = await quantizeBackboneToEmbed(calibration, {
    ...(target.model === undefined ? {} : { model: target.model }),
    ...(target.threads === undefined ? {} : { threads: target.threads }),
  });
  options.onProgress?.('quantize', 1, 1);
  options.onNote?.(`int8 backbone embedded in the store (${q.quantizedConvs} convolutions int8, calibrated on ${q.calibrationImages} of the images)`);
  // Matching as the saved store will be opened (Detector.open): int8 where the backend has it, unless told.
  const detector = await openNewInt8Detector(target, q.model);
  try {
    const fitted = await fitInto(detector, { ...options, meta: { ...options.meta, ...q.meta } }, { precision: 'int8', quantizeSeconds: (performance.now() - t0) / 1000 });
    return { ...fitted, int8Backbone: { sha256: q.model.sha256, bytes: q.model.bytes.length, calibrationImages: q.calibrationImages } };
  } catch (e) {
    detector.dispose();
    throw e;
  }
}

async function fitInto(
  detector: Detector,
  options: FitStoreOptions,
  how: { precision: 'float' | 'int8'; quantizeSeconds: number },
): Promise<FitStoreResult> {
  const progress = options.onProgress ?? (() => {});
  const note = options.onNote ?? (() => {});
  const seconds = { quantize: how.quantizeSeconds, fit: 0, tune: 0, compress: 0, calibrate: 0 };
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
    detector,
    precision: how.precision,
    ...(threshold === undefined ? {} : { threshold }),
    ...(tuning === undefined ? {} : { tuning }),
    ...(pts === undefined ? {} : { pts }),
    seconds,
  };
}
