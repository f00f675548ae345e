/**
 * `precision: 'int8'` when fitting (the default of `hetmm fit` and of
 * fitStore given detector options): quantise the backbone on the very images
 * being fitted (the natural calibration set: the user's own normal parts;
 * at most 32 of them, evenly spaced, DEFAULT_CALIBRATION_IMAGES) into memory,
 * and embed the int8 model in the store (./store-backbone.ts): nothing is
 * written until the store itself is saved, by its atomic rename.
 */
import path from 'node:path';
import { DEFAULT_CALIBRATION_IMAGES, quantizeModel, type QuantizeModelResult } from '../backbone/index.js';
import { evenlySpaced, quantizeModelBytes } from '../backbone/quantize/index.js';
import { loadImage } from '../image/index.js';
import { resolveModel } from '../models/index.js';
import type { EmbeddedModel } from '../store/index.js';
import { EMBEDDED_INT8_BACKBONE, INT8_BACKBONE_META } from './store-backbone.js';

/**
 * Quantise `model` (default: the float backbone in use) calibrated on
 * `files` into memory: the model to embed in the store, how many images
 * calibrated it, and the store meta entry that says it is embedded.
 */
export async function quantizeBackboneToEmbed(
  files: readonly string[] | readonly Float32Array[],
  options: { model?: string; threads?: number } = {},
): Promise<{ model: EmbeddedModel; calibrationImages: number; quantizedConvs: number; meta: Record<string, string> }> {
  const model = options.model ?? (await resolveModel()).path;
  const q = await quantizeModelBytes({ model, calibrate: files, threads: options.threads });
  return {
    model: { bytes: q.modelBytes, sha256: q.sha256, description: q.description },
    calibrationImages: q.calibrationImages,
    quantizedConvs: q.quantizedConvs,
    meta: { [INT8_BACKBONE_META]: EMBEDDED_INT8_BACKBONE },
  };
}

/**
 * Quantise `model` (default: the float backbone in use) calibrated on
 * `files`, written to `output` (hetmm eval's int8 backbone, outside any
 * store). Returns the result and a store meta entry naming the file.
 */
export async function quantizeBackboneFor(
  files: readonly string[] | readonly Float32Array[],
  output: string,
  options: { model?: string; threads?: number } = {},
): Promise<{ result: QuantizeModelResult; meta: Record<string, string> }> {
  // the float model as Backbone.load finds it (a download from HETMM_MODEL_HOST included), not only where it lies
  const model = options.model ?? (await resolveModel()).path;
  const result = await quantizeModel({ model, calibrate: files, output, threads: options.threads });
  return { result, meta: { [INT8_BACKBONE_META]: path.basename(output) } };
}

/**
 * The calibration images quantizeBackboneFor would use (evenly spaced, at
 * most DEFAULT_CALIBRATION_IMAGES), less those that do not decode: fit
 * reports a bad input and goes on (the features phase reports it), so the
 * quantiser must not stop on it first. The candidates are taken twice as
 * densely so that a few bad files still leave a full calibration set.
 */
export async function decodableCalibrationFiles(files: readonly string[], maxPixels?: number): Promise<string[]> {
  const candidates = evenlySpaced(files, 2 * DEFAULT_CALIBRATION_IMAGES);
  const good: string[] = [];
  for (const f of candidates) {
    const ok = await loadImage(f, { size: [8, 8], ...(maxPixels === undefined ? {} : { maxPixels }) }).then(
      () => true,
      () => false,
    );
    if (ok) good.push(f);
  }
  return good;
}
