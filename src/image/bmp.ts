/**
 * A small BMP decoder, because the libvips bundled with sharp has no BMP
 * loader (its 'magick' loader is compiled out). Supports the common
 * uncompressed cases: 1/4/8-bit palette, 16-bit (555 / bitfields),
 * 24-bit BGR, 32-bit BGRX/BGRA (BI_RGB or BI_BITFIELDS), bottom-up and
 * top-down rows. RLE and embedded JPEG/PNG are refused with E_IMAGE_DECODE.
 * Alpha is dropped (like PIL's convert('RGB')).
 */
import { HetmmError } from '../errors.js';
import type { RawRgb } from './types.js';

const BI_RGB = 0;
const BI_BITFIELDS = 3;
const BI_ALPHABITFIELDS = 6;

export function isBmp(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x42 && buf[1] === 0x4d; // "BM"
}

interface ChannelMask {
  shift: number;
  max: number;
}

function maskInfo(mask: number): ChannelMask {
  if (mask === 0) return { shift: 0, max: 0 };
  let shift = 0;
  let m = mask >>> 0;
  while ((m & 1) === 0) {
    m >>>= 1;
    shift++;
  }
  return { shift, max: m };
}

function extract(pixel: number, c: ChannelMask): number {
  if (c.max === 0) return 0;
  const v = (pixel >>> c.shift) & c.max;
  return Math.round((v * 255) / c.max);
}

export function decodeBmp(buf: Uint8Array, name: string, maxPixels: number): RawRgb {
  const fail = (why: string): never => {
    throw new HetmmError('E_IMAGE_DECODE', `cannot decode BMP '${name}': ${why}`);
  };
  if (buf.length < 26) fail('file too short for a BMP header');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dataOffset = dv.getUint32(10, true);
  const headerSize = dv.getUint32(14, true);
  let width: number;
  let rawHeight: number;
  let bpp: number;
  let compression = BI_RGB;
  let paletteCount = 0;
  let paletteEntrySize = 4;
  if (headerSize === 12) {
    // OS/2 BITMAPCOREHEADER
    width = dv.getUint16(18, true);
    rawHeight = dv.getInt16(20, true);
    bpp = dv.getUint16(24, true);
    paletteEntrySize = 3;
  } else if (headerSize >= 40) {
    if (buf.length < 14 + 40) fail('file too short for BITMAPINFOHEADER');
    width = dv.getInt32(18, true);
    rawHeight = dv.getInt32(22, true);
    bpp = dv.getUint16(28, true);
    compression = dv.getUint32(30, true);
    paletteCount = dv.getUint32(46, true);
  } else {
    return fail(`unsupported header size ${headerSize}`);
  }
  const topDown = rawHeight < 0;
  const height = Math.abs(rawHeight);
  if (width <= 0 || height <= 0) fail(`invalid size ${width}x${rawHeight}`);
  if (width * height > maxPixels) {
    throw new HetmmError(
      'E_IMAGE_TOO_LARGE',
      `image '${name}' is ${width}x${height} = ${width * height} pixels, over the limit of ${maxPixels} pixels`,
    );
  }
  if (compression !== BI_RGB && compression !== BI_BITFIELDS && compression !== BI_ALPHABITFIELDS) {
    fail(`compression ${compression} (RLE/JPEG/PNG) is not supported; only uncompressed BMP`);
  }
  if (![1, 4, 8, 16, 24, 32].includes(bpp)) fail(`unsupported bit depth ${bpp}`);

  // Channel masks for 16/32-bit.
  let masks: [ChannelMask, ChannelMask, ChannelMask] | undefined;
  if (bpp === 16 || bpp === 32) {
    if (compression === BI_BITFIELDS || compression === BI_ALPHABITFIELDS) {
      // Masks follow the 40-byte header (or live inside V4/V5 headers at the same offset).
      if (buf.length < 14 + 40 + 12) fail('missing bitfield masks');
      masks = [maskInfo(dv.getUint32(54, true)), maskInfo(dv.getUint32(58, true)), maskInfo(dv.getUint32(62, true))];
    } else if (bpp === 16) {
      masks = [maskInfo(0x7c00), maskInfo(0x03e0), maskInfo(0x001f)];
    } else {
      masks = [maskInfo(0x00ff0000), maskInfo(0x0000ff00), maskInfo(0x000000ff)];
    }
  }

  let palette: Uint8Array | undefined;
  if (bpp <= 8) {
    const n = paletteCount === 0 ? 1 << bpp : paletteCount;
    const start = 14 + headerSize + (compression === BI_BITFIELDS && headerSize === 40 ? 12 : 0);
    if (start + n * paletteEntrySize > buf.length) fail('truncated palette');
    palette = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) {
      const p = start + i * paletteEntrySize;
      palette[i * 3] = buf[p + 2];
      palette[i * 3 + 1] = buf[p + 1];
      palette[i * 3 + 2] = buf[p];
    }
  }

  const rowStride = Math.floor((bpp * width + 31) / 32) * 4;
  const needed = dataOffset + rowStride * height;
  if (needed > buf.length) fail(`truncated: pixel data needs ${needed} bytes, file has ${buf.length}`);

  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const srcRow = dataOffset + (topDown ? y : height - 1 - y) * rowStride;
    const dst = y * width * 3;
    for (let x = 0; x < width; x++) {
      const o = dst + x * 3;
      if (palette) {
        const bitPos = x * bpp;
        const byte = buf[srcRow + (bitPos >> 3)];
        const index = (byte >> (8 - bpp - (bitPos & 7))) & ((1 << bpp) - 1);
        if (index * 3 >= palette.length) fail(`palette index ${index} out of range`);
        out[o] = palette[index * 3];
        out[o + 1] = palette[index * 3 + 1];
        out[o + 2] = palette[index * 3 + 2];
      } else if (bpp === 24) {
        const p = srcRow + x * 3;
        out[o] = buf[p + 2];
        out[o + 1] = buf[p + 1];
        out[o + 2] = buf[p];
      } else {
        const m = masks as [ChannelMask, ChannelMask, ChannelMask];
        const pixel = bpp === 32 ? dv.getUint32(srcRow + x * 4, true) : dv.getUint16(srcRow + x * 2, true);
        out[o] = extract(pixel, m[0]);
        out[o + 1] = extract(pixel, m[1]);
        out[o + 2] = extract(pixel, m[2]);
      }
    }
  }
  return { width, height, data: out };
}
