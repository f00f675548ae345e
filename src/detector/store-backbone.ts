/**
 * Where the int8 backbone of a store fitted int8 end to end comes from.
 *
 * Since store format version 3 the model is embedded in the store file (a
 * section of the base section, covered by its checksum): one file is one
 * line, so copying, moving, symlinking, compressing or deleting a store, and
 * a failed or killed fit (the store's atomic rename), can never separate a
 * store from its model nor touch another store's. The store's meta then
 * says `int8Backbone: "embedded"`. Measured against sidecar files in
 * docs/STORE_FORMAT.md.
 *
 * Version 2 stores fitted int8 name sidecar files instead (`<stem>.int8.onnx`
 * and `<stem>.int8.json`, meta `int8Backbone: "<stem>.int8.onnx"`); they
 * still load, looked up beside the store's final target (a symlink in
 * another directory finds them). A store moved without its sidecar files
 * fails with one clear error naming them (never the float model, nor a model
 * with the default description, on int8 features).
 *
 * A `model` option that names a template store means the model embedded in
 * it (storeBackboneFiles returns the store itself as the model of an
 * embedded store): loadBackbone resolves it. A backbone loaded from an
 * embedded model is named `<store path>#int8-<sha256 prefix>`; worker
 * threads started for it get its bytes from this process
 * (loadedModel), or read them from that store.
 */
import { existsSync, realpathSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Backbone, loadedModel, type BackboneLoadOptions } from '../backbone/backbone.js';
import { descriptionPathFor, loadBackboneDescription, type BackboneIdentity } from '../backbone/description.js';
import { HetmmError } from '../errors.js';
import { STORE_MAGIC, type EmbeddedModel } from '../store/index.js';
import { readStoreModel } from '../store/peek.js';

/** Store meta key: how the store names the int8 backbone it was fitted with. */
export const INT8_BACKBONE_META = 'int8Backbone';
/** meta[INT8_BACKBONE_META] of a store that embeds its int8 backbone (format version 3). */
export const EMBEDDED_INT8_BACKBONE = 'embedded';

/** `<dir>/<stem>.int8.onnx` for a store file `<dir>/<stem>.hetmm`: the sidecar name of version 2 stores. */
export function int8BackbonePathFor(storeFile: string): string {
  const stem = path.basename(storeFile).replace(/\.hetmm$/i, '');
  return path.join(path.dirname(storeFile), `${stem}.int8.onnx`);
}

export interface StoreBackboneFiles {
  /** the int8 .onnx beside the store (version 2), or the store file itself when it embeds the model */
  readonly model: string;
  /** its description (Backbone.load reads `<model>.json`); the store file itself when embedded */
  readonly description: string;
  /** true: the model is inside the store (`model` names the store) */
  readonly embedded: boolean;
}

/** How meta names the int8 backbone (undefined: the store was fitted with the float backbone or an explicit --model). */
export function int8BackboneName(meta: Record<string, unknown>): string | undefined {
  const named = meta[INT8_BACKBONE_META];
  return typeof named === 'string' && named !== '' ? named : undefined;
}

/** The name a backbone loaded from a store's embedded model goes by (Backbone.modelPath); undefined: a store in memory only. */
export function embeddedModelName(storeFile: string | undefined, model: EmbeddedModel): string {
  return `${storeFile === undefined ? '(template store in memory)' : path.resolve(storeFile)}#int8-${model.sha256.slice(0, 16)}`;
}

/**
 * The int8 backbone of the store at `storeFile`: the store itself when it
 * embeds it; version 2 sidecar files beside the store's final target,
 * checked to exist (HetmmError E_MODEL_NOT_FOUND naming the missing file
 * otherwise); undefined when the store names none.
 */
export function storeBackboneFiles(storeFile: string, meta: Record<string, unknown>): StoreBackboneFiles | undefined {
  const named = int8BackboneName(meta);
  if (named === undefined) return undefined;
  if (named === EMBEDDED_INT8_BACKBONE) return { model: path.resolve(storeFile), description: path.resolve(storeFile), embedded: true };
  if (path.basename(named) !== named) {
    throw new HetmmError('E_STORE_FORMAT', `template store '${storeFile}' names its int8 backbone as ${JSON.stringify(named)}, not a file name beside it`);
  }
  const model = path.join(path.dirname(finalTarget(storeFile)), named);
  const description = descriptionPathFor(model);
  const missing = [model, description].filter((f) => !existsSync(f));
  if (missing.length > 0) {
    throw new HetmmError(
      'E_MODEL_NOT_FOUND',
      `template store '${storeFile}' was fitted with the int8 backbone ${named}, but ${missing.map((f) => `'${f}'`).join(' and ')} ` +
        `${missing.length === 1 ? 'is' : 'are'} missing: copy ${path.basename(model)} and ${path.basename(description)} from the store's original folder ` +
        `together with the store, or refit it (a store written by this hetmm carries its int8 backbone inside)`,
    );
  }
  return { model, description, embedded: false };
}

/**
 * A version 2 store's sidecar model read into memory, to embed in a store
 * written from it (hetmm compress): checked to be the model the store's
 * features come from (E_STORE_MISMATCH otherwise).
 */
export async function readSidecarModel(files: StoreBackboneFiles, identity: BackboneIdentity): Promise<EmbeddedModel> {
  const bytes = await readFile(files.model).catch((e: unknown) => {
    throw new HetmmError('E_MODEL_NOT_FOUND', `cannot read the int8 backbone '${files.model}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  });
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (sha256 !== identity.modelSha256) {
    throw new HetmmError('E_STORE_MISMATCH', `the int8 backbone '${files.model}' is not the one the store was fitted with (sha256 ${sha256} vs ${identity.modelSha256})`);
  }
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), sha256, description: await loadBackboneDescription(files.description) };
}

/** The file a (possibly symlinked) store path finally names; the path itself when that cannot be resolved. */
function finalTarget(storeFile: string): string {
  try {
    return realpathSync(storeFile);
  } catch {
    return storeFile;
  }
}

/** Whether `file` starts with the template store magic (a `model` that names a store). */
async function isStoreFile(file: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    return false;
  }
  try {
    const head = Buffer.alloc(STORE_MAGIC.length);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    return bytesRead === head.length && head.equals(STORE_MAGIC);
  } catch {
    return false;
  } finally {
    await handle.close();
  }
}

/**
 * Backbone.load, where `model` may also name a template store (its embedded
 * int8 backbone) or be the name of an embedded model this process or that
 * store holds (`<store>#int8-<sha256 prefix>`, a worker thread's model).
 * `modelBytes` given: loaded from them as they are.
 */
export async function loadBackbone(options: BackboneLoadOptions): Promise<Backbone> {
  const model = options.model;
  if (model === undefined || options.modelBytes !== undefined) return Backbone.load(options);
  const held = loadedModel(model);
  if (held !== undefined) return Backbone.load({ ...options, modelBytes: held.bytes, description: options.description ?? held.description });
  const named = /^(.*)#int8-([0-9a-f]{16})$/.exec(model);
  const storeFile = named === null ? model : named[1]!;
  if (named === null && !(await isStoreFile(model))) return Backbone.load(options);
  const embedded = await readStoreModel(storeFile);
  if (embedded === undefined) {
    throw new HetmmError('E_MODEL_NOT_FOUND', `template store '${storeFile}' does not embed a model (fitted with the float backbone, or written by an older hetmm)`);
  }
  if (named !== null && embedded.sha256.slice(0, 16) !== named[2]) {
    throw new HetmmError('E_STORE_MISMATCH', `template store '${storeFile}' now embeds another model (sha256 ${embedded.sha256.slice(0, 16)}..., expected ${named[2]}...): it was refitted; reopen it`);
  }
  return Backbone.load({
    ...options,
    model: embeddedModelName(storeFile, embedded),
    modelBytes: embedded.bytes,
    description: options.description ?? embedded.description,
  });
}
