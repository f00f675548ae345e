/** Fitting a line: add normals, tune the preset on synthetic defects, PTS, calibrate the threshold. */
export { fitStore, type FitPhase, type FitStoreOptions, type FitStoreResult } from './fit-store.js';
export { tunePreset, summarize as summarizePreset, type ProxyScores, type TuneOptions, type TuneRecord, type TuneResult } from './tune.js';
export { makeRng, synthesizeDefect, SYNTHETIC_KINDS, type SyntheticDefect, type SyntheticKind } from './synthetic.js';
