/** Finding the .onnx model: moved to the model store (../models/locate.ts); these names stay for compatibility. */
export {
  locateModel as resolveModelPath,
  packageRoot,
  type LocateModelOptions as ResolveModelOptions,
} from '../models/locate.js';
