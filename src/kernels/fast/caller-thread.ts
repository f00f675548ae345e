/**
 * Matching on the calling thread, for pipelines that each own one core
 * (src/detector/pipelines.ts): N worker threads of one process, each
 * decoding, running a 1-thread backbone and matching its own image. The
 * pooled kernels (./index.ts) would make them take turns on the one global
 * kernel pool (one job at a time, a barrier per call); matchLayerHere /
 * matchLayerInt8Here (native/hetmm_native.c) run the same kernels, with the
 * same results, single-threaded on the caller's thread with its own scratch.
 *
 * The templates are shared between the pipelines, not copied per thread:
 * shareLayer (on the thread that holds the store) puts one copy into
 * SharedArrayBuffers, already int8-quantised when matching in int8, and
 * worker threads receive views of that memory through postMessage.
 */
import { HetmmError } from '../../errors.js';
import type { FeatureStack, MatchOptions, MatchPrecision, MatchResult, QueryMap, SharedLayer } from '../contract.js';
import { validateMatchInputs } from '../reference/match.js';
import { checkTemplateIndices } from '../subset.js';
import { shareFloatLayer, sharedCopy } from '../reference/shared.js';
import { NATIVE_VARIANTS, type NativeBinding, type NativeVariant } from './binding.js';
import { alignedBytes, int8Supports, quantizeQueryInt8, quantizeTemplatesInt8, type ByteAllocator, type MapQuantizer } from './int8.js';

/** The addon's quantiser as a MapQuantizer. */
export function nativeQuantizer(binding: NativeBinding): MapQuantizer {
  return (src, channels, hw, out, scale, sums, offsetBy) => binding.quantizeInt8(src, channels, hw, out, scale, sums ?? null, offsetBy);
}

/**
 * The first `stack.shape[0]` templates of one layer in shared memory, for
 * matching at `precision` with window sizes `options`. int8 (when the native
 * int8 kernel handles the shape): quantised straight into shared memory, about
 * a quarter of the float32 bytes. Float: one copy of the features.
 */
export function shareLayer(
  binding: NativeBinding,
  variant: NativeVariant,
  precision: MatchPrecision,
  stack: FeatureStack,
  options: MatchOptions,
  previous?: SharedLayer,
): SharedLayer {
  const [n, c, h, w] = stack.shape;
  if (precision === 'int8' && int8Supports(w, options)) {
    if (binding.info().int8 !== true) throw new HetmmError('E_BACKEND', 'int8 matching needs a CPU with AVX-512 VNNI');
    const offsetOf = binding.alignmentOffset.bind(binding);
    const sharedBytes: ByteAllocator = alignedBytes((array) => offsetOf(array), (bytes) => new Uint8Array(new SharedArrayBuffer(bytes)));
    const view = stack.data.subarray(0, n * c * h * w);
    // the templates quantised before are kept; new ones go past their count (a reader's rows are never written)
    const before = previous?.kind === 'int8' && previous.shape[1] === c && previous.shape[2] === h && previous.shape[3] === w && previous.shape[0] <= n ? previous.templates : undefined;
    const q = quantizeTemplatesInt8({ ...stack, data: view }, before, nativeQuantizer(binding), sharedBytes);
    // a grown copy's scales and sums are plain arrays: shared once, then extended in place
    const scale = q.scale.buffer instanceof SharedArrayBuffer ? q.scale : sharedCopy(q.scale);
    const sum = q.sum.buffer instanceof SharedArrayBuffer ? q.sum : sharedCopy(q.sum);
    return { kind: 'int8', shape: [n, c, h, w], templates: { ...q, scale, sum } };
  }
  return { ...shareFloatLayer(stack, previous), variant };
}

/** The addon's query quantiser and aligned allocator, made once per thread: matchSharedLayer runs per layer per image. */
let tools: readonly [MapQuantizer, ByteAllocator] | undefined;
function queryTools(binding: NativeBinding): readonly [MapQuantizer, ByteAllocator] {
  tools ??= [nativeQuantizer(binding), alignedBytes((array) => binding.alignmentOffset(array))];
  return tools;
}

/**
 * Matches one query map against a shared layer on this thread, synchronously
 * (same results as the fast backend's matchLayer at the layer's precision).
 * Float layers run the instruction-set variant of the backend that shared
 * them (`variant` when they name none).
 */
export function matchSharedLayer(
  binding: NativeBinding,
  variant: NativeVariant,
  layer: SharedLayer,
  query: QueryMap,
  options: MatchOptions,
  /** match only these templates of the layer (matchSharedLayerAt) */
  indices?: Int32Array,
): MatchResult {
  const rf = options.forwardPatch >> 1;
  const rb = options.backwardPatch >> 1;
  if (indices !== undefined) checkTemplateIndices(indices, layer.kind === 'int8' ? layer.shape[0] : layer.stack.shape[0]);
  if (layer.kind === 'int8') {
    const [stored, c, h, w] = layer.shape;
    const n = indices?.length ?? stored;
    if (query.shape[0] !== c || query.shape[1] !== h || query.shape[2] !== w || query.data.length < c * h * w || !int8Supports(w, options)) {
      throw new HetmmError('E_ARGUMENT', `query [${query.shape.join(', ')}] does not fit int8 templates [${layer.shape.join(', ')}]`);
    }
    const forward = new Float32Array(h * w);
    const backward = new Float32Array(h * w);
    const [quantizer, allocate] = queryTools(binding);
    const q8 = quantizeQueryInt8(query, quantizer, allocate);
    const t = layer.templates;
    binding.matchLayerInt8Here(q8.data, q8.scale, t.data, t.scale, t.sum, n, q8.groups, h, w, rf, rb, forward, backward, indices);
    return { forward, backward };
  }
  validateMatchInputs(query, layer.stack);
  const [stored, c, h, w] = layer.stack.shape;
  const n = indices?.length ?? stored;
  const forward = new Float32Array(h * w);
  const backward = new Float32Array(h * w);
  const shared = layer.variant;
  const kernels = shared !== undefined && (NATIVE_VARIANTS as readonly string[]).includes(shared) ? (shared as NativeVariant) : variant;
  // indices index the layer's own templates: no more of its array than its N
  const data = layer.stack.data.subarray(0, stored * c * h * w);
  binding.matchLayerHere(kernels, query.data, data, n, c, h, w, rf, rb, forward, backward, indices);
  return { forward, backward };
}
