export {
  DEFAULT_BACKBONE,
  DEFAULT_MODEL_FILE,
  DEFAULT_MODEL_RELATIVE_PATH,
  loadBackboneDescription,
  validateBackboneDescription,
  sameIdentity,
  identityDifference,
} from './description.js';
export type { BackboneDescription, BackboneIdentity, BackboneLayerIdentity } from './description.js';
export { resolveModelPath, packageRoot } from './model-path.js';
export type { ResolveModelOptions } from './model-path.js';
export { Backbone, l2NormalisePixels } from './backbone.js';
export type { BackboneLoadOptions, PixelNormaliser } from './backbone.js';
export {
  quantizeModel,
  quantizedDescription,
  parseCalibrationMethod,
  prepareFloatModel,
  DEFAULT_CALIBRATION,
  DEFAULT_CALIBRATION_IMAGES,
} from './quantize/index.js';
export type { QuantizeModelOptions, QuantizeModelResult, CalibrationMethod } from './quantize/index.js';
