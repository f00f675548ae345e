/**
 * `precision: 'int8'` when fitting: quantise the backbone on the very images
 * being fitted (the natural calibration set: the user's own normal parts)
 * and keep the int8 model beside the store, named in the store's meta so
 * that Detector.open({ precision: 'int8', store }) finds it.
 */
import path from 'node:path';
import { quantizeModel, type QuantizeModelResult } from '../backbone/index.js';
import { INT8_BACKBONE_META } from './detector.js';

/** `<dir>/<stem>.int8.onnx` for a store file `<dir>/<stem>.hetmm`. */
export function int8BackbonePathFor(storeFile: string): string {
  const stem = path.basename(storeFile).replace(/\.hetmm$/i, '');
  return path.join(path.dirname(storeFile), `${stem}.int8.onnx`);
}

/**
 * Quantise `model` (default: the float backbone in use) calibrated on
 * `files`, written to `output`. Returns the result and the store meta entry
 * to record (the file name relative to the store's directory).
 */
export async function quantizeBackboneFor(
  files: readonly string[],
  output: string,
  options: { model?: string; threads?: number } = {},
): Promise<{ result: QuantizeModelResult; meta: Record<string, string> }> {
  const result = await quantizeModel({ model: options.model, calibrate: files, output, threads: options.threads });
  return { result, meta: { [INT8_BACKBONE_META]: path.basename(output) } };
}
