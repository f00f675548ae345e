/**
 * The kernel contract: what a matching backend must compute. The plain
 * TypeScript reference (./reference) defines the semantics; a fast backend
 * (./fast) must agree with it within float32 rounding. Tensors are NCHW
 * everywhere in hetmm (the layout of the ONNX outputs and of the parity
 * fixtures), flat row-major typed arrays.
 */

export type { FeatureDType, FeatureStack } from '../store/feature-stack.js';
import type { FeatureStack } from '../store/feature-stack.js';
import type { PixelNormaliser } from '../backbone/backbone.js';

export type { PixelNormaliser } from '../backbone/backbone.js';

/** One query feature map, [C, H, W] float32 (a single image). */
export interface QueryMap {
  /** [C, H, W] */
  readonly shape: readonly [number, number, number];
  readonly data: Float32Array;
}

/** Per-pixel similarities for one layer, each [H*W], row-major. */
export interface MatchResult {
  /** Fwd(p) = max_t max_{p' in win_f(p)} <Q(p), T_t(p')> */
  readonly forward: Float32Array;
  /** Bwd(p) = max_t max_{p' in win_b(p)} <Q(p'), T_t(p)> */
  readonly backward: Float32Array;
}

export interface MatchOptions {
  /** odd forward window side f (radius f >> 1) */
  readonly forwardPatch: number;
  /** odd backward window side b */
  readonly backwardPatch: number;
}

/**
 * int8-quantised templates of one layer (the fast backend's int8 kernels;
 * layout and formula in ./fast/int8.ts).
 */
export interface Int8Templates {
  /** packed s8 words, [N][G][H][W][4] (N may exceed `count`: capacity) */
  readonly data: Int8Array;
  /** [N][H*W] */
  readonly scale: Float32Array;
  /** [N][H*W]: sum of the pixel's int8 values */
  readonly sum: Int32Array;
  /** templates quantised so far */
  readonly count: number;
  readonly groups: number;
  readonly height: number;
  readonly width: number;
}

/**
 * One layer's templates in shared memory (KernelBackend.shareLayer), sent to
 * other threads by postMessage without a copy: int8-quantised (a backend
 * matching in int8, for shapes its int8 kernel handles) or float.
 */
export type SharedLayer =
  | { readonly kind: 'int8'; readonly shape: readonly [number, number, number, number]; readonly templates: Int8Templates }
  | {
      readonly kind: 'float';
      readonly stack: FeatureStack;
      /** the instruction-set variant of the backend that shared it (a native backend's; absent: its default) */
      readonly variant?: string;
    };


/** A kernel backend. All methods may run off the main thread; inputs must not be mutated meanwhile. */
export interface KernelBackend {
  readonly name: string;
  /**
   * Forward and backward template matching of one query against all N
   * templates of a layer; windows clipped at the map border (no padding).
   */
  matchLayer(query: QueryMap, templates: FeatureStack, options: MatchOptions): Promise<MatchResult>;
  /** what matchLayer computes in: 'float' (absent = 'float') or 'int8' (approximate, see fast/int8.ts) */
  readonly precision?: MatchPrecision;
  /**
   * Capability: per-pixel Gram matrices for PTS, out[(p - p0)*N*N + i*N + j] =
   * <T_i(p), T_j(p)> for flat pixels p in [p0, p1), both halves (float32).
   * Absent: PTS computes the Gram in TypeScript (float64).
   */
  pixelGram?(stack: FeatureStack, p0: number, p1: number, out: Float32Array): Promise<void>;
  /**
   * Capability: per-pixel L2 normalisation of a [C, H, W] map (starting at
   * src[offset]) over C, into a new array; bit-identical to
   * l2NormalisePixels in src/backbone/backbone.ts. Absent: the backbone
   * uses that one. A map that does not fit src is HetmmError E_ARGUMENT.
   */
  readonly l2NormalisePixels?: PixelNormaliser;
  /**
   * Capability: shared-memory matching, for pipelines of one thread each
   * (src/detector/pipelines.ts). shareLayer puts the first N templates of a
   * layer into shared memory, ready for matching at this backend's precision
   * with window sizes `options`; matchSharedLayer matches one query against
   * such a layer synchronously on the calling thread (any thread the layer
   * was posted to, with the backend of the same name and precision loaded
   * there), with the same results as matchLayer. Both or neither.
   * `previous`: a layer this backend shared of the same templates' first
   * `previous` count (a store that grew by appends): only the new templates
   * are shared, into its memory when it has room (rows below its count,
   * which other threads may be matching, are never written), else into a
   * larger copy (capacity doubling).
   */
  shareLayer?(stack: FeatureStack, options: MatchOptions, previous?: SharedLayer): SharedLayer;
  matchSharedLayer?(layer: SharedLayer, query: QueryMap, options: MatchOptions): MatchResult;
  /**
   * Capability: matchLayer against the templates `indices` of `templates`
   * only (template preselection, src/selection/nearest-templates.ts), with
   * the result of matchLayer on a stack of just those templates, without
   * copying them. `indices`: at least one, each in [0, N) (a repeat changes
   * nothing: maxima). Absent: matchLayerAt (./subset.ts) gathers a copy.
   */
  matchLayerAt?(query: QueryMap, templates: FeatureStack, indices: Int32Array, options: MatchOptions): Promise<MatchResult>;
  /** Capability: matchSharedLayer against the templates `indices` of a shared layer (as matchLayerAt). */
  matchSharedLayerAt?(layer: SharedLayer, query: QueryMap, indices: Int32Array, options: MatchOptions): MatchResult;
}

/** Matching precision a backend is asked for (getBackend's `precision` option). */
export type MatchPrecision = 'float' | 'int8';

/** What a registered backend's loader is asked for. */
export interface BackendLoadOptions {
  readonly precision: MatchPrecision;
}
