/**
 * IEEE 754 binary16 <-> binary32 conversion for float16 template stores
 * (half the memory; features are unit vectors, so 11 significant bits lose
 * little). Half values are raw bit patterns in a Uint16Array.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Round a number to float32, then to the nearest float16 (ties to even),
 * returning its bits. Handles subnormals, overflow to +-Infinity (values
 * from 65520 up), signed zero and NaN (kept NaN, sign and top payload bits
 * kept, quiet bit set so it never becomes Infinity).
 */
export function float32ToFloat16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 | (mantissa >>> 13) : 0);
  const e = exponent - 127 + 15; // biased half exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Half subnormal (or zero): value / 2^-24, rounded to nearest even.
    if (e < -10) return sign; // below half of the smallest subnormal: +-0
    const m = mantissa | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++;
    return sign | half; // a carry into bit 10 correctly yields the smallest normal
  }
  let h = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++; // carry may reach 0x7c00 = Infinity
  return sign | h;
}

/** The value of half bits h, exactly (every half is a float32). */
export function float16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

let table: Float32Array | undefined;

/**
 * All 65536 half values as float32 (256 KiB), built once on first use: one
 * lookup per element is far cheaper than bit twiddling inside the matching
 * and Gram loops, and exact (every half is a float32). Shared: do not write.
 */
export function float16DecodeTable(): Float32Array {
  if (table === undefined) {
    const t = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = float16BitsToNumber(h);
    table = t;
  }
  return table;
}

export function float32ArrayToFloat16(src: ArrayLike<number>, dst: Uint16Array = new Uint16Array(src.length), dstOffset = 0): Uint16Array {
  for (let i = 0; i < src.length; i++) dst[dstOffset + i] = float32ToFloat16Bits(src[i]);
  return dst;
}

/** Decodes all of `src` into `dst[dstOffset..]`; pass a subarray to decode a slice (e.g. a few channel planes). */
export function float16ArrayToFloat32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length), dstOffset = 0): Float32Array {
  const t = float16DecodeTable();
  for (let i = 0; i < src.length; i++) dst[dstOffset + i] = t[src[i]];
  return dst;
}
