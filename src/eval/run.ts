/**
 * The evaluation driver: for each category of a data set, fit (or load) the
 * template store, predict every test image, and compute the paper's metrics
 * plus the two decision thresholds. One library call, so the CLI (`hetmm
 * eval`), a future HTTP server or a job queue all run the same code.
 *
 * Steps per category:
 * 1. List the data (MVTec AD layout or plain folders, ./datasets.ts).
 * 2. Templates: fit train/good into a new store and calibrate its
 *    deployment threshold (leave-one-out, as `hetmm fit`), or load a store;
 *    optionally compress it with PTS (`pts`: K sheets per pixel).
 * 3. Predict the test images (predictMany pipelines decoding, backbone and
 *    matching). Only the score and the maps the metrics need are kept per
 *    image, never the decoded image.
 * 4. Metrics: image AUROC and F1-max on the scores; pixel AUROC on the
 *    pixel maps (the preset's pixel post-processing, as the paper); AUPRO
 *    and HETMM's PRO on the PRO maps (the preset's PRO post-processing when
 *    it differs, as the official evaluation). Ground-truth masks at the
 *    model's input size; a good image's mask is all zeros. Undefined metrics
 *    are null with their reason, never NaN.
 * 5. Thresholds: the F1-optimal threshold of the test scores and the
 *    store's normal-only threshold, each with precision / recall / false
 *    alarms on the test images; recall at false-alarm rates 0.1%, 1% and
 *    5% of the good test images, and the ROC curve (./low-false-alarm.ts).
 * 6. Optionally the HTML report: overlays rendered only for the worst false
 *    positives and false negatives.
 */
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Detector } from '../detector/detector.js';
import { lineInt8Backbone, lineMatchPrecision } from '../detector/line.js';
import { DEFAULT_CALIBRATION_SAMPLES, DEFAULT_FALSE_ALARM_RATE } from '../detector/calibrate.js';
import { falseAlarmPredictionBound, heatmapRange, storedThreshold, type StoredThreshold } from '../detector/threshold.js';
import { HetmmError, isHetmmError } from '../errors.js';
import { encodeMaskPng, loadMask, renderHeatmapOverlay } from '../image/index.js';
import type { FeatureDType } from '../kernels/contract.js';
import type { BackendPreference } from '../kernels/index.js';
import { isMvtecCategory, resolvePreset, type PostProcess, type Preset } from '../matching/index.js';
import { TemplateStore } from '../store/index.js';
import { readStoreMeta } from '../store/peek.js';
import { fitStore, type FitStoreResult } from '../fit/fit-store.js';
import { autoTune, type TuneOptions } from '../fit/tune.js';
import { listMvtecCategories, readFolderDataset, readMvtecCategory, type Dataset, type FolderLayout } from './datasets.js';
import { aupro, f1Max, imageAuroc, pixelAuroc, proHetmm, type MetricResult } from '../metrics/index.js';
import {
  buildReport,
  selectWorstExamples,
  writeHtmlReport,
  writeJsonReport,
  type CategoryReport,
  type CategoryThresholds,
  type EvalReport,
  type ExampleImage,
  type ThresholdReport,
} from './report.js';
import { f1OptimalThreshold, operatingPoint } from './thresholds.js';
import { lowFalseAlarmReports } from './low-false-alarm.js';

export interface EvaluateOptions {
  /** an MVTec AD root (every category under it) or one category folder; or give `folder` */
  readonly data?: string;
  /** only these categories of `data` (default: all) */
  readonly categories?: readonly string[];
  /** a user's own data in plain folders, instead of `data` */
  readonly folder?: FolderLayout;
  /**
   * 'auto' (default: an MVTec category's official preset, else tuned: see `tune`),
   * a preset name, a Preset, or a function choosing the preset per category
   */
  readonly preset?: string | Preset | ((category: string) => Preset);
  /**
   * tune the preset of each fitted store on synthetic defects from its
   * normals (fitStore's tune); `preset` is then ignored. Absent, with preset
   * 'auto' (the default): a fitted category without an official MVTec preset
   * is tuned when it has at least MIN_TUNE_NORMALS normals; a function
   * decides per category
   */
  readonly tune?: boolean | TuneOptions | ((category: string) => boolean | TuneOptions);
  /** target false-alarm rate of the deployment threshold; default 0.01 */
  readonly falseAlarmRate?: number;
  /** a store file (one category only) or a directory of `<category>.hetmm`; default: fit train/good */
  readonly templates?: string;
  /** save each evaluated store as `<dir>/<category>.hetmm` */
  readonly saveTemplates?: string;
  /** compress each store with PTS to K sheets per pixel before predicting */
  readonly pts?: number;
  /** worker threads for PTS; default the number of CPUs */
  readonly ptsWorkers?: number;
  /** element type of fitted stores; default float32 (a loaded store keeps its own) */
  readonly dtype?: FeatureDType;
  readonly backend?: BackendPreference;
  /** 'int8': approximate int8 matching (see DetectorOptions.matchPrecision) */
  readonly matchPrecision?: 'float' | 'int8';
  /**
   * 'int8': int8 matching and, when the stores are fitted here and no
   * `model` is given, an int8 backbone quantised on the selected
   * categories' train/good images (hetmm quantize-model, in a temp dir)
   */
  readonly precision?: 'float' | 'int8';
  /** ONNX model path (default: the shipped backbone) */
  readonly model?: string;
  /** onnxruntime threads */
  readonly threads?: number;
  /** test images in flight in predictMany; default 2 */
  readonly concurrency?: number;
  /** cap on leave-one-out samples for the deployment threshold of a fitted store; default 1000 (as `hetmm fit`); 0 = none */
  readonly calibrationSamples?: number;
  /** write the JSON report to this file */
  readonly jsonFile?: string;
  /** write the HTML report (index.html + images/) into this directory */
  readonly reportDir?: string;
  /** worst false positives and false negatives shown per category in the HTML; default 8 */
  readonly examples?: number;
  /** the report's data-set name; default the data folder's name */
  readonly datasetName?: string;
}

export type EvaluatePhase = 'fit' | 'tune' | 'calibrate' | 'compress' | 'predict';

export type EvaluateEvent =
  | {
      readonly type: 'progress';
      readonly category: string;
      readonly phase: EvaluatePhase;
      readonly done: number;
      readonly total: number;
    }
  /** something the user should know (a calibration skipped, a dtype ignored, ...) */
  | { readonly type: 'note'; readonly category: string; readonly message: string }
  /** a category finished: its report line and timings */
  | {
      readonly type: 'category';
      readonly report: CategoryReport;
      readonly preset: string;
      readonly fitSeconds: number;
      readonly predictSeconds: number;
    };

export type EvaluateCallback = (event: EvaluateEvent) => void;

export interface EvaluationResult {
  readonly report: EvalReport;
  /** the kernel backend that ran */
  readonly backend: string;
  /** wall time of the whole evaluation, seconds */
  readonly seconds: number;
  /** path of the JSON report, when written */
  readonly jsonFile?: string;
  /** path of the HTML report's index.html, when written */
  readonly htmlFile?: string;
}

/** The settled options, checked once at the boundary. */
interface Plan {
  readonly datasetName: string;
  /** one entry per category, read lazily (listing is cheap, but errors should name the category) */
  readonly categories: readonly { readonly name: string; readonly read: () => Promise<Dataset> }[];
  readonly presetFor: (category: string) => Preset;
  readonly concurrency: number;
  readonly calibrationSamples: number;
  readonly examples: number;
}

function checkPositiveInteger(value: number | undefined, name: string, min: number): void {
  if (value !== undefined && (!Number.isInteger(value) || value < min)) {
    throw new HetmmError('E_ARGUMENT', `evaluate: expected ${name} to be an integer >= ${min}, but received ${String(value)}`);
  }
}

async function plan(options: EvaluateOptions): Promise<Plan> {
  checkPositiveInteger(options.pts, 'pts', 1);
  checkPositiveInteger(options.ptsWorkers, 'ptsWorkers', 1);
  checkPositiveInteger(options.concurrency, 'concurrency', 1);
  checkPositiveInteger(options.calibrationSamples, 'calibrationSamples', 0);
  checkPositiveInteger(options.examples, 'examples', 0);
  if (options.dtype !== undefined && options.dtype !== 'float32' && options.dtype !== 'float16') {
    throw new HetmmError('E_ARGUMENT', `evaluate: expected dtype float32 or float16, but received ${String(options.dtype)}`);
  }
  if ((options.data === undefined) === (options.folder === undefined)) {
    throw new HetmmError(
      'E_ARGUMENT',
      'evaluate: expected exactly one data source: data (an MVTec AD root or category folder) or folder (normal/abnormal/mask folders)',
    );
  }
  const presetOption = options.preset ?? 'auto';
  const presetFor =
    typeof presetOption === 'function'
      ? presetOption
      : typeof presetOption === 'string'
        ? (category: string) => resolvePreset(presetOption, category)
        : () => presetOption;
  if (typeof presetOption === 'string') resolvePreset(presetOption); // an unknown name fails now, not after fitting

  let categories: Plan['categories'];
  let datasetName: string;
  if (options.folder !== undefined) {
    const layout = options.folder;
    if (options.categories !== undefined && options.categories.length > 0) {
      throw new HetmmError('E_ARGUMENT', 'evaluate: categories select folders of an MVTec AD root; they do not apply to a folder layout');
    }
    const name = layout.name ?? path.basename(path.resolve(layout.normalDir));
    categories = [{ name, read: () => readFolderDataset(layout) }];
    datasetName = options.datasetName ?? name;
  } else {
    const root = path.resolve(options.data!);
    const available = await listMvtecCategories(root);
    const wanted = options.categories !== undefined && options.categories.length > 0 ? [...options.categories] : available;
    for (const c of wanted) {
      if (!available.includes(c)) {
        throw new HetmmError('E_DATASET', `no category "${c}" under ${root} (found: ${available.join(', ')})`);
      }
    }
    // readMvtecCategory reads a category folder given as root as itself.
    categories = wanted.map((name) => ({ name, read: () => readMvtecCategory(root, name) }));
    datasetName = options.datasetName ?? path.basename(root);
  }
  if (options.templates !== undefined && !(await isDir(options.templates)) && categories.length > 1) {
    throw new HetmmError(
      'E_ARGUMENT',
      `evaluate: templates ${options.templates} is one store file but ${categories.length} categories are evaluated; ` +
        'pass a directory of <category>.hetmm files or select one category',
    );
  }
  return {
    datasetName,
    categories,
    presetFor,
    concurrency: options.concurrency ?? 2,
    calibrationSamples: options.calibrationSamples ?? DEFAULT_CALIBRATION_SAMPLES,
    examples: options.examples ?? 8,
  };
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

const samePostProcess = (a: PostProcess, b: PostProcess | undefined): boolean =>
  b === undefined || JSON.stringify(a) === JSON.stringify(b);

/** Per test image: what the metrics and the HTML report need, nothing more. */
interface Scored {
  readonly index: number;
  readonly file: string;
  readonly label: 0 | 1;
  readonly score: number;
}

/**
 * Evaluates every selected category; see the module comment for the steps.
 * Throws HetmmError for bad options (E_ARGUMENT), data-set layout problems
 * (E_DATASET), unreadable images or stores, and a failing test image (a
 * metric over a partial test set would be misleading).
 */
export async function evaluate(options: EvaluateOptions, onEvent: EvaluateCallback = () => {}): Promise<EvaluationResult> {
  const t0 = performance.now();
  const settled = await plan(options);
  let model = options.model;
  let int8Dir: string | undefined;
  if (options.precision === 'int8' && model === undefined && options.templates === undefined) {
    const trainFiles = (await Promise.all(settled.categories.map(async (c) => (await c.read()).trainFiles))).flat();
    int8Dir = await mkdtemp(path.join(os.tmpdir(), 'hetmm-eval-int8-'));
    const { quantizeBackboneFor } = await import('../detector/precision.js');
    model = (await quantizeBackboneFor(trainFiles, path.join(int8Dir, 'backbone.int8.onnx'), { threads: options.threads })).result.output;
  }
  const matchPrecision = options.matchPrecision ?? options.precision;
  const detector = await Detector.open({
    model,
    backend: options.backend,
    threads: options.threads,
    dtype: options.dtype,
    ...(matchPrecision === undefined ? {} : { matchPrecision }),
  }).catch(async (e: unknown) => {
    if (int8Dir !== undefined) await rm(int8Dir, { recursive: true, force: true });
    throw e;
  });
  try {
    const reports: CategoryReport[] = [];
    const examples: Record<string, ExampleImage[]> = {};
    for (const category of settled.categories) {
      // a loaded store fitted int8 end to end (hetmm fit's default) runs its own int8 backbone
      const own = await int8StoreDetector(category.name, options);
      try {
        const { report, worst } = await evaluateCategory(own ?? detector, category.name, await category.read(), settled, options, onEvent);
        reports.push(report);
        if (worst !== undefined) examples[report.name] = worst;
      } finally {
        own?.dispose();
      }
    }
    const report = buildReport(settled.datasetName, reports);
    let jsonFile: string | undefined;
    let htmlFile: string | undefined;
    if (options.jsonFile !== undefined) {
      jsonFile = path.resolve(options.jsonFile);
      await writeJsonReport(jsonFile, report);
    }
    if (options.reportDir !== undefined) {
      htmlFile = await writeHtmlReport(path.resolve(options.reportDir), report, examples, { examples: settled.examples });
    }
    return {
      report,
      backend: detector.backend.name,
      seconds: (performance.now() - t0) / 1000,
      ...(jsonFile === undefined ? {} : { jsonFile }),
      ...(htmlFile === undefined ? {} : { htmlFile }),
    };
  } finally {
    detector.dispose();
    if (int8Dir !== undefined) await rm(int8Dir, { recursive: true, force: true });
  }
}

/**
 * With --templates, a category store fitted int8 end to end names its int8
 * backbone beside it: a detector with that backbone (no store yet; the
 * category's store is loaded into it as any other), else undefined (the
 * shared detector). An explicit model or precision 'float' keeps the shared one.
 */
async function int8StoreDetector(name: string, options: EvaluateOptions): Promise<Detector | undefined> {
  if (options.templates === undefined) return undefined;
  const file = (await isDir(options.templates)) ? path.join(options.templates, `${name}.hetmm`) : options.templates;
  // the line service's rules: which backbone the store runs, and its matching precision
  const model = lineInt8Backbone(file, await readStoreMeta(file), options);
  if (model === undefined) return undefined;
  const matching = await lineMatchPrecision(options, true);
  return Detector.open({
    model,
    backend: options.backend,
    threads: options.threads,
    ...(matching === undefined ? {} : { matchPrecision: matching }),
  });
}

async function evaluateCategory(
  detector: Detector,
  name: string,
  dataset: Dataset,
  settled: Plan,
  options: EvaluateOptions,
  onEvent: EvaluateCallback,
): Promise<{ report: CategoryReport; worst?: ExampleImage[] }> {
  const note = (message: string): void => onEvent({ type: 'note', category: name, message });
  const progress = (phase: EvaluatePhase, done: number, total: number): void =>
    onEvent({ type: 'progress', category: name, phase, done, total });
  detector.preset = settled.presetFor(name);

  // ---- templates
  const tFit = performance.now();
  const tuning = await prepareStore(detector, name, dataset, settled, options, note, progress);
  const fitSeconds = (performance.now() - tFit) / 1000;

  // ---- predictions: keep the score and the maps, drop the decoded image
  const [height, width] = detector.backbone.identity.inputSize;
  const preset = detector.preset; // tuning may have replaced the preset asked for
  const separateProMap = !samePostProcess(preset.pixel, preset.pro);
  const scored: Scored[] = [];
  const pixelMaps: Float32Array[] = [];
  const proMaps: Float32Array[] = [];
  const files = dataset.test.map((t) => t.file);
  const tPredict = performance.now();
  let index = 0;
  for await (const r of detector.predictMany(files, { concurrency: settled.concurrency })) {
    if (r.error !== undefined) throw failedImage(r.source, r.error);
    const p = r.prediction!;
    const sample = dataset.test[index]!;
    scored.push({ index, file: sample.file, label: sample.label, score: p.score });
    pixelMaps.push(p.pixelMap);
    if (separateProMap) proMaps.push(p.proMap ?? p.pixelMap);
    index++;
    progress('predict', index, files.length);
  }
  const predictSeconds = (performance.now() - tPredict) / 1000;

  // ---- masks (outside the timed loop): at the model size, zeros for good images
  const masks = dataset.hasMasks ? await loadMasks(dataset, height, width) : undefined;

  // ---- metrics
  const scores = Float64Array.from(scored, (s) => s.score);
  const labels = scored.map((s) => s.label);
  const reasons: Record<string, string> = {};
  const valueOf = (key: string, result: MetricResult, scale = 1): number | null => {
    if (result.value === null) {
      reasons[key] = result.reason;
      return null;
    }
    return result.value / scale;
  };
  const image_auroc = valueOf('image_auroc', imageAuroc(scores, labels));
  const f1 = f1Max(scores, labels);
  const f1_image = f1.value === null ? ((reasons['f1_image'] = f1.reason), null) : f1.value.f1;
  let pixel_auroc: number | null = null;
  let aupro_value: number | null = null;
  let pro_hetmm: number | null = null;
  if (masks === undefined) {
    const why = 'no ground-truth masks (a folder layout without a mask folder): pixel-level metrics need them';
    for (const key of ['pixel_auroc', 'aupro', 'pro_hetmm']) reasons[key] = why;
  } else {
    const proInput = separateProMap ? proMaps : pixelMaps;
    pixel_auroc = valueOf('pixel_auroc', pixelAuroc(pixelMaps, masks));
    aupro_value = valueOf('aupro', aupro(proInput, masks, { width }));
    // proHetmm is in percent (the paper's unit); the report holds fractions.
    pro_hetmm = valueOf('pro_hetmm', proHetmm(proInput, masks, { width }), 100);
  }
  const { at_false_alarm_rates, roc } = lowFalseAlarmReports(scores, labels, reasons);
  const thresholds = { ...thresholdReports(detector, scores, labels, reasons), at_false_alarm_rates };

  const report: CategoryReport = {
    name,
    image_auroc,
    pixel_auroc,
    aupro: aupro_value,
    pro_hetmm,
    f1_image,
    images: scored.length,
    templates: detector.store.count,
    seconds_per_image: scored.length > 0 ? predictSeconds / scored.length : 0,
    thresholds,
    ...(roc === undefined ? {} : { roc }),
    ...(Object.keys(reasons).length > 0 ? { reasons } : {}),
    ...(tuning === undefined
      ? {}
      : {
          tuning: {
            preset: tuning.record.summary,
            seconds: tuning.record.seconds,
            candidates: tuning.record.candidates,
            proxy: tuning.record.proxy,
            default_proxy: tuning.record.defaultProxy,
            ...(tuning.record.bands === undefined ? {} : { bands: { weight: tuning.record.bands.weight, structure: tuning.record.bands.structure } }),
          },
        }),
  };
  onEvent({ type: 'category', report, preset: detector.preset.name, fitSeconds, predictSeconds });

  const worst =
    options.reportDir === undefined ? undefined : await renderWorst(detector, scored, pixelMaps, masks, settled.examples, height, width);
  return worst === undefined ? { report } : { report, worst };
}

function failedImage(source: string, error: Error): HetmmError {
  if (isHetmmError(error) && error.message.includes(source)) return error;
  const code = isHetmmError(error) ? error.code : 'E_INTERNAL';
  return new HetmmError(code, `test image ${source}: ${error.message}`, { cause: error });
}

/**
 * Whether (and how) to tune a category's preset: as asked, else under preset
 * 'auto' when fitting a category that has no official MVTec preset (with
 * fit's minimum number of normals; fewer keep the default preset).
 */
export function tuneFor(options: Pick<EvaluateOptions, 'tune' | 'preset' | 'templates'>, category: string, base?: TuneOptions): boolean | TuneOptions | undefined {
  if (typeof options.tune === 'function') return options.tune(category);
  if (options.tune !== undefined) return options.tune;
  const auto = options.preset === undefined || options.preset === 'auto';
  return auto && options.templates === undefined && !isMvtecCategory(category) ? autoTune(base) : undefined;
}

/** Fits (fitStore) or loads the category's store into the detector, calibrating, tuning, compressing and saving it as asked. */
async function prepareStore(
  detector: Detector,
  name: string,
  dataset: Dataset,
  settled: Plan,
  options: EvaluateOptions,
  note: (message: string) => void,
  progress: (phase: EvaluatePhase, done: number, total: number) => void,
): Promise<FitStoreResult['tuning']> {
  const tune = tuneFor(options, name);
  const preset = detector.preset;
  const identity = detector.backbone.identity;
  const falseAlarmRate = options.falseAlarmRate ?? DEFAULT_FALSE_ALARM_RATE;
  let calibrate = settled.calibrationSamples > 0;
  if (options.templates !== undefined) {
    const file = (await isDir(options.templates)) ? path.join(options.templates, `${name}.hetmm`) : options.templates;
    const store = await TemplateStore.load(file, { expect: identity });
    detector.setStore(store);
    if (options.dtype !== undefined && options.dtype !== store.dtype) {
      note(`--dtype ${options.dtype} ignored: the loaded store ${file} holds ${store.dtype} templates`);
    }
    const tuning = tune !== undefined && tune !== false; // a tuned preset needs its own threshold
    if (tuning || storedThreshold(store.meta, preset.name) === undefined) {
      if (calibrate && store.count >= 2 && store.meta.pts === undefined) {
        note(`calibrating the store ${file} in memory for ${tuning ? 'the tuned preset' : `preset ${preset.name}`} (${Math.min(settled.calibrationSamples, store.count)} leave-one-out samples)`);
      }
    } else calibrate = options.pts !== undefined && calibrate;
    if (store.meta.pts !== undefined && storedThreshold(store.meta, preset.name) === undefined) {
      note(`the PTS store ${file} has no threshold for preset ${preset.name} (leave-one-out needs whole images): no normal-only threshold`);
      calibrate = false;
    }
  } else {
    detector.setStore(TemplateStore.create(identity, { dtype: options.dtype ?? 'float32' }));
  }
  const fitted = await fitStore(detector, {
    ...(options.templates === undefined ? { files: dataset.trainFiles } : {}),
    ...(tune === undefined || tune === false ? {} : { tune }),
    ...(options.pts === undefined ? {} : { pts: options.pts, ptsWorkers: options.ptsWorkers ?? os.availableParallelism() }),
    calibrate,
    falseAlarmRate,
    calibrationSamples: Math.max(1, settled.calibrationSamples),
    onProgress: (phase, done, total) => {
      if (phase !== 'quantize') progress(phase, done, total); // an opened detector: fitStore does not quantise
    },
    onNote: note,
  });
  if (options.saveTemplates !== undefined) {
    await mkdir(options.saveTemplates, { recursive: true });
    await detector.store.save(path.join(options.saveTemplates, `${name}.hetmm`));
  }
  return fitted.tuning;
}

async function loadMasks(dataset: Dataset, height: number, width: number): Promise<Uint8Array[]> {
  const empty = new Uint8Array(height * width); // shared: metrics only read masks
  const masks: Uint8Array[] = [];
  for (const sample of dataset.test) {
    if (sample.label === 0) masks.push(empty);
    else if (sample.maskFile === undefined) {
      throw new HetmmError('E_DATASET', `defective test image ${sample.file} has no ground-truth mask`);
    } else masks.push(await loadMask(sample.maskFile, [height, width]));
  }
  return masks;
}

function thresholdReports(
  detector: Detector,
  scores: Float64Array,
  labels: readonly (0 | 1)[],
  reasons: Record<string, string>,
): CategoryThresholds {
  const at = (threshold: number, method: string): ThresholdReport => {
    const point = operatingPoint(scores, labels, threshold);
    return { threshold, method, precision: point.precision, recall: point.recall, false_positive_rate: point.falsePositiveRate };
  };
  let f1_optimal: ThresholdReport | null = null;
  if (labels.includes(1)) {
    f1_optimal = at(f1OptimalThreshold(scores, labels).threshold, 'best F1 on the labelled test scores (chosen on the test set: optimistic)');
  } else {
    reasons['f1_optimal'] = 'no defective test image: an F1-optimal threshold needs defective examples';
  }
  const stored = storedThreshold(detector.store.meta, detector.preset.name);
  let normal_only: ThresholdReport | null = null;
  if (stored !== undefined) {
    normal_only = {
      ...at(stored.value, stored.method),
      ...(stored.falseAlarmRate === undefined ? {} : { stated_false_alarm_rate: stored.falseAlarmRate }),
      ...(stored.expectedFalseAlarmRate === undefined ? {} : { expected_false_alarm_rate: stored.expectedFalseAlarmRate }),
      ...(stored.falseAlarmBound === undefined ? {} : { false_alarm_bound: stored.falseAlarmBound }),
      ...predictionBound(stored, labels),
      ...(stored.warning === undefined ? {} : { false_alarm_warning: stored.warning }),
    };
  }
  else reasons['normal_only'] = `the store holds no deployment threshold for preset ${detector.preset.name}`;
  return { f1_optimal, normal_only };
}

/** The bound a false-alarm rate measured on this many good test images is held against (falseAlarmPredictionBound). */
function predictionBound(stored: StoredThreshold, labels: readonly (0 | 1)[]): { false_alarm_prediction_bound?: number } {
  const good = labels.filter((l) => l === 0).length;
  const scores = Array.isArray(stored.scores) ? stored.scores : [];
  if (good === 0 || scores.length === 0 || stored.falseAlarmBound === undefined) return {};
  const above = scores.filter((s) => s > stored.value).length;
  return { false_alarm_prediction_bound: falseAlarmPredictionBound(above, scores.length, good) };
}

/** Overlays (and masks) of the worst false positives and negatives only. */
async function renderWorst(
  detector: Detector,
  scored: readonly Scored[],
  pixelMaps: readonly Float32Array[],
  masks: readonly Uint8Array[] | undefined,
  count: number,
  height: number,
  width: number,
): Promise<ExampleImage[]> {
  const { falsePositives, falseNegatives } = selectWorstExamples(scored, count);
  // one colour scale per category, so overlays compare (as `hetmm predict`: calibrated, else all its maps' min..max)
  const range = heatmapRange({ pixelMaps }, detector.store.meta, detector.preset.name);
  const out: ExampleImage[] = [];
  for (const s of [...falsePositives, ...falseNegatives]) {
    const overlayPng = await renderHeatmapOverlay(s.file, pixelMaps[s.index]!, height, width, { range, alpha: 0.5 });
    const mask = masks?.[s.index];
    out.push({
      file: s.file,
      score: s.score,
      label: s.label,
      overlayPng,
      ...(s.label === 1 && mask !== undefined ? { maskPng: await encodeMaskPng(mask, height, width) } : {}),
    });
  }
  return out;
}

