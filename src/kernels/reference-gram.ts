/**
 * Plain TypeScript reference of the per-pixel Gram kernel used by PTS
 * (pixel-level template selection): for a FeatureStack [N, C, H, W] and flat
 * pixel indices p in [p0, p1),
 *   out[(p - p0)*N*N + i*N + j] = sum_c T_i[c][p] * T_j[c][p]
 * Both halves of each symmetric N x N matrix are written. Sums run in float64
 * and are stored as float32.
 */
import { HetmmError } from '../errors.js';
import type { FeatureStack } from './contract.js';
import { decodeHalfInto } from './reference/half.js';

function fail(message: string): never {
  throw new HetmmError('E_ARGUMENT', message);
}

/** Checks the stack, the pixel range and the output size (shared with the fast backend). */
export function validateGramInputs(stack: FeatureStack, p0: number, p1: number, out: Float32Array): void {
  const [n, c, h, w] = stack.shape;
  for (const [label, v] of [['N', n], ['C', c], ['H', h], ['W', w]] as const) {
    if (!Number.isInteger(v) || v < 1) fail(`Expected a positive integer for stack ${label} but received ${String(v)}`);
  }
  const expectedArray = stack.dtype === 'float16' ? Uint16Array : stack.dtype === 'float32' ? Float32Array : undefined;
  if (expectedArray === undefined) fail(`Expected dtype float32 or float16 for the stack but received ${String(stack.dtype)}`);
  if (!(stack.data instanceof expectedArray)) {
    fail(`A ${stack.dtype} stack must be stored in a ${expectedArray.name} but received a ${stack.data.constructor.name}`);
  }
  if (stack.data.length < n * c * h * w) {
    fail(`Stack data has ${stack.data.length} elements, expected at least N*C*H*W = ${n * c * h * w}`);
  }
  const hw = h * w;
  if (!Number.isInteger(p0) || p0 < 0 || p0 > hw) fail(`Expected an integer in [0, ${hw}] for p0 but received ${String(p0)}`);
  if (!Number.isInteger(p1) || p1 < p0 || p1 > hw) fail(`Expected an integer in [${p0}, ${hw}] for p1 but received ${String(p1)}`);
  if (!(out instanceof Float32Array)) fail('Expected a Float32Array for out');
  if (out.length < (p1 - p0) * n * n) {
    fail(`out has ${out.length} elements, expected at least (p1 - p0)*N*N = ${(p1 - p0) * n * n}`);
  }
}

export function pixelGramReference(stack: FeatureStack, p0: number, p1: number, out: Float32Array): void {
  validateGramInputs(stack, p0, p1, out);
  const [n, c, h, w] = stack.shape;
  const hw = h * w;
  const count = p1 - p0;
  if (count === 0) return;
  // Gather the [N][C] vectors of the range as float32 once: [n][c][count].
  const vectors = new Float32Array(n * c * count);
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < c; ch++) {
      const src = (i * c + ch) * hw + p0;
      const dst = (i * c + ch) * count;
      if (stack.data instanceof Uint16Array) decodeHalfInto(stack.data, src, vectors, dst, count);
      else vectors.set(stack.data.subarray(src, src + count), dst);
    }
  }
  const sums = new Float64Array(count);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      sums.fill(0);
      for (let ch = 0; ch < c; ch++) {
        const a = (i * c + ch) * count;
        const b = (j * c + ch) * count;
        for (let k = 0; k < count; k++) sums[k] += vectors[a + k] * vectors[b + k];
      }
      for (let k = 0; k < count; k++) {
        out[k * n * n + i * n + j] = sums[k];
        out[k * n * n + j * n + i] = sums[k];
      }
    }
  }
}
