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

/**
 * The first N templates of `stack` (its shape), float, in shared memory.
 * `previous` (the same templates' first ones, shared earlier): only the new
 * rows are copied, past its count in its buffer when it has room, else into
 * a buffer of twice its capacity (KernelBackend.shareLayer).
 */
export function shareFloatLayer(stack: FeatureStack, previous?: SharedLayer): SharedLayer & { kind: 'float' } {
  const [n, c, h, w] = stack.shape;
  const per = c * h * w;
  const src = stack.data.subarray(0, n * per);
  const before = previous?.kind === 'float' && previous.stack.dtype === stack.dtype && sameShape(previous.stack.shape, stack.shape) ? previous.stack : undefined;
  const from = before === undefined || before.shape[0] > n ? 0 : before.shape[0];
  if (from === 0 || before === undefined) return { kind: 'float', stack: { dtype: stack.dtype, shape: [n, c, h, w], data: sharedCopy(src) } };
  const Ctor = src.constructor as new (buffer: SharedArrayBuffer | ArrayBufferLike, offset?: number, length?: number) => typeof src;
  const buffer = before.data.buffer;
  const capacity = buffer.byteLength / src.BYTES_PER_ELEMENT / per;
  let whole: typeof src;
  if (capacity >= n && before.data.byteOffset === 0) {
    whole = new Ctor(buffer, 0, n * per);
  } else {
    whole = new Ctor(new SharedArrayBuffer(Math.max(n, 2 * from) * per * src.BYTES_PER_ELEMENT), 0, n * per);
    whole.set(before.data.subarray(0, from * per) as never);
  }
  whole.set(src.subarray(from * per) as never, from * per);
  return { kind: 'float', stack: { dtype: stack.dtype, shape: [n, c, h, w], data: whole } };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}

/** Checks l2NormalisePixels' arguments: a [channels, height, width] map at `offset` must fit `src`. Returns its size. */
export function checkNormaliseInputs(src: Float32Array, channels: number, height: number, width: number, offset: number): number {
  const size = channels * height * width;
  if (!(src instanceof Float32Array) || !Number.isInteger(offset) || offset < 0 || offset + size > src.length || !(size > 0) || !Number.isInteger(size)) {
    throw new HetmmError('E_ARGUMENT', `l2NormalisePixels: a [${channels}, ${height}, ${width}] map at offset ${offset} does not fit the source`);
  }
  return size;
}
