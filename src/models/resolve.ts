/**
 * resolveModel: locate (./locate.ts), else download (./download.ts, imported
 * only then: importing hetmm loads no HTTP client).
 */
import { setting } from '../config.js';
import { isHetmmError } from '../errors.js';
import { cachedModelPath, locateModel, modelEntry, type LocatedModel, type LocateModelOptions } from './locate.js';

export interface ResolveModelOptions extends LocateModelOptions {
  /** base URL to download from when the model is nowhere local (default HETMM_MODEL_HOST) */
  readonly host?: string;
  readonly onProgress?: (received: number, total: number) => void;
}

/**
 * The model file to load: found locally, else downloaded into the cache when
 * a host is configured. Throws E_MODEL_NOT_FOUND (offline, nothing found) or
 * E_MODEL_INVALID (the download did not match the manifest) with what to do.
 */
export async function resolveModel(options: ResolveModelOptions = {}): Promise<LocatedModel> {
  try {
    return locateModel(options);
  } catch (e) {
    const host = options.host ?? setting('modelHost', options.env);
    // explicit paths never fall back; without a host the locate error already says what to do
    if (!isHetmmError(e) || e.code !== 'E_MODEL_NOT_FOUND' || host === undefined || options.model !== undefined || setting('model', options.env) !== undefined) throw e;
    const entry = modelEntry(options.name);
    const target = cachedModelPath(entry, options);
    const { pullModel } = await import('./download.js');
    const file = await pullModel(entry, { host, target, env: options.env, onProgress: options.onProgress });
    return { path: file, source: 'download', tried: [target], entry };
  }
}
