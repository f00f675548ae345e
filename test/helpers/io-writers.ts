/**
 * Hand-written encoders for formats sharp cannot produce here: BMP (no BMP
 * support in sharp's libvips) and 16-bit TIFF (sharp writes 8-bit TIFF).
 * Written from the format specifications, independently of src/image.
 */

/** BMP, BITMAPINFOHEADER. `rgb` is HWC 8-bit RGB. bpp 24 or 32 (BGRX), bottom-up unless topDown. */
export function encodeBmpRgb(rgb: Uint8Array, width: number, height: number, bpp: 24 | 32, topDown = false): Buffer {
  const stride = Math.floor((bpp * width + 31) / 32) * 4;
  const dataOffset = 14 + 40;
  const buf = Buffer.alloc(dataOffset + stride * height);
  buf.write('BM', 0, 'latin1');
  buf.writeUInt32LE(buf.length, 2);
  buf.writeUInt32LE(dataOffset, 10);
  buf.writeUInt32LE(40, 14);
  buf.writeInt32LE(width, 18);
  buf.writeInt32LE(topDown ? -height : height, 22);
  buf.writeUInt16LE(1, 26);
  buf.writeUInt16LE(bpp, 28);
  buf.writeUInt32LE(0, 30); // BI_RGB
  buf.writeUInt32LE(stride * height, 34);
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (topDown ? y : height - 1 - y) * stride;
    for (let x = 0; x < width; x++) {
      const p = row + x * (bpp / 8);
      const s = (y * width + x) * 3;
      buf[p] = rgb[s + 2];
      buf[p + 1] = rgb[s + 1];
      buf[p + 2] = rgb[s];
      if (bpp === 32) buf[p + 3] = 0x7f; // alpha/unused byte: must be ignored
    }
  }
  return buf;
}

/** 8-bit palette BMP: `indices` HW, `palette` [n][r, g, b]. */
export function encodeBmpPalette8(indices: Uint8Array, width: number, height: number, palette: Array<[number, number, number]>): Buffer {
  const stride = Math.floor((8 * width + 31) / 32) * 4;
  const dataOffset = 14 + 40 + palette.length * 4;
  const buf = Buffer.alloc(dataOffset + stride * height);
  buf.write('BM', 0, 'latin1');
  buf.writeUInt32LE(buf.length, 2);
  buf.writeUInt32LE(dataOffset, 10);
  buf.writeUInt32LE(40, 14);
  buf.writeInt32LE(width, 18);
  buf.writeInt32LE(height, 22);
  buf.writeUInt16LE(1, 26);
  buf.writeUInt16LE(8, 28);
  buf.writeUInt32LE(palette.length, 46);
  palette.forEach(([r, g, b], i) => {
    buf[54 + i * 4] = b;
    buf[54 + i * 4 + 1] = g;
    buf[54 + i * 4 + 2] = r;
  });
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (height - 1 - y) * stride;
    for (let x = 0; x < width; x++) buf[row + x] = indices[y * width + x];
  }
  return buf;
}

/** Uncompressed little-endian 16-bit greyscale baseline TIFF, one strip. */
export function encodeTiffGrey16(values: Uint16Array, width: number, height: number): Buffer {
  const entries: Array<[tag: number, type: number, value: number]> = [
    [256, 3, width], // ImageWidth
    [257, 3, height], // ImageLength
    [258, 3, 16], // BitsPerSample
    [259, 3, 1], // Compression: none
    [262, 3, 1], // Photometric: BlackIsZero
    [273, 4, 0], // StripOffsets (patched below)
    [277, 3, 1], // SamplesPerPixel
    [278, 3, height], // RowsPerStrip
    [279, 4, width * height * 2], // StripByteCounts
  ];
  const ifdOffset = 8;
  const ifdSize = 2 + entries.length * 12 + 4;
  const dataOffset = ifdOffset + ifdSize;
  entries[5][2] = dataOffset;
  const buf = Buffer.alloc(dataOffset + width * height * 2);
  buf.write('II', 0, 'latin1');
  buf.writeUInt16LE(42, 2);
  buf.writeUInt32LE(ifdOffset, 4);
  buf.writeUInt16LE(entries.length, ifdOffset);
  entries.forEach(([tag, type, value], i) => {
    const p = ifdOffset + 2 + i * 12;
    buf.writeUInt16LE(tag, p);
    buf.writeUInt16LE(type, p + 2);
    buf.writeUInt32LE(1, p + 4);
    if (type === 3) buf.writeUInt16LE(value, p + 8);
    else buf.writeUInt32LE(value, p + 8);
  });
  buf.writeUInt32LE(0, ifdOffset + 2 + entries.length * 12); // no next IFD
  for (let i = 0; i < values.length; i++) buf.writeUInt16LE(values[i], dataOffset + i * 2);
  return buf;
}
