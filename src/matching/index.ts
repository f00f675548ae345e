/** ATMM map combination, post-processing and presets. */
export { BAND_COUNT, bandMap, bandProfile, bandStatistics, validateBandCue, type BandCue } from './bands.js';
export { combineLayers, type LayerMaps } from './combine.js';
export { gaussianBlur, gaussianKernel1d, mapMax, maxPoolMean } from './postprocess.js';
export {
  applyOverrides,
  DEFAULT_PRESET,
  isMvtecCategory,
  MVTEC_CATEGORIES,
  MVTEC_PRESETS,
  overridesFromConfig,
  parseLayerSpec,
  parsePostProcess,
  resolvePreset,
  validateLayerParams,
  validatePostProcess,
  validatePreset,
  type LayerParams,
  type MvtecCategory,
  type PostProcess,
  type Preset,
  type PresetOverrides,
} from './presets.js';
export { applyMapPostProcess, imageScore, scoreMap, type ScoredMap } from './score.js';
export { upsampleBilinearAlignCorners } from './upsample.js';
