/**
 * The data model of stored features, shared by the store (which holds them)
 * and the kernels (which match against them; ../kernels/contract.ts
 * re-exports these types). Defined here, in the lower layer, so the store
 * never imports the kernels.
 */
import { float16ArrayToFloat32 } from './float16.js';

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

/**
 * The features of template `index` of `layers` (one stack per layer), as
 * float32 [C, H, W] per layer: views of float32 data, decoded copies of
 * float16 (whose bits decode exactly and encode back to the same bits).
 */
export function templateFeatures(layers: readonly FeatureStack[], index: number): Float32Array[] {
  return layers.map((stack) => {
    const [, c, h, w] = stack.shape;
    const per = c * h * w;
    const slice = stack.data.subarray(index * per, (index + 1) * per);
    return slice instanceof Float32Array ? slice : float16ArrayToFloat32(slice);
  });
}
