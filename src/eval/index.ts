/** Evaluation: metrics, data-set readers, decision thresholds, reports. */
export * from '../metrics/index.js';
export * from './datasets.js';
export * from './thresholds.js';
export * from './report.js';
// the fit layer (src/fit/) below eval, re-exported here as before
export * from '../fit/index.js';
export { calibrateStore, DEFAULT_CALIBRATION_SAMPLES, DEFAULT_FALSE_ALARM_RATE, type CalibrateOptions } from '../detector/calibrate.js';
