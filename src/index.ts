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
 */
export { HetmmError, isHetmmError, type HetmmErrorCode } from './errors.js';
export { Detector, type DetectorOptions, type Prediction, type ProgressEvent } from './detector/detector.js';
export { storedThreshold, describeFalseAlarms, type StoredThreshold } from './detector/threshold.js';
export { calibrateStore, DEFAULT_FALSE_ALARM_RATE, type CalibrateOptions } from './detector/calibrate.js';
export { fitStore, type FitStoreOptions, type FitStoreResult } from './eval/fit-store.js';
export { tunePreset, type TuneOptions, type TuneRecord } from './eval/tune.js';
export * from './image/index.js';
export * from './backbone/index.js';
export * from './store/index.js';
export * from './matching/index.js';
export type { FeatureDType, FeatureStack, KernelBackend, MatchOptions, MatchResult, QueryMap } from './kernels/contract.js';
export { getBackend, listBackends, registerBackend, type BackendPreference } from './kernels/index.js';
export { optics, opticsCosine, type OpticsResult } from './selection/optics.js';
export { selectTemplates } from './selection/pts.js';
export * from './eval/index.js';
export { evaluate, type EvaluateOptions, type EvaluationResult } from './eval/run.js';
export { compressStore } from './selection/compress-store.js';
export { createServer, InProcessExecutor, ServerError, type ServerOptions, type InspectionExecutor } from './server/index.js';
