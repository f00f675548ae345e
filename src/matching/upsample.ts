/**
 * Bilinear resize with align_corners=true, as torch
 * F.interpolate(x, size, mode='bilinear', align_corners=True): output corner
 * pixels sit exactly on input corner pixels, so source coordinate
 *   sy = oy * (h - 1) / (outH - 1)   (0 when outH == 1)
 * and likewise for x. A 1-pixel input axis is replicated.
 */
import { HetmmError } from '../errors.js';

function checkSize(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new HetmmError('E_ARGUMENT', `Expected a positive integer for ${name} but received ${String(v)}`);
  }
}

/** Per output index: the lower source index and the weight of the upper one. */
function axisTaps(inSize: number, outSize: number): { lo: Int32Array; frac: Float64Array } {
  const lo = new Int32Array(outSize);
  const frac = new Float64Array(outSize);
  const scale = outSize > 1 ? (inSize - 1) / (outSize - 1) : 0;
  for (let o = 0; o < outSize; o++) {
    const s = o * scale;
    // clamp so the upper tap (lo + 1) stays inside; frac is then 0 or the exact remainder
    const l = Math.min(Math.floor(s), Math.max(inSize - 2, 0));
    lo[o] = l;
    frac[o] = inSize > 1 ? s - l : 0;
  }
  return { lo, frac };
}

/** Resizes a row-major [h, w] map to [outH, outW] (float64 arithmetic, float32 result). */
export function upsampleBilinearAlignCorners(
  src: ArrayLike<number>,
  h: number,
  w: number,
  outH: number,
  outW: number,
): Float32Array {
  checkSize('h', h);
  checkSize('w', w);
  checkSize('outH', outH);
  checkSize('outW', outW);
  if (src.length < h * w) {
    throw new HetmmError('E_ARGUMENT', `Expected at least h*w = ${h * w} values but received ${src.length}`);
  }
  const ys = axisTaps(h, outH);
  const xs = axisTaps(w, outW);
  const out = new Float32Array(outH * outW);
  const nextRow = h > 1 ? w : 0;
  const nextCol = w > 1 ? 1 : 0;
  for (let oy = 0; oy < outH; oy++) {
    const r0 = ys.lo[oy] * w;
    const r1 = r0 + nextRow;
    const fy = ys.frac[oy];
    for (let ox = 0; ox < outW; ox++) {
      const c0 = xs.lo[ox];
      const c1 = c0 + nextCol;
      const fx = xs.frac[ox];
      const top = src[r0 + c0] * (1 - fx) + src[r0 + c1] * fx;
      const bottom = src[r1 + c0] * (1 - fx) + src[r1 + c1] * fx;
      out[oy * outW + ox] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}
