/** Evaluation: metrics, data-set readers, decision thresholds, reports. */
export * from './metrics/index.js';
export * from './datasets.js';
export * from './thresholds.js';
export * from './report.js';
export { fitStore, type FitPhase, type FitStoreOptions, type FitStoreResult } from './fit-store.js';
export { tunePreset, summarize as summarizePreset, type ProxyScores, type TuneOptions, type TuneRecord, type TuneResult } from './tune.js';
export { makeRng, synthesizeDefect, SYNTHETIC_KINDS, type SyntheticDefect, type SyntheticKind } from './synthetic.js';
export { calibrateStore, DEFAULT_CALIBRATION_SAMPLES, DEFAULT_FALSE_ALARM_RATE, type CalibrateOptions } from '../detector/calibrate.js';
