/**
 * The band cue (docs/TUNING.md, "The band cue"): a large region whose
 * surface differs from the rest of the part (Magnetic Tile's `uneven`
 * defects: a quarter of a tile, locally normal texture) is invisible to
 * L2-normalised local features, so the ATMM map marks its edges only. The
 * cue compares the image's band profile, the gradient energy of each
 * full-width row band (vertical gradient) and each full-height column band
 * (horizontal gradient), on a log scale relative to the image's own median
 * band, with the normals' profiles, band by band; the deviation is added to
 * the pixel map with a weight that `--preset tune` chooses from synthetic
 * defects. The image score is not changed. Off unless a preset has `bands`.
 */
import { HetmmError } from '../errors.js';
import { upsampleBilinearAlignCorners } from './upsample.js';

/** Bands per side: 8 px bands at the 256x256 input. */
export const BAND_COUNT = 32;

/** A preset's band cue: the weight and the normals' per-band statistics (rows, then columns). */
export interface BandCue {
  /** added to the pixel map: weight x the per-band deviation from the normals */
  readonly weight: number;
  /** per band, the normals' mean profile value; length 2 x BAND_COUNT (rows, then columns) */
  readonly mean: readonly number[];
  /** per band, the normals' standard deviation; same length */
  readonly sd: readonly number[];
}

/** Below this gradient energy (image in [0, 1]) the log is held flat: flat images give no cue. */
const ENERGY_FLOOR = 1e-3;

/**
 * The band profile of an image [3, H, W] in [0, 1] (RGB planes): per row band
 * the mean |g(y+1, x) - g(y, x)| of the grey image g, then per column band the
 * mean |g(y, x+1) - g(y, x)|; each as log(energy + 1e-3) minus the median of
 * its side's bands. Length 2 x bands.
 */
export function bandProfile(data: Float32Array, height: number, width: number, bands = BAND_COUNT): Float32Array {
  if (data.length !== 3 * height * width) {
    throw new HetmmError('E_ARGUMENT', `bandProfile: expected ${3 * height * width} values for a 3x${height}x${width} image but received ${data.length}`);
  }
  if (height < 2 || width < 2 || bands > height || bands > width) {
    throw new HetmmError('E_ARGUMENT', `bandProfile: a ${height}x${width} image cannot be cut into ${bands} bands a side`);
  }
  const plane = height * width;
  const grey = new Float32Array(plane);
  for (let p = 0; p < plane; p++) grey[p] = (data[p]! + data[plane + p]! + data[2 * plane + p]!) / 3;
  const rows = new Float64Array(bands);
  const cols = new Float64Array(bands);
  const rowCount = new Float64Array(bands);
  const colCount = new Float64Array(bands);
  for (let y = 0; y < height; y++) {
    const rb = Math.floor((y * bands) / height);
    const yn = y < height - 1 ? y + 1 : y - 1;
    for (let x = 0; x < width; x++) {
      const v = grey[y * width + x]!;
      const cb = Math.floor((x * bands) / width);
      const xn = x < width - 1 ? x + 1 : x - 1;
      rows[rb]! += Math.abs(grey[yn * width + x]! - v);
      rowCount[rb]!++;
      cols[cb]! += Math.abs(grey[y * width + xn]! - v);
      colCount[cb]!++;
    }
  }
  const out = new Float32Array(2 * bands);
  for (const [side, sums, counts] of [[0, rows, rowCount], [1, cols, colCount]] as const) {
    const logs = Array.from(sums, (s, b) => Math.log(s / counts[b]! + ENERGY_FLOOR));
    const median = [...logs].sort((a, b) => a - b)[bands >> 1]!;
    for (let b = 0; b < bands; b++) out[side * bands + b] = logs[b]! - median;
  }
  return out;
}

/** Per-band mean and standard deviation of normals' band profiles. */
export function bandStatistics(profiles: readonly Float32Array[]): { mean: number[]; sd: number[] } {
  if (profiles.length === 0) throw new HetmmError('E_ARGUMENT', 'bandStatistics: no profiles');
  const n = profiles[0]!.length;
  const mean = new Array<number>(n).fill(0);
  const sd = new Array<number>(n).fill(0);
  for (const p of profiles) for (let i = 0; i < n; i++) mean[i]! += p[i]! / profiles.length;
  for (const p of profiles) for (let i = 0; i < n; i++) sd[i]! += (p[i]! - mean[i]!) ** 2 / profiles.length;
  for (let i = 0; i < n; i++) sd[i] = Math.sqrt(sd[i]!);
  return { mean, sd };
}

/**
 * The cue map [outH*outW] of a profile (not weighted): per row band and per
 * column band |profile - mean| / (sd + half the mean sd), a pixel getting the
 * mean of its row band's and its column band's value; band centres
 * interpolated bilinearly (align corners) to the output size.
 */
export function bandMap(profile: Float32Array, cue: Pick<BandCue, 'mean' | 'sd'>, outH: number, outW: number): Float32Array {
  const n = profile.length;
  if (n % 2 !== 0 || cue.mean.length !== n || cue.sd.length !== n) {
    throw new HetmmError('E_ARGUMENT', `bandMap: a profile of ${n} bands needs ${n} means and sds, the cue has ${cue.mean.length} and ${cue.sd.length}`);
  }
  const bands = n / 2;
  let meanSd = 0;
  for (const s of cue.sd) meanSd += s / n;
  const z = Array.from(profile, (v, i) => Math.abs(v - cue.mean[i]!) / (cue.sd[i]! + 0.5 * meanSd + 1e-9));
  // Bilinear interpolation of (row z + column z) / 2 is the sum of the two sides' 1-D interpolations: no 2-D pass.
  const rows = upsampleBilinearAlignCorners(z.slice(0, bands), bands, 1, outH, 1);
  const cols = upsampleBilinearAlignCorners(z.slice(bands), 1, bands, 1, outW);
  const out = new Float32Array(outH * outW);
  for (let y = 0; y < outH; y++) for (let x = 0; x < outW; x++) out[y * outW + x] = (rows[y]! + cols[x]!) / 2;
  return out;
}

/** Throws unless `cue` is a well-formed BandCue. */
export function validateBandCue(cue: BandCue, where = 'bands'): void {
  const fail = (m: string): never => {
    throw new HetmmError('E_ARGUMENT', `${where}: ${m}`);
  };
  if (typeof cue !== 'object' || cue === null) fail(`expected an object with weight, mean and sd but received ${JSON.stringify(cue)}`);
  if (typeof cue.weight !== 'number' || !Number.isFinite(cue.weight) || cue.weight < 0) fail(`expected a weight >= 0 but received ${JSON.stringify(cue.weight)}`);
  const ok = (a: unknown): a is number[] => Array.isArray(a) && a.length > 0 && a.length % 2 === 0 && a.every((v) => typeof v === 'number' && Number.isFinite(v));
  if (!ok(cue.mean) || !ok(cue.sd) || cue.mean.length !== cue.sd.length) fail('expected mean and sd as equal-length, even-length arrays of finite numbers');
  if (cue.sd.some((v) => v < 0)) fail('expected sd >= 0');
}
