/**
 * The line service: the one place that decides how a template store is
 * opened as a line (a store + the backbone that made its features + a
 * matching backend + a preset). Detector.open runs it, and every door goes
 * through Detector.open: the CLI (predict, add, compress, eval --templates),
 * the library, the in-process server, queue workers, fitStore and eval.
 *
 * The rules, each written once:
 * - backbone: `model` when given; else a store fitted int8 end to end runs
 *   its own int8 backbone: embedded in the store (format version 3), or
 *   from beside its file for a version 2 store (./store-backbone.ts says
 *   where that model comes from); else the default float model. Told
 *   precision 'float', an int8 store is refused (E_STORE_MISMATCH: its
 *   features are the int8 backbone's).
 * - matching precision (lineMatchPrecision), first that applies: the store's
 *   need is met by the next three; told (matchPrecision, else precision);
 *   HETMM_MATCH_PRECISION; an int8 store matches in int8 where the backend
 *   can here (AVX-512 VNNI); else float. Calibration matches as the line
 *   will (calibrate.ts uses the detector's own backend), so a threshold is
 *   calibrated on the scores predictions compute.
 * - backend: `backend`, else 'auto' (the registry applies HETMM_BACKEND).
 * - preset: `preset`, else the one the store was fitted with, else 'default'.
 * - template selection (match each query against its k nearest templates,
 *   src/selection/nearest-templates.ts): `templateSelection` (null: none),
 *   else the store's meta.templateSelection, else none (exact ATMM over all
 *   templates).
 */
import type { Backbone, PixelNormaliser } from '../backbone/backbone.js';
import type { BackboneDescription, BackboneIdentity } from '../backbone/description.js';
import { setting } from '../config.js';
import { HetmmError } from '../errors.js';
import type { FeatureDType, KernelBackend, MatchPrecision } from '../kernels/contract.js';
import { getBackend, type BackendPreference } from '../kernels/index.js';
import { resolvePreset, validatePreset, type Preset } from '../matching/index.js';
import { resolveTemplateSelection, type TemplateSelection } from '../selection/nearest-templates.js';
import { TemplateStore } from '../store/index.js';
import { readStoreMeta } from '../store/peek.js';
import { embeddedModelName, int8BackboneName, loadBackbone, storeBackboneFiles } from './store-backbone.js';
import { checkedPreset } from './validate.js';

/** Everything Detector.open takes. */
export interface DetectorOptions {
  /** a template store file, a loaded store, or undefined for a new empty store (fill it with `add`) */
  readonly store?: string | TemplateStore;
  /** element type of a new store's features; default 'float32' (a loaded store keeps its own) */
  readonly dtype?: FeatureDType;
  /** ONNX model path (default: --model / HETMM_MODEL / the shipped ResNet50-v2) */
  readonly model?: string;
  readonly backboneDescription?: BackboneDescription;
  /** a Preset or a preset name ('default', an MVTec category); default 'default' */
  readonly preset?: Preset | string;
  /** kernel backend; default 'auto' (fast when it loads, else reference with a warning) */
  readonly backend?: BackendPreference;
  /** onnxruntime threads */
  readonly threads?: number;
  /**
   * 'int8': match with the fast backend's int8 VNNI kernels (faster, scores
   * within ~2e-3 of float; the figures: docs/PERFORMANCE.md "int8 matching").
   * Default: HETMM_MATCH_PRECISION, else int8 for a store fitted int8 end
   * to end where the CPU has AVX-512 VNNI, else 'float' (src/detector/line.ts).
   */
  readonly matchPrecision?: 'float' | 'int8';
  /** decoder pixel limit per image (default 64 Mpx; README "Inputs" gives the memory it implies) */
  readonly maxPixels?: number;
  /**
   * The whole pipeline's precision: 'int8' matches in int8 (as
   * matchPrecision) and, when `model` is not given and the store file was
   * fitted in int8 (the default of fitStore and `hetmm fit`: its meta names
   * an int8 backbone beside it, ./store-backbone.ts), runs that int8
   * backbone. matchPrecision, when given, overrides the matching part.
   * Default: the store's own, so a store fitted in int8 runs int8 end to end
   * without being told (int8 matching where the CPU has AVX-512 VNNI, float
   * matching otherwise); 'float' with such a store is refused
   * (E_STORE_MISMATCH: its features are the int8 backbone's). A store whose
   * int8 backbone files are missing: E_MODEL_NOT_FOUND naming them.
   */
  readonly precision?: 'float' | 'int8';
  /**
   * Match each query against its k nearest templates by a global
   * descriptor instead of all N (docs/PERFORMANCE.md, "Template
   * preselection"). null: exact ATMM over all templates even when the store
   * asks for selection. Default: the store's meta.templateSelection, else exact.
   */
  readonly templateSelection?: TemplateSelection | null;
}

/** What a line is made of, as Detector.open assembles it. */
export interface LineParts {
  readonly backbone: Backbone;
  readonly backend: KernelBackend;
  readonly store: TemplateStore;
  readonly preset: Preset;
  /** the store file the line was opened from (its appends go there) */
  readonly storeFile: string | undefined;
  /** undefined: exact ATMM over all templates */
  readonly selection: Required<TemplateSelection> | undefined;
}

/**
 * The matching precision of a line (see the module comment for the order).
 * undefined: HETMM_MATCH_PRECISION is set, and the backend registry applies
 * it (and refuses a bad value naming the variable).
 */
export async function lineMatchPrecision(
  options: Pick<DetectorOptions, 'matchPrecision' | 'precision' | 'backend'>,
  storeInt8: boolean,
): Promise<MatchPrecision | undefined> {
  const told = options.matchPrecision ?? options.precision;
  if (told !== undefined) return told;
  if (setting('matchPrecision') !== undefined) return undefined;
  return storeInt8 ? ((await canMatchInt8(options.backend)) ? 'int8' : 'float') : 'float';
}

/** Whether `backend` can match in int8 on this machine (AVX-512 VNNI and the fast addon). */
async function canMatchInt8(backend: BackendPreference | undefined): Promise<boolean> {
  try {
    await getBackend(backend ?? 'auto', { precision: 'int8' });
    return true;
  } catch (e) {
    if (e instanceof HetmmError && e.code === 'E_BACKEND') return false;
    throw e;
  }
}

/**
 * The int8 backbone a store file runs, when it was fitted int8 end to end
 * and nothing else is asked for (no `model`, precision not 'float'); a
 * missing file is E_MODEL_NOT_FOUND naming it.
 */
export function lineInt8Backbone(storeFile: string, meta: Record<string, unknown>, options: Pick<DetectorOptions, 'model' | 'precision'>): string | undefined {
  if (options.model !== undefined || options.precision === 'float') return undefined;
  return storeBackboneFiles(storeFile, meta)?.model;
}

/**
 * Detector.open's options for a store file served by a long-running process
 * (the in-process server, queue workers): their `model` is the float
 * backbone of float stores and of new lines, not an override, so a store
 * fitted int8 end to end still runs its own int8 backbone (`int8`), unless
 * told precision 'float' (which then refuses it).
 */
export async function servedLineOptions(file: string, options: DetectorOptions): Promise<{ options: DetectorOptions; int8: boolean }> {
  const { model, ...rest } = options;
  const int8 = lineInt8Backbone(file, await readStoreMeta(file), rest) !== undefined;
  return { options: { ...(int8 || model === undefined ? rest : { ...rest, model }), store: file }, int8 };
}

/** Opens the parts of a line (Detector.open's work; options already validated). */
export async function openLineParts(options: DetectorOptions): Promise<LineParts> {
  // A store fitted with an int8 backbone carries it (or names it beside its file); read the store first to find it.
  let preloaded: TemplateStore | undefined;
  let unreadable: unknown;
  let model = options.model;
  let modelBytes: Uint8Array | undefined;
  let description = options.backboneDescription;
  let storeInt8 = false;
  if (model === undefined && options.precision !== 'float' && typeof options.store === 'string') {
    // An unreadable store is reported after the backbone's own errors, as without this peek.
    preloaded = await TemplateStore.load(options.store).catch((e: unknown) => {
      unreadable = e;
      return undefined;
    });
  }
  const fitted = preloaded ?? (options.store instanceof TemplateStore ? options.store : undefined);
  if (model === undefined && options.precision !== 'float' && fitted?.model !== undefined) {
    // the int8 backbone embedded in the store (format version 3)
    model = embeddedModelName(typeof options.store === 'string' ? options.store : undefined, fitted.model);
    modelBytes = fitted.model.bytes;
    description ??= fitted.model.description;
    storeInt8 = true;
  } else if (preloaded !== undefined && typeof options.store === 'string') {
    // a version 2 store's sidecar files; copied without them: E_MODEL_NOT_FOUND naming the missing file
    const sidecar = lineInt8Backbone(options.store, preloaded.meta, options);
    if (sidecar !== undefined) {
      model = sidecar;
      storeInt8 = true;
    }
  }
  const backbone = await loadBackbone({ model, ...(modelBytes === undefined ? {} : { modelBytes }), description, threads: options.threads });
  try {
    if (unreadable !== undefined) throw unreadable;
    // a loaded store that says it is int8 (compress's recalibration of a version 2 store) matches as one
    storeInt8 ||= typeof options.store === 'object' && int8BackboneName(options.store.meta) !== undefined;
    const precision = await lineMatchPrecision(options, storeInt8);
    const backend = await getBackend(options.backend ?? 'auto', { precision });
    const nativeNormaliser = (backend as { l2NormalisePixels?: PixelNormaliser }).l2NormalisePixels;
    if (nativeNormaliser !== undefined) backbone.usePixelNormaliser(nativeNormaliser);
    let store: TemplateStore;
    if (options.store === undefined) store = TemplateStore.create(backbone.identity, { dtype: options.dtype });
    else if (preloaded !== undefined) store = preloaded;
    else if (typeof options.store === 'string') store = await TemplateStore.load(options.store, { expect: backbone.identity });
    else {
      store = options.store;
      if (model === undefined && store.model === undefined && int8BackboneName(store.meta) !== undefined && store.identity.modelSha256 !== backbone.identity.modelSha256) {
        throw new HetmmError(
          'E_STORE_MISMATCH',
          `this store was fitted int8 end to end with the int8 backbone ${int8BackboneName(store.meta)} beside its file: ` +
            'open it by file name (options.store as a path) or pass that model (options.model)',
        );
      }
    }
    assertSameBackbone(store.identity, backbone.identity);
    // A store remembers the preset it was fitted (and calibrated) with.
    const preset = options.preset !== undefined ? checkedPreset(options.preset, 'options.preset') : presetFromMeta(store.meta.preset) ?? resolvePreset('default');
    const selection = lineTemplateSelection(options.templateSelection, store.meta, store.layerCount);
    return { backbone, backend, store, preset, storeFile: typeof options.store === 'string' ? options.store : undefined, selection };
  } catch (e) {
    backbone.dispose();
    throw e;
  }
}

/**
 * A line's template selection: told (null: none), else the store's
 * meta.templateSelection (an invalid one is a store problem, E_STORE_FORMAT),
 * else none.
 */
export function lineTemplateSelection(
  told: TemplateSelection | null | undefined,
  meta: Record<string, unknown>,
  layers: number,
): Required<TemplateSelection> | undefined {
  if (told === null) return undefined;
  if (told !== undefined) return resolveTemplateSelection(told, layers, 'options.templateSelection');
  const stored = meta.templateSelection;
  if (stored === undefined || stored === null) return undefined;
  try {
    return resolveTemplateSelection(stored, layers, 'the store\'s templateSelection');
  } catch (e) {
    throw new HetmmError('E_STORE_FORMAT', e instanceof Error ? e.message : String(e));
  }
}

/** The preset a store was fitted with; one this hetmm does not know is a store problem (exit 4), not a usage error. */
export function presetFromMeta(value: unknown): Preset | undefined {
  if (typeof value === 'string') {
    try {
      return resolvePreset(value);
    } catch (e) {
      throw new HetmmError('E_STORE_FORMAT', `the store names preset ${JSON.stringify(value)}, which this hetmm does not know (${e instanceof Error ? e.message : String(e)}); pass --preset`);
    }
  }
  if (typeof value !== 'object' || value === null) return undefined;
  try {
    validatePreset(value as Preset);
    return value as Preset;
  } catch (e) {
    throw new HetmmError('E_STORE_FORMAT', `the store's preset is invalid: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export function assertSameBackbone(store: BackboneIdentity, backbone: BackboneIdentity): void {
  if (store.modelSha256 !== backbone.modelSha256) {
    throw new HetmmError(
      'E_STORE_MISMATCH',
      `the template store was built with backbone ${store.name} (sha256 ${store.modelSha256.slice(0, 12)}…), ` +
        `but the loaded model is ${backbone.name} (sha256 ${backbone.modelSha256.slice(0, 12)}…); refit the store with this model`,
    );
  }
}
