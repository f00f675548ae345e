/**
 * IEEE 754 binary16 -> float32 decoding for float16 template stores.
 * A 65536-entry table (256 KiB) built on first use: one lookup per element
 * is far cheaper than bit twiddling inside the matching loops.
 */

let halfTable: Float32Array | undefined;

/** Decodes one half by arithmetic (used to build the table; also the spec in tests). */
export function decodeHalfBits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24; // zero or subnormal
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function table(): Float32Array {
  if (halfTable === undefined) {
    const t = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) t[bits] = decodeHalfBits(bits);
    halfTable = t;
  }
  return halfTable;
}

/** The float value of raw half bits (only the low 16 bits are read). */
export function halfToFloat(bits: number): number {
  return table()[bits & 0xffff];
}

/**
 * Decodes `count` halves from `src[srcOffset..]` into `dst[dstOffset..]`.
 * Used per channel plane so a float16 store never needs a full float32 copy.
 */
export function decodeHalfInto(
  src: Uint16Array,
  srcOffset: number,
  dst: Float32Array,
  dstOffset: number,
  count: number,
): void {
  const t = table();
  for (let i = 0; i < count; i++) dst[dstOffset + i] = t[src[srcOffset + i]];
}
