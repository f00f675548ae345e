/**
 * The kernel contract: what a matching backend must compute. The plain
 * TypeScript reference (./reference) defines the semantics; a fast backend
 * (./fast) must agree with it within float32 rounding. Tensors are NCHW
 * everywhere in hetmm (the layout of the ONNX outputs and of the parity
 * fixtures), flat row-major typed arrays.
 */

export type { FeatureDType, FeatureStack } from '../store/feature-stack.js';
import type { FeatureStack } from '../store/feature-stack.js';

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
  /** what matchLayer computes in: 'float' (absent = 'float') or 'int8' (approximate, see fast/int8.ts) */
  readonly precision?: MatchPrecision;
  /**
   * Capability: per-pixel Gram matrices for PTS, out[(p - p0)*N*N + i*N + j] =
   * <T_i(p), T_j(p)> for flat pixels p in [p0, p1), both halves (float32).
   * Absent: PTS computes the Gram in TypeScript (float64).
   */
  pixelGram?(stack: FeatureStack, p0: number, p1: number, out: Float32Array): Promise<void>;
}

/** Matching precision a backend is asked for (getBackend's `precision` option). */
export type MatchPrecision = 'float' | 'int8';

/** What a registered backend's loader is asked for. */
export interface BackendLoadOptions {
  readonly precision: MatchPrecision;
}
