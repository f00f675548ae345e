/**
 * Anomaly-map post-processing used by the presets: Gaussian blur (pixel maps
 * and some image scores) and max-pool-mean (some image scores).
 */
import { HetmmError } from '../errors.js';

function checkMap(map: ArrayLike<number>, h: number, w: number): void {
  for (const [name, v] of [['h', h], ['w', w]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new HetmmError('E_ARGUMENT', `Expected a positive integer for ${name} but received ${String(v)}`);
    }
  }
  if (map.length < h * w) {
    throw new HetmmError('E_ARGUMENT', `Expected at least h*w = ${h * w} map values but received ${map.length}`);
  }
}

function checkOddKernel(k: number): void {
  if (!Number.isInteger(k) || k < 1 || k % 2 === 0) {
    throw new HetmmError('E_ARGUMENT', `Expected an odd positive integer for the blur kernel size but received ${String(k)}`);
  }
}

/**
 * Normalised 1-D Gaussian weights exp(-((i-(k-1)/2)/sigma)^2/2), i = 0..k-1.
 * Their outer product is exactly the normalised 2-D kernel, because the 2-D
 * normaliser is the square of the 1-D one; hence the separable blur.
 */
export function gaussianKernel1d(sigma: number, k: number): Float64Array {
  if (!(sigma > 0) || !Number.isFinite(sigma)) {
    throw new HetmmError('E_ARGUMENT', `Expected a positive finite sigma but received ${String(sigma)}`);
  }
  checkOddKernel(k);
  const weights = new Float64Array(k);
  const centre = (k - 1) / 2;
  let sum = 0;
  for (let i = 0; i < k; i++) {
    const z = (i - centre) / sigma;
    weights[i] = Math.exp(-0.5 * z * z);
    sum += weights[i];
  }
  for (let i = 0; i < k; i++) weights[i] /= sum;
  return weights;
}

/**
 * Same-size 2-D Gaussian blur with zero padding k//2 (torchvision
 * gaussian_blur semantics with constant-0 borders): rows then columns,
 * in float64.
 */
export function gaussianBlur(map: ArrayLike<number>, h: number, w: number, sigma: number, k: number): Float32Array {
  checkMap(map, h, w);
  const weights = gaussianKernel1d(sigma, k);
  const pad = k >> 1;
  const horizontal = new Float64Array(h * w);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < w; x++) {
      const i0 = Math.max(0, pad - x); // taps falling left of the map read zeros
      const i1 = Math.min(k, w - x + pad);
      let s = 0;
      for (let i = i0; i < i1; i++) s += weights[i] * map[row + x + i - pad];
      horizontal[row + x] = s;
    }
  }
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++) {
    const i0 = Math.max(0, pad - y);
    const i1 = Math.min(k, h - y + pad);
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let i = i0; i < i1; i++) s += weights[i] * horizontal[(y + i - pad) * w + x];
      out[y * w + x] = s;
    }
  }
  return out;
}

/**
 * Max-pool with window k, stride k, no padding (floor(h/k) x floor(w/k)
 * windows), then the mean of the pooled maxima; float64.
 */
export function maxPoolMean(map: ArrayLike<number>, h: number, w: number, k: number): number {
  checkMap(map, h, w);
  if (!Number.isInteger(k) || k < 1) {
    throw new HetmmError('E_ARGUMENT', `Expected a positive integer for the max-pool kernel size but received ${String(k)}`);
  }
  const rows = Math.floor(h / k);
  const cols = Math.floor(w / k);
  if (rows === 0 || cols === 0) {
    throw new HetmmError('E_ARGUMENT', `Max-pool kernel ${k} is larger than the ${h}x${w} map (expected k <= ${Math.min(h, w)})`);
  }
  let sum = 0;
  for (let by = 0; by < rows; by++) {
    for (let bx = 0; bx < cols; bx++) {
      let m = -Infinity;
      for (let y = by * k; y < (by + 1) * k; y++) {
        const row = y * w;
        for (let x = bx * k; x < (bx + 1) * k; x++) {
          const v = map[row + x];
          if (v > m || Number.isNaN(v)) m = v;
        }
      }
      sum += m;
    }
  }
  return sum / (rows * cols);
}

/** Largest value of a map (NaN if any value is NaN, like torch.max). */
export function mapMax(map: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < map.length; i++) {
    const v = map[i];
    if (v > m || Number.isNaN(v)) m = v;
  }
  return m;
}
