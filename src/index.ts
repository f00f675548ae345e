/**
 * hetmm: training-free industrial anomaly detection (HETMM, Chen et al., IJCV 2024).
 *
 * ```ts
 * import { Detector } from 'hetmm';
 * const detector = await Detector.open({ preset: 'bottle' });
 * await detector.add(['good/000.png', 'good/001.png']);   // normal images: the templates
 * const p = await detector.predict('test/broken/000.png');
 * p.score;        // image anomaly score, e.g. 0.7586
 * p.anomalyMap;   // Float32Array 256*256, raw ATMM map
 * ```
 *
 * The root is the public API a user needs (about 30 names, listed in the
 * README's API section and pinned by test/api.test.ts); building blocks are
 * behind subpaths: hetmm/image, hetmm/backbone, hetmm/store, hetmm/kernels,
 * hetmm/matching, hetmm/selection, hetmm/metrics, hetmm/eval, hetmm/models. Importing it
 * loads neither onnxruntime nor sharp: they load on first use.
 */
import type { Detector, DetectorOptions } from './detector/detector.js';
import type { FitStoreOptions, FitStoreResult } from './fit/fit-store.js';
import type { EvaluateCallback, EvaluateOptions, EvaluationResult } from './eval/run.js';
import type { CompressOptions, CompressResult } from './selection/compress-store.js';
import { TemplateStore } from './store/index.js';

export { version } from './version.js';
export { configure, setting, type SettingName } from './config.js';
export { HetmmError, isHetmmError, type HetmmErrorCode } from './errors.js';
export { Detector, type DetectorOptions, type Prediction, type ProgressEvent } from './detector/detector.js';
export { TemplateStore };
export { resolvePreset, type Preset } from './matching/index.js';
export { storedThreshold, type StoredThreshold } from './detector/threshold.js';
export type { CompressOptions, CompressResult } from './selection/compress-store.js';
export type { EvaluateOptions, EvaluationResult } from './eval/run.js';
export { getBackend, listBackends, registerBackend, type BackendPreference, type KernelBackend } from './kernels/index.js';
export { MODELS } from './models/manifest.js';
export { resolveModel } from './models/resolve.js';

// Evaluation and PTS pull in the metrics, data-set readers and OPTICS: loaded on first call.

/** Evaluates on a data set (AUROC, AUPRO, PRO, F1, thresholds); see src/eval/run.ts. */
export async function evaluate(options: EvaluateOptions, onEvent?: EvaluateCallback): Promise<EvaluationResult> {
  return (await import('./eval/run.js')).evaluate(options, onEvent);
}

/** PTS: compresses a store to K template sheets per layer; see src/selection/compress-store.ts. */
export async function compressStore(source: TemplateStore, k: number, options?: CompressOptions): Promise<CompressResult> {
  return (await import('./selection/compress-store.js')).compressStore(source, k, options);
}

/**
 * The one call that makes a store ready from normal images: add them, tune
 * the preset (optional), PTS (optional), calibrate the threshold for a
 * stated false-alarm rate, save; see src/fit/fit-store.ts. Given detector
 * options (not a Detector), it opens the detector and fits int8 end to end
 * by default (the backbone quantised on the normals, beside the store).
 */
export async function fitStore(detector: Detector | DetectorOptions, options?: FitStoreOptions): Promise<FitStoreResult> {
  return (await import('./fit/fit-store.js')).fitStore(detector, options);
}
