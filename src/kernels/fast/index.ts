/**
 * The fast CPU backend: the native addon's SIMD + multi-threaded kernels
 * behind the KernelBackend contract. Arguments are validated here, in
 * TypeScript, before the native call (the addon trusts its caller for
 * semantics and only guards memory safety).
 *
 *   const fast = await loadFastBackend();          // best variant for this CPU
 *   const { forward, backward } = await fast.matchLayer(query, templates, { forwardPatch: 5, backwardPatch: 3 });
 *
 * Variant choice: options.variant, else HETMM_FAST_VARIANT, else the best the
 * CPU supports ('avx512' > 'avx2' > 'generic'). Threads: setting('threads')
 * (configure({ threads }) or HETMM_THREADS), passed to the addon once, when
 * it loads (./binding.ts; default: number of CPUs).
 *
 * Precision: options.precision, else 'float' (the registry in ../registry.ts
 * passes HETMM_MATCH_PRECISION here).
 * 'int8' (opt-in, AVX-512 VNNI CPUs) quantises query and templates per pixel
 * vector (./int8.ts) and runs matchLayer several times faster, with a small
 * similarity error (figures: docs/PERFORMANCE.md); shapes it does not
 * handle (width not a multiple of 16, windows over 15) use the float kernel
 * of the chosen variant. int8 always runs AVX-512 VNNI code.
 */
import { setting, settingSource } from '../../config.js';
import { HetmmError } from '../../errors.js';
import type { FeatureStack, KernelBackend, MatchOptions, MatchPrecision, MatchResult, PixelNormaliser, QueryMap, SharedLayer } from '../contract.js';
import { validateGramInputs } from '../reference/gram.js';
import { validateMatchInputs } from '../reference/match.js';
import { checkTemplateIndices } from '../subset.js';
import { checkNormaliseInputs } from '../reference/shared.js';
import { NATIVE_VARIANTS, loadBinding, type NativeBinding, type NativeVariant } from './binding.js';
import { matchSharedLayer, nativeQuantizer, shareLayer } from './caller-thread.js';
import { alignedBytes, Int8TemplateCache, int8Supports, quantizeQueryInt8, type MapQuantizer } from './int8.js';

export { NATIVE_VARIANTS, type NativeVariant } from './binding.js';
export type { SharedLayer } from '../contract.js';
export {
  Int8TemplateCache,
  matchLayerInt8Reference,
  quantizeQueryInt8,
  quantizeTemplatesInt8,
  quantizeMapReference,
  type Int8Query,
  type MapQuantizer,
  type Int8Templates,
} from './int8.js';

export interface FastBackend extends KernelBackend {
  readonly name: 'fast';
  /** the instruction-set variant this backend instance runs */
  readonly variant: NativeVariant;
  /** every variant this CPU supports, best first */
  readonly supportedVariants: readonly NativeVariant[];
  /** kernel thread-pool size */
  readonly threads: number;
  /** 'int8': matchLayer on int8-quantised maps where supported (see the module comment) */
  readonly precision: MatchPrecision;
  /** Per-pixel Gram matrices for PTS (the contract's pixelGram capability); same result as ../reference/gram.ts within float32 rounding. */
  pixelGram(stack: FeatureStack, p0: number, p1: number, out: Float32Array): Promise<void>;
  /** l2NormalisePixels (src/backbone/backbone.ts) in native code (native/pixel_norm.c), bit-identical results */
  readonly l2NormalisePixels: PixelNormaliser;
  /** shared-memory matching (the contract's capability), int8-quantised where matchLayer matches in int8 */
  shareLayer(stack: FeatureStack, options: MatchOptions, previous?: SharedLayer): SharedLayer;
  /** matchLayerHere / matchLayerInt8Here: synchronous, single-threaded, on the calling thread */
  matchSharedLayer(layer: SharedLayer, query: QueryMap, options: MatchOptions): MatchResult;
  /** matchLayer / matchSharedLayer against some templates: the indices go to the kernels (no copy) */
  matchLayerAt(query: QueryMap, templates: FeatureStack, indices: Int32Array, options: MatchOptions): Promise<MatchResult>;
  matchSharedLayerAt(layer: SharedLayer, query: QueryMap, indices: Int32Array, options: MatchOptions): MatchResult;
}

export type { MatchPrecision } from '../contract.js';

export interface FastBackendOptions {
  /** force an instruction-set variant (tests, benchmarks); must be supported by this CPU */
  readonly variant?: NativeVariant;
  /** matching precision; default 'float' */
  readonly precision?: MatchPrecision;
}

function choosePrecision(binding: NativeBinding, requested: string | undefined, source: string): MatchPrecision {
  if (requested === undefined || requested === '' || requested === 'float') return 'float';
  if (requested !== 'int8') throw new HetmmError('E_ARGUMENT', `Expected float or int8 for ${source} but received "${requested}"`);
  if (binding.info().int8 !== true) {
    throw new HetmmError('E_BACKEND', `int8 matching (${source}) needs a CPU with AVX-512 VNNI`);
  }
  return 'int8';
}

function checkPatch(name: string, patch: unknown): number {
  if (typeof patch !== 'number' || !Number.isInteger(patch) || patch < 1 || patch % 2 === 0) {
    throw new HetmmError('E_ARGUMENT', `Expected an odd positive integer for ${name} but received ${String(patch)}`);
  }
  return patch;
}

function isVariant(v: string): v is NativeVariant {
  return (NATIVE_VARIANTS as readonly string[]).includes(v);
}

function chooseVariant(binding: NativeBinding, requested: string | undefined, source: string): NativeVariant {
  const info = binding.info();
  if (requested === undefined || requested === '') return info.variant;
  if (!isVariant(requested)) {
    throw new HetmmError('E_ARGUMENT', `Expected one of ${NATIVE_VARIANTS.join(', ')} for ${source} but received "${requested}"`);
  }
  if (!info.variants.includes(requested)) {
    throw new HetmmError(
      'E_BACKEND',
      `The "${requested}" kernel variant (${source}) is not supported by this CPU (supported: ${info.variants.join(', ')})`,
    );
  }
  return requested;
}

/** Native rejections become HetmmError('E_BACKEND'); the caller's stack is kept for context. */
async function callNative(what: string, run: () => Promise<void>): Promise<void> {
  const callerStack = new Error().stack;
  try {
    await run();
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    const err = new HetmmError('E_BACKEND', `fast backend ${what} failed: ${reason}`, { cause: e });
    if (callerStack !== undefined) err.stack = `${err.name}: ${err.message}\n${callerStack.split('\n').slice(1).join('\n')}`;
    throw err;
  }
}

function makeBackend(binding: NativeBinding, variant: NativeVariant, precision: MatchPrecision): FastBackend {
  const info = binding.info();
  const quantize: MapQuantizer = nativeQuantizer(binding);
  const allocate = alignedBytes((array) => binding.alignmentOffset(array));
  const int8Cache = new Int8TemplateCache(quantize, allocate);
  /** matchLayer, against templates `indices` only when given (checked by the caller). */
  async function match(query: QueryMap, templates: FeatureStack, options: MatchOptions, indices: Int32Array | undefined): Promise<MatchResult> {
    const forwardPatch = checkPatch('forwardPatch', options.forwardPatch);
    const backwardPatch = checkPatch('backwardPatch', options.backwardPatch);
    validateMatchInputs(query, templates);
    const [stored, c, h, w] = templates.shape;
    const n = indices?.length ?? stored;
    const forward = new Float32Array(h * w);
    const backward = new Float32Array(h * w);
    if (precision === 'int8' && int8Supports(w, options)) {
      const q8 = quantizeQueryInt8(query, quantize, allocate);
      const t8 = int8Cache.get(templates);
      const matchInt8 = binding.matchLayerInt8.bind(binding);
      await callNative('matchLayerInt8', () =>
        matchInt8(q8.data, q8.scale, t8.data, t8.scale, t8.sum, n, q8.groups, h, w, forwardPatch >> 1, backwardPatch >> 1, forward, backward, indices),
      );
      return { forward, backward };
    }
    // indices index the stack's own templates: no more of its array than its N
    const data = indices === undefined ? templates.data : templates.data.subarray(0, stored * c * h * w);
    await callNative('matchLayer', () =>
      binding.matchLayer(variant, query.data, data, n, c, h, w, forwardPatch >> 1, backwardPatch >> 1, forward, backward, indices),
    );
    return { forward, backward };
  }
  return {
    name: 'fast',
    variant,
    supportedVariants: info.variants,
    threads: info.threads,
    precision,

    matchLayer: (query, templates, options) => match(query, templates, options, undefined),

    matchLayerAt: (query, templates, indices, options) => {
      try {
        checkTemplateIndices(indices, templates.shape[0]);
      } catch (e) {
        return Promise.reject(e);
      }
      return match(query, templates, options, indices);
    },

    async pixelGram(stack: FeatureStack, p0: number, p1: number, out: Float32Array): Promise<void> {
      validateGramInputs(stack, p0, p1, out);
      // the native kernel writes float32 only (the reference also takes float64)
      if (!(out instanceof Float32Array)) throw new HetmmError('E_ARGUMENT', 'Expected a Float32Array for out');
      if (p1 === p0) return;
      const [n, c, h, w] = stack.shape;
      await callNative('pixelGram', () => binding.pixelGram(variant, stack.data, n, c, h, w, p0, p1, out));
    },

    l2NormalisePixels: (src, channels, height, width, offset = 0) => {
      const size = checkNormaliseInputs(src, channels, height, width, offset);
      const out = new Float32Array(size);
      binding.l2NormalizePixels(src, offset, channels, height * width, out);
      return out;
    },

    shareLayer: (stack, options, previous) => shareLayer(binding, variant, precision, stack, options, previous),

    matchSharedLayer: (layer, query, options) => matchSharedLayer(binding, variant, layer, query, options),

    matchSharedLayerAt: (layer, query, indices, options) => matchSharedLayer(binding, variant, layer, query, options, indices),
  };
}

/**
 * Loads the native addon and returns the fast backend. Throws
 * HetmmError('E_BACKEND') with the reason and the command that fixes it when
 * the addon is missing or broken (the registry then falls back to the
 * reference backend with a warning).
 */
export async function loadFastBackend(options: FastBackendOptions = {}): Promise<FastBackend> {
  const binding = loadBinding();
  const variant =
    options.variant !== undefined
      ? chooseVariant(binding, options.variant, 'options.variant')
      : chooseVariant(binding, setting('fastVariant'), settingSource('fastVariant'));
  const precision =
    options.precision !== undefined
      ? choosePrecision(binding, options.precision, 'options.precision')
      : 'float';
  return makeBackend(binding, variant, precision);
}
