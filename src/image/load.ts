/**
 * Image and mask loading: file -> decoded RGB (sharp, or ./bmp.ts for BMP)
 * -> PIL-exact bilinear resize (./resample.ts) -> CHW float in [0, 1].
 *
 * Decisions (documented here once):
 *  - Resize to `size` (default 256x256) WITHOUT keeping the aspect ratio,
 *    like torchvision Resize([256, 256]); tiny images (1x1, 8x8) are upscaled.
 *  - Grey images are replicated to 3 channels, alpha is dropped (not
 *    composited), as PIL's convert('RGB') does. 16-bit images keep their
 *    precision (resized in float, divided by 65535). CMYK and ICC-tagged
 *    images are converted to sRGB by sharp.
 *  - EXIF orientation is ignored unless `autoOrient: true` (PIL's default).
 *  - Masks: converted to grey (PIL's 'L' luminance), resized bilinearly the
 *    same way, then binarised with value/255 > 0.5 (strictly greater, as
 *    HETMM/anomalib do after ToTensor), i.e. 8-bit value >= 128.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { HetmmError } from '../errors.js';
import { loadSharp } from './sharp.js';
import { decodeBmp } from './bmp.js';
import { ACCEPTED_FORMATS_TEXT, describeRefusedContent, sniffImageFormat } from './format.js';
import { resizeBilinearFloat, resizeBilinearU8 } from './resample.js';
import {
  DEFAULT_IMAGE_SIZE,
  DEFAULT_MAX_PIXELS,
  type LoadImageOptions,
  type LoadedImage,
  type RawRgb,
} from './types.js';

export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.gif'];

const BUFFER_SOURCE = '<buffer>';

function sourceName(source: string | Buffer): string {
  return typeof source === 'string' ? source : BUFFER_SOURCE;
}

function checkSize(size: readonly [number, number] | undefined): readonly [number, number] {
  const s = size ?? DEFAULT_IMAGE_SIZE;
  if (!Array.isArray(s) || s.length !== 2 || !s.every((v) => Number.isInteger(v) && v > 0)) {
    throw new HetmmError('E_ARGUMENT', `Expected size [height, width] of positive integers but received ${JSON.stringify(s)}`);
  }
  return s;
}

function checkMaxPixels(maxPixels: number | undefined): number {
  const m = maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!Number.isInteger(m) || m <= 0) {
    throw new HetmmError('E_ARGUMENT', `Expected positive integer for maxPixels but received ${String(m)}`);
  }
  return m;
}

/** A file-system error in words. */
function readFailure(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code ?? 'unknown error';
  const words: Record<string, string> = {
    ENOENT: 'no such file',
    EACCES: 'permission denied',
    EISDIR: 'is a directory',
    ELOOP: 'a symbolic link loop',
    ENOTDIR: 'a path component is not a directory',
    ENAMETOOLONG: 'the name is too long',
  };
  return words[code] ?? code;
}

async function readSourceBytes(source: string | Buffer): Promise<Buffer> {
  if (typeof source !== 'string') return source;
  try {
    return await readFile(source);
  } catch (e) {
    throw new HetmmError('E_IMAGE_READ', `cannot read image '${source}': ${readFailure(e)}`, { cause: e });
  }
}

/**
 * Decode any supported file to full-resolution RGB, 8-bit or 16-bit
 * samples. Exported for the heat-map overlay and the tests.
 */
export async function decodeRgb(
  source: string | Buffer,
  options: { maxPixels?: number; autoOrient?: boolean } = {},
): Promise<RawRgb> {
  const name = sourceName(source);
  const maxPixels = checkMaxPixels(options.maxPixels);
  const bytes = await readSourceBytes(source);
  if (bytes.length === 0) throw new HetmmError('E_IMAGE_DECODE', `cannot decode image '${name}': the file is empty`);
  // By content, never by extension (src/image/format.ts).
  const format = sniffImageFormat(bytes);
  if (format === undefined) {
    throw new HetmmError('E_IMAGE_DECODE', `cannot decode image '${name}': ${describeRefusedContent(bytes)}; hetmm reads ${ACCEPTED_FORMATS_TEXT}`);
  }
  if (format === 'bmp') return decodeBmp(bytes, name, maxPixels);
  try {
    const sharpOptions = { limitInputPixels: maxPixels, failOn: 'warning' as const, autoOrient: options.autoOrient ?? false };
    // The header only (no pixel limit needed: nothing is decoded), to name the size of a refused image.
    const meta = await (await loadSharp())(bytes, { ...sharpOptions, limitInputPixels: false }).metadata();
    if ((meta.pages ?? 1) > 1) {
      throw new HetmmError(
        'E_IMAGE_DECODE',
        `cannot decode image '${name}': an animated or multi-page ${format.toUpperCase()} (${meta.pages} frames); hetmm reads single still images`,
      );
    }
    if (meta.width !== undefined && meta.height !== undefined && meta.width * meta.height > maxPixels) {
      throw new HetmmError(
        'E_IMAGE_TOO_LARGE',
        `image '${name}' is ${meta.width}x${meta.height} = ${meta.width * meta.height} pixels, over the limit of ${maxPixels} pixels (raise it with --max-pixels / maxPixels)`,
      );
    }
    const sixteen = meta.depth === 'ushort' || meta.depth === 'short';
    const { data, info } = await (await loadSharp())(bytes, sharpOptions)
      .toColourspace(sixteen ? 'rgb16' : 'srgb')
      .removeAlpha()
      .raw({ depth: sixteen ? 'ushort' : 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) {
      throw new HetmmError('E_IMAGE_DECODE', `cannot decode image '${name}': got ${info.channels} channels, expected 3 after conversion`);
    }
    // A view when aligned (the usual case): a copy would double a 16-bit image's memory.
    const samples = sixteen
      ? data.byteOffset % 2 === 0
        ? new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2)
        : new Uint16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength))
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { width: info.width, height: info.height, data: samples };
  } catch (e) {
    if (e instanceof HetmmError) throw e;
    const message = e instanceof Error ? e.message : String(e);
    if (/pixel limit/i.test(message)) {
      throw new HetmmError('E_IMAGE_TOO_LARGE', `image '${name}' is over the limit of ${maxPixels} pixels (${message}; raise it with --max-pixels / maxPixels)`, { cause: e });
    }
    throw new HetmmError('E_IMAGE_DECODE', `cannot decode image '${name}': not an image, corrupt or truncated (${message})`, {
      cause: e,
    });
  }
}

/** Resize full-resolution RGB to [3, h, w] float CHW in [0, 1]. */
export function rgbToTensor(raw: RawRgb, height: number, width: number): Float32Array {
  const out = new Float32Array(3 * height * width);
  const plane = height * width;
  if (raw.data instanceof Uint8Array) {
    const resized = resizeBilinearU8(raw.data, raw.height, raw.width, 3, height, width);
    for (let i = 0; i < plane; i++) {
      out[i] = resized[i * 3] / 255;
      out[plane + i] = resized[i * 3 + 1] / 255;
      out[2 * plane + i] = resized[i * 3 + 2] / 255;
    }
  } else {
    const resized = resizeBilinearFloat(raw.data, raw.height, raw.width, 3, height, width);
    for (let i = 0; i < plane; i++) {
      out[i] = resized[i * 3] / 65535;
      out[plane + i] = resized[i * 3 + 1] / 65535;
      out[2 * plane + i] = resized[i * 3 + 2] / 65535;
    }
  }
  return out;
}

/** Decode and resize one image for the backbone. */
export async function loadImage(source: string | Buffer, options: LoadImageOptions = {}): Promise<LoadedImage> {
  const [height, width] = checkSize(options.size);
  const raw = await decodeRgb(source, options);
  return {
    data: rgbToTensor(raw, height, width),
    height,
    width,
    originalHeight: raw.height,
    originalWidth: raw.width,
    source: sourceName(source),
  };
}

/**
 * Load a ground-truth mask as [h*w] 0/1. Grey, RGB (converted with PIL's
 * luminance weights) and 1-bit/palette PNGs are accepted.
 */
export async function loadMask(
  source: string | Buffer,
  size: readonly [number, number] = DEFAULT_IMAGE_SIZE,
  options: { maxPixels?: number } = {},
): Promise<Uint8Array> {
  const [height, width] = checkSize(size);
  const raw = await decodeRgb(source, options);
  const n = raw.width * raw.height;
  const out = new Uint8Array(height * width);
  if (raw.data instanceof Uint8Array) {
    const grey = new Uint8Array(n);
    // PIL's convert('L'): L = R*299/1000 + G*587/1000 + B*114/1000 in 16-bit fixed point.
    for (let i = 0; i < n; i++) {
      grey[i] = (raw.data[i * 3] * 19595 + raw.data[i * 3 + 1] * 38470 + raw.data[i * 3 + 2] * 7471 + 0x8000) >>> 16;
    }
    const resized = resizeBilinearU8(grey, raw.height, raw.width, 1, height, width);
    for (let i = 0; i < out.length; i++) out[i] = resized[i] / 255 > 0.5 ? 1 : 0;
  } else {
    const grey = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      grey[i] = (raw.data[i * 3] * 0.299 + raw.data[i * 3 + 1] * 0.587 + raw.data[i * 3 + 2] * 0.114) / 65535;
    }
    const resized = resizeBilinearFloat(grey, raw.height, raw.width, 1, height, width);
    for (let i = 0; i < out.length; i++) out[i] = resized[i] > 0.5 ? 1 : 0;
  }
  return out;
}

function isImageFileName(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());
}

/**
 * Expand a list of files and directories to image paths: a directory
 * contributes its image files (non-recursive, extensions png/jpg/jpeg/bmp/
 * tif/tiff/webp/gif in any case, sorted by name; what they hold is checked
 * by content when decoded); anything else is kept as given, even when it
 * cannot be read: that image then fails on its own and the batch goes on.
 */
export async function loadImagesFrom(dirOrFiles: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const entry of dirOrFiles) {
    const info = await stat(entry).catch(() => undefined);
    if (info?.isDirectory()) {
      const names = (await readdir(entry, { withFileTypes: true }))
        .filter((d) => !d.isDirectory() && isImageFileName(d.name))
        .map((d) => d.name)
        // Code-point order: the same on every platform and locale.
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      if (names.length === 0) {
        throw new HetmmError(
          'E_NO_IMAGES',
          `directory '${entry}' has no images (expected files ending in ${IMAGE_EXTENSIONS.join(', ')})`,
        );
      }
      for (const n of names) out.push(path.join(entry, n));
    } else {
      out.push(entry);
    }
  }
  if (out.length === 0) throw new HetmmError('E_NO_IMAGES', 'no images given (an empty list of files and directories)');
  return out;
}
