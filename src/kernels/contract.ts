/**
 * The kernel contract: what a matching backend must compute. The plain
 * TypeScript reference (./reference) defines the semantics; a fast backend
 * (./fast) must agree with it within float32 rounding. Tensors are NCHW
 * everywhere in hetmm (the layout of the ONNX outputs and of the parity
 * fixtures), flat row-major typed arrays.
 */

/** Element type of stored template features. float16 values are raw IEEE half bits. */
export type FeatureDType = 'float32' | 'float16';

/** A stack of N feature maps of one layer, NCHW, each pixel vector L2-normalised over C. */
export interface FeatureStack {
  readonly dtype: FeatureDType;
  /** [N, C, H, W] */
  readonly shape: readonly [number, number, number, number];
  /** length >= N*C*H*W; only the first N*C*H*W elements are read (stores grow in place). */
  readonly data: Float32Array | Uint16Array;
}

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

/** A kernel backend. All methods may run off the main thread; inputs must not be mutated meanwhile. */
export interface KernelBackend {
  readonly name: string;
  /**
   * Forward and backward template matching of one query against all N
   * templates of a layer; windows clipped at the map border (no padding).
   */
  matchLayer(query: QueryMap, templates: FeatureStack, options: MatchOptions): Promise<MatchResult>;
}
