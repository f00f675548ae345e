/**
 * Output helpers: anomaly maps as 16-bit PNG, binary masks as PNG, heat-map
 * overlays, and raw float maps as .npy (readable with numpy.load).
 */
import { open } from 'node:fs/promises';
import os from 'node:os';
import { HetmmError } from '../errors.js';
import { loadSharp } from './sharp.js';
import { decodeRgb } from './load.js';
import { resizeBilinearFloat, resizeBilinearU8 } from './resample.js';
import type { LoadedImage } from './types.js';

function checkMap(map: ArrayLike<number>, h: number, w: number, what: string): void {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h <= 0 || w <= 0) {
    throw new HetmmError('E_ARGUMENT', `Expected positive integer height and width for ${what} but received ${h}x${w}`);
  }
  if (map.length !== h * w) {
    throw new HetmmError('E_ARGUMENT', `Expected ${what} of length ${h}*${w} = ${h * w} but received length ${map.length}`);
  }
}

function checkRange(range: readonly [number, number]): void {
  if (!Array.isArray(range) || range.length !== 2 || !Number.isFinite(range[0]) || !Number.isFinite(range[1]) || !(range[0] < range[1])) {
    throw new HetmmError('E_ARGUMENT', `Expected range [lo, hi] of finite numbers with lo < hi but received ${JSON.stringify(range)}`);
  }
}

/** (v - lo) / (hi - lo) clamped to [0, 1]; NaN -> 0. */
function normalise(v: number, lo: number, hi: number): number {
  const t = (v - lo) / (hi - lo);
  return t > 0 ? (t < 1 ? t : 1) : 0;
}

/** A 16-bit grey PNG: value lo -> 0, hi -> 65535, linear in between, clamped. */
export async function encodeMapPng16(map: Float32Array, h: number, w: number, range: readonly [number, number]): Promise<Buffer> {
  checkMap(map, h, w, 'map');
  checkRange(range);
  const [lo, hi] = range;
  const pixels = new Uint16Array(h * w);
  for (let i = 0; i < pixels.length; i++) pixels[i] = Math.round(normalise(map[i], lo, hi) * 65535);
  return (await loadSharp())(pixels, { raw: { width: w, height: h, channels: 1 } }).toColourspace('grey16').png().toBuffer();
}

/** zlib level of the PNGs written here, default sharp's (6). */
export interface PngOptions {
  /**
   * 0-9. The same pixels either way; a serving door answering per request
   * uses 1 (less encoding CPU, larger files: docs/PERFORMANCE.md, "The server on the pipelines").
   */
  readonly compressionLevel?: number;
}

function pngOptions(options: PngOptions): { compressionLevel?: number } {
  const level = options.compressionLevel;
  if (level === undefined) return {};
  if (!Number.isInteger(level) || level < 0 || level > 9) throw new HetmmError('E_ARGUMENT', `Expected compressionLevel as an integer 0-9 but received ${String(level)}`);
  return { compressionLevel: level };
}

/** An 8-bit grey PNG: 0 -> black, non-zero -> white (255). */
export async function encodeMaskPng(mask: Uint8Array, h: number, w: number, options: PngOptions = {}): Promise<Buffer> {
  checkMap(mask, h, w, 'mask');
  const png = pngOptions(options);
  const pixels = new Uint8Array(h * w);
  for (let i = 0; i < pixels.length; i++) pixels[i] = mask[i] ? 255 : 0;
  return (await loadSharp())(pixels, { raw: { width: w, height: h, channels: 1 } }).toColourspace('b-w').png(png).toBuffer();
}

/**
 * The classic 'jet' colour map (blue -> cyan -> yellow -> red), t in [0, 1]:
 * each channel is a clamped tent, r = 1.5 - |4t - 3|, g = 1.5 - |4t - 2|,
 * b = 1.5 - |4t - 1|. Returns 8-bit [r, g, b].
 */
export function jetColour(t: number): [number, number, number] {
  const x = t > 0 ? (t < 1 ? t : 1) : 0;
  return [jetChannel(x, 3), jetChannel(x, 2), jetChannel(x, 1)];
}

/** One channel of jetColour for x in [0, 1] (c = 3 red, 2 green, 1 blue): the overlay's per-pixel loop, without an array per pixel. */
function jetChannel(x: number, c: number): number {
  return Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - c))));
}

export interface OverlayOptions extends PngOptions {
  /** Map values mapped to the colour scale's ends. */
  readonly range: readonly [number, number];
  /** Weight of the colour map over the image, in [0, 1]; default 0.5. */
  readonly alpha?: number;
  /** 'model' (default): the map's own size; 'original': the image file's size (the map is resized bilinearly). */
  readonly outSize?: 'original' | 'model';
}

/**
 * A jet heat map of `map` ([h*w]) blended over the image, as an RGB PNG.
 * `image` is a LoadedImage or an image file path.
 */
export async function renderHeatmapOverlay(
  image: LoadedImage | string,
  map: Float32Array,
  h: number,
  w: number,
  options: OverlayOptions,
): Promise<Buffer> {
  checkMap(map, h, w, 'map');
  checkRange(options.range);
  const alpha = options.alpha ?? 0.5;
  if (!(alpha >= 0 && alpha <= 1)) throw new HetmmError('E_ARGUMENT', `Expected alpha in [0, 1] but received ${String(alpha)}`);
  const png = pngOptions(options);
  const outSize = options.outSize ?? 'model';
  if (outSize !== 'model' && outSize !== 'original') {
    throw new HetmmError('E_ARGUMENT', `Expected outSize 'model' or 'original' but received ${JSON.stringify(outSize)}`);
  }

  // Base image as interleaved 8-bit RGB at the output size.
  let outH: number;
  let outW: number;
  let base: Uint8Array;
  const fromRaw = async (file: string, size?: [number, number]): Promise<void> => {
    const raw = await decodeRgb(file);
    let rgb8: Uint8Array;
    if (raw.data instanceof Uint8Array) rgb8 = raw.data;
    else {
      rgb8 = new Uint8Array(raw.data.length);
      for (let i = 0; i < rgb8.length; i++) rgb8[i] = raw.data[i] >> 8;
    }
    [outH, outW] = size ?? [raw.height, raw.width];
    base = resizeBilinearU8(rgb8, raw.height, raw.width, 3, outH, outW);
  };
  if (typeof image === 'string') {
    await fromRaw(image, outSize === 'model' ? [h, w] : undefined);
  } else if (outSize === 'original') {
    if (image.source === '<buffer>') {
      throw new HetmmError('E_ARGUMENT', "outSize 'original' needs the image file, but this LoadedImage came from a buffer");
    }
    await fromRaw(image.source);
  } else {
    outH = image.height;
    outW = image.width;
    const plane = outH * outW;
    base = new Uint8Array(plane * 3);
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) base[i * 3 + c] = Math.round(Math.min(1, Math.max(0, image.data[c * plane + i])) * 255);
    }
  }
  // TS cannot see the assignments inside the closure.
  const H = outH!;
  const W = outW!;
  const basePixels = base!;

  const resizedMap = H === h && W === w ? map : resizeBilinearFloat(map, h, w, 1, H, W);
  const [lo, hi] = options.range;
  const out = new Uint8Array(H * W * 3);
  for (let i = 0; i < H * W; i++) {
    const x = normalise(resizedMap[i], lo, hi); // in [0, 1], as jetColour clamps it
    // red, green, blue: jetColour's channels 3, 2, 1
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.round((1 - alpha) * basePixels[i * 3 + c] + alpha * jetChannel(x, 3 - c));
  }
  return (await loadSharp())(out, { raw: { width: W, height: H, channels: 3 } }).png(png).toBuffer();
}

/**
 * The .npy (format 1.0) header for a little-endian float32 C-order array of
 * the given shape, padded with spaces so that the data starts at a multiple
 * of 64 bytes, as numpy writes it.
 */
export function npyHeader(shape: readonly number[]): Buffer {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const preamble = 10; // magic(6) + version(2) + header length(2)
  const total = Math.ceil((preamble + dict.length + 1) / 64) * 64;
  const header = dict.padEnd(total - preamble - 1, ' ') + '\n';
  const buf = Buffer.alloc(total);
  buf.write('\x93NUMPY', 0, 'latin1');
  buf[6] = 1;
  buf[7] = 0;
  buf.writeUInt16LE(header.length, 8);
  buf.write(header, preamble, 'latin1');
  return buf;
}

/** `map` ([h*w] float32) as the bytes of a .npy file of shape (h, w). */
export function encodeFloatMap(map: Float32Array, h: number, w: number): Buffer {
  checkMap(map, h, w, 'map');
  let data = Buffer.from(map.buffer, map.byteOffset, map.byteLength);
  if (os.endianness() !== 'LE') {
    data = Buffer.alloc(map.byteLength);
    for (let i = 0; i < map.length; i++) data.writeFloatLE(map[i], i * 4);
  }
  return Buffer.concat([npyHeader([h, w]), data]);
}

/** Write `map` ([h*w] float32) as a .npy file of shape (h, w): `numpy.load(path)` reads it. */
export async function saveFloatMap(filePath: string, map: Float32Array, h: number, w: number): Promise<void> {
  const bytes = encodeFloatMap(map, h, w);
  let handle;
  try {
    handle = await open(filePath, 'w');
    await handle.writeFile(bytes);
  } catch (e) {
    throw new HetmmError('E_WRITE', `cannot write float map '${filePath}': ${(e as Error).message}`, { cause: e });
  } finally {
    await handle?.close();
  }
}
