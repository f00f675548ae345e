/**
 * Bilinear resize with PIL's semantics, because torchvision's
 * Resize([256, 256]) on a PIL image (what HETMM's Python code does) calls
 * Pillow's `Image.resize(size, BILINEAR)`:
 *  - pixel centres aligned (src = (dst + 0.5) * scale - 0.5, align_corners=false);
 *  - anti-aliased when shrinking: the triangle filter's support is stretched
 *    by the reduction factor (support = max(1, scale));
 *  - separable: horizontal pass, then vertical pass.
 * For 8-bit samples this reproduces Pillow's fixed-point arithmetic
 * (22 fraction bits, rounding and clipping to uint8 after each pass), so a
 * 256x256 tensor equals torchvision's bit for bit. sharp's own 'linear'
 * kernel was measured to shift upscaled images by half an output pixel, so
 * sharp is only used to decode.
 */

/** Pillow's PRECISION_BITS for 8-bit resampling: 32 - 8 - 2. */
const PRECISION_BITS = 22;

interface Coefficients {
  /** per output index: first input index */
  readonly start: Int32Array;
  /** per output index: number of taps */
  readonly count: Int32Array;
  /** [outSize * kernelSize] normalised weights */
  readonly weights: Float64Array;
  readonly kernelSize: number;
}

function triangle(x: number): number {
  const a = Math.abs(x);
  return a < 1 ? 1 - a : 0;
}

/** Pillow's precompute_coeffs for the bilinear filter (support 1). */
function computeCoefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // bilinear support 1.0 * filterScale
  const kernelSize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * kernelSize);
  const invFilterScale = 1 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // Pillow truncates with a C (int) cast; both operands are >= -0.5 here so trunc == C cast.
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let total = 0;
    const base = xx * kernelSize;
    for (let x = 0; x < xmax; x++) {
      const w = triangle((x + xmin - center + 0.5) * invFilterScale);
      weights[base + x] = w;
      total += w;
    }
    if (total !== 0) for (let x = 0; x < xmax; x++) weights[base + x] /= total;
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { start, count, weights, kernelSize };
}

/** Pillow's normalize_coeffs_8bpc: weights to fixed point. */
function fixedPoint(c: Coefficients): Int32Array {
  const out = new Int32Array(c.weights.length);
  const one = 1 << PRECISION_BITS;
  for (let i = 0; i < c.weights.length; i++) {
    const w = c.weights[i];
    out[i] = w < 0 ? Math.trunc(-0.5 + w * one) : Math.trunc(0.5 + w * one);
  }
  return out;
}

/**
 * Resize an interleaved 8-bit image (HWC, `channels` per pixel) to
 * outH x outW exactly like Pillow's BILINEAR resize.
 */
export function resizeBilinearU8(
  src: Uint8Array,
  inH: number,
  inW: number,
  channels: number,
  outH: number,
  outW: number,
): Uint8Array {
  // A plain Uint8Array view: sharp hands over Buffers, and a second element
  // type at the same access sites would make them polymorphic (slower).
  let cur = new Uint8Array(src.buffer, src.byteOffset, src.length);
  let curW = inW;
  // Pillow skips a pass whose size does not change.
  if (outW !== inW) {
    cur = horizontalPassU8(cur, inH, inW, channels, outW);
    curW = outW;
  }
  if (outH !== inH) cur = verticalPassU8(cur, inH, curW * channels, outH);
  return cur.buffer === src.buffer ? src.slice() : cur;
}

/**
 * Pillow's clip8: `acc` is an int32 fixed-point sum (at most about
 * 255 * 2^22 plus rounding, so int32 arithmetic is exact, as in Pillow).
 */
function clip8Fixed(acc: number): number {
  const v = acc >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function horizontalPassU8(src: Uint8Array, inH: number, inW: number, channels: number, outW: number): Uint8Array {
  const c = computeCoefficients(inW, outW);
  const k = fixedPoint(c);
  const out = new Uint8Array(inH * outW * channels);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < inH; y++) {
    const rowIn = y * inW * channels;
    const rowOut = y * outW * channels;
    for (let xx = 0; xx < outW; xx++) {
      const n = c.count[xx];
      const kb = xx * c.kernelSize;
      const first = rowIn + c.start[xx] * channels;
      if (channels === 3) {
        // RGB, the common case: the three sums in one pass over the taps.
        let a0 = half;
        let a1 = half;
        let a2 = half;
        for (let t = 0, at = first; t < n; t++, at += 3) {
          const w = k[kb + t];
          a0 = (a0 + src[at] * w) | 0;
          a1 = (a1 + src[at + 1] * w) | 0;
          a2 = (a2 + src[at + 2] * w) | 0;
        }
        const o = rowOut + xx * 3;
        out[o] = clip8Fixed(a0);
        out[o + 1] = clip8Fixed(a1);
        out[o + 2] = clip8Fixed(a2);
        continue;
      }
      for (let ch = 0; ch < channels; ch++) {
        let acc = half;
        for (let t = 0, at = first + ch; t < n; t++, at += channels) acc = (acc + src[at] * k[kb + t]) | 0;
        out[rowOut + xx * channels + ch] = clip8Fixed(acc);
      }
    }
  }
  return out;
}

function verticalPassU8(src: Uint8Array, inH: number, rowLen: number, outH: number): Uint8Array {
  const c = computeCoefficients(inH, outH);
  const k = fixedPoint(c);
  const out = new Uint8Array(outH * rowLen);
  const half = 1 << (PRECISION_BITS - 1);
  for (let yy = 0; yy < outH; yy++) {
    const n = c.count[yy];
    const kb = yy * c.kernelSize;
    const first = c.start[yy] * rowLen;
    const o = yy * rowLen;
    for (let i = 0; i < rowLen; i++) {
      let acc = half;
      for (let t = 0, at = first + i; t < n; t++, at += rowLen) acc = (acc + src[at] * k[kb + t]) | 0;
      out[o + i] = clip8Fixed(acc);
    }
  }
  return out;
}

/**
 * The same resize on float samples (Pillow's 32-bit float path: double
 * weights, no intermediate rounding). Used for 16-bit images and maps.
 */
export function resizeBilinearFloat(
  src: ArrayLike<number>,
  inH: number,
  inW: number,
  channels: number,
  outH: number,
  outW: number,
): Float32Array {
  let cur: ArrayLike<number> = src;
  let curW = inW;
  if (outW !== inW) {
    const c = computeCoefficients(inW, outW);
    const out = new Float32Array(inH * outW * channels);
    for (let y = 0; y < inH; y++) {
      const rowIn = y * inW * channels;
      const rowOut = y * outW * channels;
      for (let xx = 0; xx < outW; xx++) {
        const s = c.start[xx];
        const n = c.count[xx];
        const kb = xx * c.kernelSize;
        for (let ch = 0; ch < channels; ch++) {
          let acc = 0;
          for (let t = 0; t < n; t++) acc += cur[rowIn + (s + t) * channels + ch] * c.weights[kb + t];
          out[rowOut + xx * channels + ch] = acc;
        }
      }
    }
    cur = out;
    curW = outW;
  }
  if (outH !== inH) {
    const c = computeCoefficients(inH, outH);
    const rowLen = curW * channels;
    const out = new Float32Array(outH * rowLen);
    for (let yy = 0; yy < outH; yy++) {
      const s = c.start[yy];
      const n = c.count[yy];
      const kb = yy * c.kernelSize;
      for (let i = 0; i < rowLen; i++) {
        let acc = 0;
        for (let t = 0; t < n; t++) acc += cur[(s + t) * rowLen + i] * c.weights[kb + t];
        out[yy * rowLen + i] = acc;
      }
    }
    cur = out;
  }
  return cur instanceof Float32Array && cur !== src ? cur : Float32Array.from(cur);
}
