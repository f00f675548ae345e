/**
 * Input policy: which files hetmm decodes, decided by content (the first
 * bytes), never by the file name's extension.
 *
 * Accepted: PNG, JPEG, BMP, TIFF, WebP and GIF, each a single still image.
 * Refused with E_IMAGE_DECODE: everything else, notably SVG (a vector
 * drawing: its rendering depends on fonts and external references, and
 * libvips would happily rasterise it), PDF, HEIF/AVIF, and animated or
 * multi-page files (animated GIF/WebP/PNG, multi-page TIFF): which frame is
 * "the" part image would be a guess, so none is taken.
 */
export type ImageFormat = 'png' | 'jpeg' | 'bmp' | 'tiff' | 'webp' | 'gif';

export const ACCEPTED_FORMATS: readonly ImageFormat[] = ['png', 'jpeg', 'bmp', 'tiff', 'webp', 'gif'];

const startsWith = (b: Uint8Array, bytes: readonly number[], at = 0): boolean =>
  b.length >= at + bytes.length && bytes.every((v, i) => b[at + i] === v);
const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));

/** The format of a file's bytes, or undefined when it is not one hetmm accepts. */
export function sniffImageFormat(b: Uint8Array): ImageFormat | undefined {
  if (startsWith(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (startsWith(b, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(b, ascii('BM')) && b.length >= 26) return 'bmp';
  if (startsWith(b, [0x49, 0x49, 0x2a, 0x00]) || startsWith(b, [0x4d, 0x4d, 0x00, 0x2a])) return 'tiff';
  if (startsWith(b, ascii('RIFF')) && startsWith(b, ascii('WEBP'), 8)) return 'webp';
  if (startsWith(b, ascii('GIF87a')) || startsWith(b, ascii('GIF89a'))) return 'gif';
  return undefined;
}

/** Words for what a refused file seems to be, for the error message. */
export function describeRefusedContent(b: Uint8Array): string {
  const head = Buffer.from(b.subarray(0, 512)).toString('latin1').trimStart().toLowerCase();
  if (head.startsWith('<svg') || (head.startsWith('<?xml') && head.includes('<svg')) || head.includes('<svg')) return 'an SVG drawing';
  if (head.startsWith('%pdf')) return 'a PDF document';
  if (startsWith(b, ascii('ftyp'), 4)) return 'a HEIF/AVIF or MP4 file';
  if (startsWith(b, [0x49, 0x49, 0x2b, 0x00]) || startsWith(b, [0x4d, 0x4d, 0x00, 0x2b])) return 'a BigTIFF file';
  if (head.startsWith('<')) return 'an XML or HTML text';
  const printable = b.subarray(0, 64).every((c) => c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127));
  return printable && b.length > 0 ? 'a text file' : 'not an image format hetmm knows';
}

export const ACCEPTED_FORMATS_TEXT = 'PNG, JPEG, BMP, TIFF, WebP or GIF (a single still image)';
