/**
 * Plain TypeScript reference of the per-pixel Gram kernel used by PTS
 * (pixel-level template selection): for a FeatureStack [N, C, H, W] and flat
 * pixel indices p in [p0, p1),
 *   out[(p - p0)*N*N + i*N + j] = sum_c T_i[c][p] * T_j[c][p]
 * Both halves of each symmetric N x N matrix are written (pixel blocks of
 * N*N, row-major); the fast backend's pixelGram fills the same layout.
 */
import { HetmmError } from '../../errors.js';
import { float16DecodeTable } from '../../store/float16.js';
import type { FeatureStack } from '../contract.js';

function fail(message: string): never {
  throw new HetmmError('E_ARGUMENT', message);
}

/**
 * Checks the stack, the pixel range (0 <= p0 <= p1 <= H*W; empty is allowed)
 * and the output size. Shared with the fast backend, which additionally
 * requires a Float32Array `out`.
 */
export function validateGramInputs(stack: FeatureStack, p0: number, p1: number, out: Float32Array | Float64Array): void {
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
  if (!(out instanceof Float32Array) && !(out instanceof Float64Array)) fail('Expected a Float32Array or Float64Array for out');
  if (out.length < (p1 - p0) * n * n) {
    fail(`out has ${out.length} elements, expected at least (p1 - p0)*N*N = ${(p1 - p0) * n * n}`);
  }
}

/**
 * The reference Gram. Vectorised over pixels: for each image pair, the
 * channel loop is outer and the pixel loop inner over contiguous NCHW rows.
 * Each G_p[i][j] is summed over c in ascending order in float64 (the same
 * rounding as a sequential dot product, which the OPTICS parity fixtures
 * depend on); a Float32Array `out` receives it rounded once. An empty range
 * writes nothing.
 */
export function pixelGramReference(stack: FeatureStack, p0: number, p1: number, out: Float32Array | Float64Array): void {
  validateGramInputs(stack, p0, p1, out);
  const [n, c, h, w] = stack.shape;
  const hw = h * w;
  const count = p1 - p0;
  if (count === 0) return;
  const nn = n * n;
  const data = stack.data;
  const table = stack.dtype === 'float16' ? float16DecodeTable() : undefined;
  const acc = new Float64Array(count);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      acc.fill(0);
      for (let ch = 0; ch < c; ch++) {
        const ri = (i * c + ch) * hw + p0;
        const rj = (j * c + ch) * hw + p0;
        // dtype test hoisted out of the pixel loop: this is the hot loop of the reference backend
        if (table) {
          for (let q = 0; q < count; q++) acc[q] += table[data[ri + q]!]! * table[data[rj + q]!]!;
        } else {
          for (let q = 0; q < count; q++) acc[q] += data[ri + q]! * data[rj + q]!;
        }
      }
      for (let q = 0; q < count; q++) {
        const v = acc[q]!;
        out[q * nn + i * n + j] = v;
        out[q * nn + j * n + i] = v;
      }
    }
  }
}
