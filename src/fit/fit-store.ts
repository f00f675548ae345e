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
import { embeddedModelName } from '../detector/store-backbone.js';
import { Backbone } from '../backbone/backbone.js';
import { HetmmError } from '../errors.js';
import { resolveModel } from '../models/index.js';
import type { StoredThreshold } from '../detector/threshold.js';
import { compressStore, type CompressResult, type PtsGramChoice } from '../selection/compress-store.js';
import { TemplateStore, type EmbeddedModel } from '../store/index.js';
import { autoTune, tunePreset, type TuneOptions, type TuneResult } from './tune.js';

export type FitPhase = 'quantize' | 'fit' | 'tune' | 'compress' | 'calibrate';

export interface FitStoreOptions {
  /** normal images to add (none: use the detector's store as it is, e.g. a loaded store to compress) */
  readonly files?: readonly string[];
  /** an input that cannot be read or decoded: reported here and skipped (without it, the fit fails) */
  readonly onFailure?: (file: string, error: Error) => void;
  /** entries merged into the store's meta after the images are added (e.g. the int8 backbone's provenance) */
  readonly meta?: Record<string, unknown>;
  /**
   * choose the preset from the normals (synthetic defects); the detector's
   * preset otherwise. Absent, for a new store from detector options that name
   * no preset: tune when there are at least MIN_TUNE_NORMALS normals (the
   * default of `hetmm fit`). With `minNormals`, fewer normals keep the
   * detector's preset, with a note.
   */
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
  /** where the backbone runs (default: this thread, on `files` as image paths); the server runs it on its threads */
  readonly hooks?: FitHooks;
}

/**
 * Where fitting runs the backbone. With hooks, `files` are the inputs'
 * names (recorded in the store) and the hooks reach the images themselves.
 */
export interface FitHooks {
  /** quantises the float backbone `model` calibrated on the inputs, into memory (the model the store will embed) */
  readonly quantize?: (model: string) => Promise<QuantizedBackbone>;
  /** the features of input `index` of `files` through `detector`'s backbone */
  readonly features?: (detector: Detector, index: number) => Promise<Float32Array[]>;
}

/** An int8 backbone quantised into memory, to embed in the store, and the store meta entry saying so. */
export interface QuantizedBackbone {
  readonly model: EmbeddedModel;
  readonly calibrationImages: number;
  /** convolutions quantised, when known */
  readonly quantizedConvs?: number;
  readonly meta: Record<string, string>;
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
  // nobody chose a preset for this new store: tune it when there are enough normals
  if (options.tune === undefined && target.preset === undefined && target.store === undefined) {
    return fitStore(target, { ...options, tune: autoTune() });
  }
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
  options.onProgress?.('quantize', 0, 1);
  const q = await quantizeFor(target, files, options);
  if (q === undefined) return fitStore({ ...target, precision: 'float' }, options); // reports every input, then E_NO_IMAGES
  options.onProgress?.('quantize', 1, 1);
  const convs = q.quantizedConvs === undefined ? '' : `${q.quantizedConvs} convolutions int8, `;
  options.onNote?.(`int8 backbone embedded in the store (${convs}calibrated on ${q.calibrationImages} of the images)`);
  // Matching as the saved store will be opened: the line service's rule for an int8 store (src/detector/line.ts).
  const detector = await openNewInt8Detector(target, q.model);
  try {
    const fitted = await fitInto(detector, { ...options, meta: { ...options.meta, ...q.meta } }, { precision: 'int8', quantizeSeconds: (performance.now() - t0) / 1000 });
    return { ...fitted, int8Backbone: { sha256: q.model.sha256, bytes: q.model.bytes.length, calibrationImages: q.calibrationImages } };
  } catch (e) {
    detector.dispose();
    throw e;
  }
}

/**
 * The int8 backbone quantised on the normals beside `options.output` (the
 * hook's, else on this thread on `files`), or undefined when none of the
 * files decodes (with onFailure).
 */
/**
 * A detector for a new, empty store that will embed `model` (the int8
 * backbone just quantised into memory). Detector.open runs the line
 * service on it: the store's embedded model is its backbone, matched as an
 * int8 store is (int8 where the backend can, unless options.matchPrecision
 * says). `options.model` (the float model it was quantised from) and
 * `options.precision` are not used.
 */
async function openNewInt8Detector(options: DetectorOptions, model: EmbeddedModel): Promise<Detector> {
  const { precision: _whole, model: _float, ...rest } = options;
  // the store's identity comes from the model; the same name as Detector.open gives it, so the one session is shared
  const backbone = await Backbone.load({
    model: embeddedModelName(undefined, model),
    modelBytes: model.bytes,
    description: model.description,
    ...(rest.threads === undefined ? {} : { threads: rest.threads }),
  });
  try {
    const store = TemplateStore.create(backbone.identity, { ...(rest.dtype === undefined ? {} : { dtype: rest.dtype }), model });
    return await Detector.open({ ...rest, store });
  } finally {
    backbone.dispose();
  }
}

async function quantizeFor(target: DetectorOptions, files: readonly string[], options: FitStoreOptions): Promise<QuantizedBackbone | undefined> {
  if (options.hooks?.quantize !== undefined) {
    // the float model as Backbone.load finds it (a download from HETMM_MODEL_HOST included)
    return options.hooks.quantize(target.model ?? (await resolveModel()).path);
  }
  const { decodableCalibrationFiles, quantizeBackboneToEmbed } = await import('../detector/precision.js');
  // with onFailure a bad input is reported by the features phase and skipped: the quantiser skips it too
  const calibration = options.onFailure === undefined ? files : await decodableCalibrationFiles(files, target.maxPixels);
  if (calibration.length === 0) return undefined;
  return quantizeBackboneToEmbed(calibration, {
    ...(target.model === undefined ? {} : { model: target.model }),
    ...(target.threads === undefined ? {} : { threads: target.threads }),
  });
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
    if (options.hooks?.features !== undefined) await addThrough(detector, files, options.hooks.features, options);
    else await detector.add(files, (e) => progress('fit', e.done, e.total), options.onFailure === undefined ? {} : { onFailure: options.onFailure });
    if (detector.store.count === 0) {
      throw new HetmmError('E_NO_IMAGES', `none of the ${files.length} inputs could be used (listed above): no store written`);
    }
  }
  if (options.meta !== undefined) Object.assign(detector.store.meta, options.meta);
  lap('fit');

  let tuning: TuneResult | undefined;
  const tuneOptions = options.tune === undefined || options.tune === false ? undefined : options.tune === true ? {} : options.tune;
  const count = detector.store.count;
  if (tuneOptions?.minNormals !== undefined && count < tuneOptions.minNormals) {
    note(`preset ${detector.preset.name}, not tuned: ${count} normal image${count === 1 ? '' : 's'}, fewer than the ${tuneOptions.minNormals} that tuning needs by default`);
  } else if (tuneOptions?.minNormals !== undefined && detector.store.snapshot().files.length < count) {
    note(`preset ${detector.preset.name}, not tuned: the store holds PTS sheets, not the images tuning needs`);
  } else if (tuneOptions !== undefined) {
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

/** Detector.add's in-memory path with the features from a hook: all or nothing unless onFailure. */
async function addThrough(detector: Detector, files: readonly string[], features: NonNullable<FitHooks['features']>, options: FitStoreOptions): Promise<void> {
  const before = detector.store.count;
  detector.store.reserve(files.length);
  for (let i = 0; i < files.length; i++) {
    try {
      detector.store.append(await features(detector, i), files[i]!);
    } catch (e) {
      if (options.onFailure === undefined) {
        detector.store.rollbackTo(before);
        throw e;
      }
      options.onFailure(files[i]!, e instanceof Error ? e : new Error(String(e)));
    }
    options.onProgress?.('fit', i + 1, files.length);
  }
}
