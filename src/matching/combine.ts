/**
 * ATMM combination of the per-layer similarity maps into one anomaly map:
 *   S = sum_l lambda_l * (alpha_l * up(1 - Fwd_l) + (1 - alpha_l) * up(1 - Bwd_l))
 * with up = bilinear align_corners=true resize to the output size. Resizing is
 * linear, so each layer's weighted low-resolution map is resized once.
 */
import { HetmmError } from '../errors.js';
import { upsampleBilinearAlignCorners } from './upsample.js';

export interface LayerMaps {
  /** forward similarity, max over templates, [height*width] */
  readonly forward: ArrayLike<number>;
  /** backward similarity, max over templates, [height*width] */
  readonly backward: ArrayLike<number>;
  readonly height: number;
  readonly width: number;
  readonly alpha: number;
  readonly lambda: number;
}

export function combineLayers(layers: readonly LayerMaps[], outH: number, outW: number): Float32Array {
  if (layers.length === 0) throw new HetmmError('E_ARGUMENT', 'Expected at least one layer to combine but received none');
  const total = new Float64Array(outH * outW);
  layers.forEach((l, index) => {
    const size = l.height * l.width;
    if (l.forward.length < size || l.backward.length < size) {
      throw new HetmmError(
        'E_ARGUMENT',
        `Layer ${index + 1}: expected ${l.height}x${l.width} = ${size} forward and backward values but received ${l.forward.length} and ${l.backward.length}`,
      );
    }
    const low = new Float64Array(size);
    for (let i = 0; i < size; i++) {
      low[i] = l.lambda * (l.alpha * (1 - l.forward[i]) + (1 - l.alpha) * (1 - l.backward[i]));
    }
    const up = upsampleBilinearAlignCorners(low, l.height, l.width, outH, outW);
    for (let i = 0; i < up.length; i++) total[i] += up[i];
  });
  return Float32Array.from(total);
}
