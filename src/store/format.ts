/**
 * The template store file format, version 3 (docs/STORE_FORMAT.md): version
 * 2 plus an embedded model section in the base section (a store fitted int8
 * end to end carries its int8 backbone: one file is one line). A store
 * without an embedded model is still written as version 2. Version 1 is the
 * version 2 base section without `lineage` and without records.
 *
 *   0   8  magic "HETMMTS\0"
 *   8   4  uint32 LE format version (3 with an embedded model, else 2)
 *   12  4  uint32 LE header length L (bytes of UTF-8 JSON)
 *   16  L  header JSON (StoreHeader)
 *   ..     zero padding to a multiple of 64: the data section starts there
 *   ..     per layer: N*C*H*W little-endian float32 or float16 elements at
 *          dataStart + layer.offset (offsets are multiples of 64, in order,
 *          zero padding between layers)
 *   ..     version 3 with header.model: the model's .onnx bytes at
 *          dataStart + model.offset (the next multiple of 64 after the last layer)
 *   D   32 sha256 of bytes [0, D)
 *   D+32 8 end magic "HETMMEND"
 *   then zero or more append records (hot updates), each:
 *   0   8  "HETMMREC"
 *   8   8  uint64 LE record length T (prefix to end magic inclusive)
 *   16  8  uint64 LE bitwise NOT of T (a damaged length is corruption, not a torn tail)
 *   24  4  uint32 LE record header length H
 *   28  H  record header JSON {lineage, first, count, files}; a removal record
 *          (version 4) has count 0, files [] and `remove`: [ids], and no data
 *   ..     zero padding to a multiple of 64 bytes from the record start
 *   ..     per layer in order: count*C*H*W elements of the store's dtype
 *   T-40 32 sha256 of record bytes [0, T-40)
 *   T-8 8  "HETMMRCE"
 */
import type { BackboneDescription, BackboneIdentity } from '../backbone/description.js';
import type { FeatureDType } from './feature-stack.js';

export const STORE_MAGIC = Buffer.from('HETMMTS\0', 'latin1');
export const STORE_END_MAGIC = Buffer.from('HETMMEND', 'latin1');
/** The newest version (written when a store embeds its model; version 2 otherwise). */
export const STORE_FORMAT_VERSION = 3;
/**
 * Version 4: a version 2 or 3 file that holds removal records (issue 21). The
 * first removal patches the version field to 4 in place (before its record is
 * written), so a reader that knows only versions 1-3 refuses the file as
 * "written by a newer hetmm" instead of ignoring the removals. The base
 * checksum of a version 4 file is computed as written, with the version field
 * of its base (3 with an embedded model, else 2): see baseVersionOf.
 */
export const STORE_FORMAT_VERSION_WITH_REMOVALS = 4;
/** The version of a store without an embedded model (readable by hetmm before version 3). */
export const STORE_FORMAT_VERSION_WITHOUT_MODEL = 2;
/** Versions this code reads (1: no lineage, no records; 2: no embedded model). */
export const READABLE_VERSIONS: readonly number[] = [1, 2, 3, 4];
export const RECORD_MAGIC = Buffer.from('HETMMREC', 'latin1');
export const RECORD_END_MAGIC = Buffer.from('HETMMRCE', 'latin1');
export const RECORD_PREFIX_BYTES = 28;
/** A record header (file names of one hot update) larger than this is corrupt. */
export const MAX_RECORD_HEADER_BYTES = 64 * 1024 * 1024;
export const PREFIX_BYTES = 16;
export const ALIGNMENT = 64;
export const CHECKSUM_BYTES = 32;
export const TRAILER_BYTES = CHECKSUM_BYTES + STORE_END_MAGIC.length;
/** An embedded model larger than this is corrupt (onnxruntime loads protobuf models up to 2 GiB). */
export const MAX_MODEL_BYTES = 2 ** 31 - 1;
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

/** Version 3: the model embedded in the base section (the int8 backbone a store was fitted with). */
export interface StoreHeaderModel {
  /** bytes from the start of the data section: the first multiple of 64 after the last layer */
  readonly offset: number;
  readonly byteLength: number;
  /** sha256 of the model bytes (hex): the backbone identity's modelSha256 */
  readonly sha256: string;
  /** how to run it (Backbone.load's description; there is no `<model>.json` beside it) */
  readonly description: BackboneDescription;
}

export interface StoreHeader {
  readonly format: 'hetmm-template-store';
  /**
   * Version 2: identifies the sequence of templates this file holds, kept by
   * appends and by rewrites of the same store, new for a new store (fit,
   * compress). A writer merges other processes' appends only into a store
   * of the same lineage. Version 1 files get 'v1-' + their checksum.
   */
  readonly lineage?: string;
  readonly backbone: BackboneIdentity;
  readonly dtype: FeatureDType;
  /** images in the base section (version 2: records add more) */
  readonly count: number;
  readonly files: string[];
  readonly meta: Record<string, unknown>;
  readonly layers: StoreHeaderLayer[];
  /** version 3 only: the embedded model */
  readonly model?: StoreHeaderModel;
  /**
   * Optional: the id of each base template (null: none), kept through full
   * saves so that a hot update retried after a compaction is still
   * recognised (TemplateStore.appendToFile's idempotency).
   */
  readonly ids?: Array<string | null>;
  /** Optional: the highest writer fencing token of any update in the store (appendToFile's `fence`). */
  readonly fence?: number;
  /** Optional: per base template how it came (null: fitted; else appended at `at`, ms since the epoch, by update `update`), kept through full saves */
  readonly origins?: Array<TemplateOrigin | null>;
  /** Optional: the ids of the normals removed so far in this lineage (removal records compacted into a full save), in order */
  readonly removed?: string[];
}

/** How an appended template came into the store (StoreHeader.origins). */
export interface TemplateOrigin {
  /** ms since the epoch */
  readonly at?: number;
  readonly update?: string;
}

export function align(n: number, to = ALIGNMENT): number {
  return Math.ceil(n / to) * to;
}

export function bytesPerElement(dtype: FeatureDType): number {
  return dtype === 'float32' ? 4 : 2;
}

/** The JSON header of one append record. */
export interface RecordHeader {
  readonly lineage: string;
  /** index of the record's first template (the count before it) */
  readonly first: number;
  readonly count: number;
  readonly files: string[];
  /** optional: the hot update's id (an idempotency key, a queue job id) */
  readonly update?: string;
  /** optional: one id per image (null: none); an image whose id the store holds is never appended again */
  readonly ids?: Array<string | null>;
  /** optional: the writer's fencing token; a writer whose token is lower than one recorded is refused */
  readonly fence?: number;
  /** optional: when the record was written, ms since the epoch */
  readonly at?: number;
  /**
   * A removal record (version 4; count 0, no files, no data): the ids of the
   * normals it removes. It removes the templates before it that hold these ids.
   */
  readonly remove?: string[];
}

/** The version field a base section was written (and checksummed) with: a version 4 file's base is a version 3 or 2 one. */
export function baseVersionOf(version: number, hasModel: boolean): number {
  return version === STORE_FORMAT_VERSION_WITH_REMOVALS ? (hasModel ? STORE_FORMAT_VERSION : STORE_FORMAT_VERSION_WITHOUT_MODEL) : version;
}
