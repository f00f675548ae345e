/**
 * The data model of stored features, shared by the store (which holds them)
 * and the kernels (which match against them; ../kernels/contract.ts
 * re-exports these types). Defined here, in the lower layer, so the store
 * never imports the kernels.
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
