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
export { version } from './version.js';
export { configure, setting, type SettingName } from './config.js';
export { HetmmError, isHetmmError, type HetmmErrorCode } from './errors.js';
export { Detector, type DetectorOptions, type Prediction, type ProgressEvent } from './detector/detector.js';
export { TemplateStore } from './store/index.js';
export { resolvePreset, type Preset } from './matching/index.js';
export { storedThreshold, type StoredThreshold } from './detector/threshold.js';
export { fitStore } from './eval/fit-store.js';
export { compressStore, type CompressOptions, type CompressResult } from './selection/compress-store.js';
export { evaluate, type EvaluateOptions, type EvaluationResult } from './eval/run.js';
export { getBackend, listBackends, registerBackend, type BackendPreference, type KernelBackend } from './kernels/index.js';
export { MODELS, resolveModel } from './models/index.js';
