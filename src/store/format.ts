/**
 * The template store file format, version 1 (docs/STORE_FORMAT.md):
 *
 *   0   8  magic "HETMMTS\0"
 *   8   4  uint32 LE format version (1)
 *   12  4  uint32 LE header length L (bytes of UTF-8 JSON)
 *   16  L  header JSON (StoreHeader)
 *   ..     zero padding to a multiple of 64: the data section starts there
 *   ..     per layer: N*C*H*W little-endian float32 or float16 elements at
 *          dataStart + layer.offset (offsets are multiples of 64, in order,
 *          zero padding between layers)
 *   D   32 sha256 of bytes [0, D)
 *   D+32 8 end magic "HETMMEND"
 */
import type { BackboneIdentity } from '../backbone/description.js';
import type { FeatureDType } from './feature-stack.js';

export const STORE_MAGIC = Buffer.from('HETMMTS\0', 'latin1');
export const STORE_END_MAGIC = Buffer.from('HETMMEND', 'latin1');
export const STORE_FORMAT_VERSION = 1;
export const PREFIX_BYTES = 16;
export const ALIGNMENT = 64;
export const CHECKSUM_BYTES = 32;
export const TRAILER_BYTES = CHECKSUM_BYTES + STORE_END_MAGIC.length;
/** A header larger than this is certainly corrupt (file names of ~1M images fit easily). */
export const MAX_HEADER_BYTES = 256 * 1024 * 1024;

export interface StoreHeaderLayer {
  readonly name: string;
  /** [N, C, H, W] */
  readonly shape: [number, number, number, number];
  /** bytes from the start of the data section; a multiple of 64 */
  readonly offset: number;
  readonly byteLength: number;
}

export interface StoreHeader {
  readonly format: 'hetmm-template-store';
  readonly backbone: BackboneIdentity;
  readonly dtype: FeatureDType;
  readonly count: number;
  readonly files: string[];
  readonly meta: Record<string, unknown>;
  readonly layers: StoreHeaderLayer[];
}

export function align(n: number, to = ALIGNMENT): number {
  return Math.ceil(n / to) * to;
}

export function bytesPerElement(dtype: FeatureDType): number {
  return dtype === 'float32' ? 4 : 2;
}
