/**
 * Pieces of the kernel contract's capabilities that every backend shares:
 * shared-memory copies of template layers (KernelBackend.shareLayer) and the
 * argument check of l2NormalisePixels.
 */
import { HetmmError } from '../../errors.js';
import type { FeatureStack, SharedLayer } from '../contract.js';

/** A copy of `a` in a SharedArrayBuffer of its own. */
export function sharedCopy<T extends Float32Array | Uint16Array | Int32Array>(a: T): T {
  const Ctor = a.constructor as new (buffer: SharedArrayBuffer, offset?: number, length?: number) => T;
  const copy = new Ctor(new SharedArrayBuffer(a.byteLength), 0, a.length);
  copy.set(a as never);
  return copy;
}

/** The first N templates of `stack` (its shape), float, in shared memory. */
export function shareFloatLayer(stack: FeatureStack): SharedLayer & { kind: 'float' } {
  const [n, c, h, w] = stack.shape;
  return { kind: 'float', stack: { dtype: stack.dtype, shape: [n, c, h, w], data: sharedCopy(stack.data.subarray(0, n * c * h * w)) } };
}

/** Checks l2NormalisePixels' arguments: a [channels, height, width] map at `offset` must fit `src`. Returns its size. */
export function checkNormaliseInputs(src: Float32Array, channels: number, height: number, width: number, offset: number): number {
  const size = channels * height * width;
  if (!(src instanceof Float32Array) || !Number.isInteger(offset) || offset < 0 || offset + size > src.length || !(size > 0) || !Number.isInteger(size)) {
    throw new HetmmError('E_ARGUMENT', `l2NormalisePixels: a [${channels}, ${height}, ${width}] map at offset ${offset} does not fit the source`);
  }
  return size;
}
