/**
 * The model store (`hetmm/models` and the root's resolveModel): a model is
 * found by ./locate.ts (path, HETMM_MODEL, cache, local models directory, npm
 * package) and otherwise downloaded by ./download.ts from HETMM_MODEL_HOST
 * into the cache, verified against the shipped manifest (./manifest.ts).
 */

export { DEFAULT_MODEL_NAME, MODELS, findModelEntry, type ModelEntry } from './manifest.js';
export { cachedModelPath, locateModel, modelEntry, LOCAL_MODELS_DIR, type LocatedModel, type LocateModelOptions, type ModelSource } from './locate.js';
export { modelUrl, pullModel, verifyModelFile, sha256OfFile, type PullOptions } from './download.js';
export { resolveModel, type ResolveModelOptions } from './resolve.js';
