/** Evaluation: metrics, data-set readers, decision thresholds, reports. */
export * from './metrics/index.js';
export * from './datasets.js';
export * from './thresholds.js';
export * from './report.js';
