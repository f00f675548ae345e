/**
 * The int8 backbone a store was fitted with lives beside the store file
 * (`<stem>.int8.onnx` and its description `<stem>.int8.json`), named in the
 * store's meta. Kept as sidecar files rather than inside the store: the
 * store format appends feature records in place and is read by every
 * process, while onnxruntime loads a model from a file; a 9 MB model inside
 * a 35 MB-10 GB store would also be copied into every PTS-compressed copy.
 * A store moved without its sidecar files must fail with one clear error
 * naming them (never run the float model, nor a model with the default
 * description, on int8 features): storeBackboneFiles checks both exist.
 */
import { existsSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { descriptionPathFor } from '../backbone/description.js';
import { HetmmError } from '../errors.js';

/** Store meta key: file name (relative to the store's directory) of the int8 backbone the store was fitted with. */
export const INT8_BACKBONE_META = 'int8Backbone';

/** `<dir>/<stem>.int8.onnx` for a store file `<dir>/<stem>.hetmm`. */
export function int8BackbonePathFor(storeFile: string): string {
  const stem = path.basename(storeFile).replace(/\.hetmm$/i, '');
  return path.join(path.dirname(storeFile), `${stem}.int8.onnx`);
}

/**
 * Copies the int8 backbone files of a store to sit beside `storeFile` (a
 * compressed copy written elsewhere, `hetmm compress -o`) and names them in
 * `meta`: each store carries its own pair, so deleting one never breaks another.
 */
export async function copyStoreBackbone(files: StoreBackboneFiles, storeFile: string, meta: Record<string, unknown>): Promise<StoreBackboneFiles> {
  const model = int8BackbonePathFor(storeFile);
  const description = descriptionPathFor(model);
  if (path.resolve(model) !== path.resolve(files.model)) {
    await copyFile(files.model, model);
    await copyFile(files.description, description);
  }
  meta[INT8_BACKBONE_META] = path.basename(model);
  return { model, description };
}

export interface StoreBackboneFiles {
  /** the int8 .onnx beside the store */
  readonly model: string;
  /** its description (Backbone.load reads `<model>.json`) */
  readonly description: string;
}

/** The model file named in `meta` (undefined: the store was fitted with the float backbone or an explicit --model). */
export function int8BackboneName(meta: Record<string, unknown>): string | undefined {
  const named = meta[INT8_BACKBONE_META];
  return typeof named === 'string' && named !== '' ? named : undefined;
}

/**
 * The int8 backbone files of the store at `storeFile`, checked to exist
 * (HetmmError E_MODEL_NOT_FOUND naming the missing file otherwise), or
 * undefined when the store names none.
 */
export function storeBackboneFiles(storeFile: string, meta: Record<string, unknown>): StoreBackboneFiles | undefined {
  const named = int8BackboneName(meta);
  if (named === undefined) return undefined;
  if (path.basename(named) !== named) {
    throw new HetmmError('E_STORE_FORMAT', `template store '${storeFile}' names its int8 backbone as ${JSON.stringify(named)}, not a file name beside it`);
  }
  const model = path.join(path.dirname(storeFile), named);
  const description = descriptionPathFor(model);
  const missing = [model, description].filter((f) => !existsSync(f));
  if (missing.length > 0) {
    throw new HetmmError(
      'E_MODEL_NOT_FOUND',
      `template store '${storeFile}' was fitted with the int8 backbone ${named}, but ${missing.map((f) => `'${f}'`).join(' and ')} ` +
        `${missing.length === 1 ? 'is' : 'are'} missing: copy ${path.basename(model)} and ${path.basename(description)} from the store's original folder ` +
        `together with the store (or refit it)`,
    );
  }
  return { model, description };
}
