/**
 * `precision: 'int8'` when fitting (the default of `hetmm fit` and of
 * fitStore given detector options): quantise the backbone on the very images
 * being fitted (the natural calibration set: the user's own normal parts;
 * at most 32 of them, evenly spaced, DEFAULT_CALIBRATION_IMAGES) and keep
 * the int8 model beside the store, named in the store's meta so that
 * Detector.open({ store }) finds it (./store-backbone.ts).
 */
import path from 'node:path';
import { DEFAULT_CALIBRATION_IMAGES, quantizeModel, type QuantizeModelResult } from '../backbone/index.js';
import { evenlySpaced } from '../backbone/quantize/index.js';
import { loadImage } from '../image/index.js';
import { resolveModel } from '../models/index.js';
import { INT8_BACKBONE_META } from './store-backbone.js';

export { int8BackbonePathFor } from './store-backbone.js';

/**
 * Quantise `model` (default: the float backbone in use) calibrated on
 * `files`, written to `output`. Returns the result and the store meta entry
 * to record (the file name relative to the store's directory).
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
