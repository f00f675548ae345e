/**
 * Reading and appending the on-disk store (layout in ./format.ts and
 * docs/STORE_FORMAT.md), separate from the in-memory TemplateStore.
 *
 * indexStoreFile() reads only the headers: the base header and, for
 * version 2, each append record's prefix, header and end magic. That is
 * what a writer needs under the lock to learn the on-disk version (lineage
 * and template count) without reading gigabytes. Data is read and verified
 * (sha256) by readBaseInto / readRecordInto.
 *
 * Torn tail: a record whose bytes end early, or whose end magic is missing
 * at the very end of the file, is an append that never completed (its
 * writer was killed, or is still writing). Readers ignore it; the next
 * writer truncates it under the lock. Anything else that does not parse is
 * corruption (E_STORE_FORMAT).
 */
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { lstat, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { validateBackboneDescription, type BackboneDescription } from '../backbone/description.js';
import { HetmmError } from '../errors.js';
import {
  CHECKSUM_BYTES,
  MAX_MODEL_BYTES,
  MAX_HEADER_BYTES,
  MAX_RECORD_HEADER_BYTES,
  PREFIX_BYTES,
  READABLE_VERSIONS,
  RECORD_END_MAGIC,
  RECORD_MAGIC,
  RECORD_PREFIX_BYTES,
  STORE_END_MAGIC,
  STORE_FORMAT_VERSION_WITH_REMOVALS,
  STORE_MAGIC,
  TRAILER_BYTES,
  align,
  baseVersionOf,
  bytesPerElement,
  type RecordHeader,
  type StoreHeader,
} from './format.js';

/** Largest typed array V8 allows (elements); a layer's N*C*H*W must fit. */
export const MAX_ELEMENTS = 2 ** 32;
/** I/O chunk size: big enough for throughput, small enough to keep memory flat. */
export const CHUNK_BYTES = 16 * 1024 * 1024;

export interface RecordEntry {
  /** byte offset of the record in the file */
  readonly offset: number;
  readonly length: number;
  readonly header: RecordHeader;
  /** absolute byte offset of the record's first layer */
  readonly dataStart: number;
}

export interface StoreFileIndex {
  readonly version: number;
  /** the base section's header (its count covers the base only) */
  readonly header: StoreHeader;
  readonly lineage: string;
  readonly dataStart: number;
  /** byte offset just past the base section's end magic */
  readonly baseEnd: number;
  readonly baseChecksum: Buffer;
  readonly records: readonly RecordEntry[];
  /** byte offset just past the last complete record (where the next append goes) */
  readonly committedEnd: number;
  readonly size: number;
  /** templates in base + records */
  readonly count: number;
}

export function formatError(filePath: string, why: string): HetmmError {
  return new HetmmError('E_STORE_FORMAT', `template store '${filePath}': ${why}`);
}

export async function readExactly(handle: FileHandle, target: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await handle.read(target, done, target.length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

/** Reads `target.length` bytes at `position` in chunks, hashing them. */
async function readHashed(handle: FileHandle, target: Uint8Array, position: number, hash: Hash): Promise<void> {
  for (let done = 0; done < target.length; done += CHUNK_BYTES) {
    const part = target.subarray(done, Math.min(target.length, done + CHUNK_BYTES));
    await readExactly(handle, part, position + done);
    hash.update(part);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Optional per-image ids: `count` entries, each a non-empty string (at most 200 characters) or null. */
function validIds(ids: unknown, count: number): boolean {
  return Array.isArray(ids) && ids.length === count && ids.every((id) => id === null || (typeof id === 'string' && id.length > 0 && id.length <= 200));
}

function validOrigin(o: unknown): boolean {
  return isObject(o) && (o.at === undefined || (Number.isSafeInteger(o.at) && (o.at as number) >= 0)) && (o.update === undefined || typeof o.update === 'string');
}

/** Structural validation of a parsed base header; returns why it is invalid, or undefined. */
function headerProblem(h: unknown, version: number): string | undefined {
  if (!isObject(h)) return 'header is not a JSON object';
  if (h.format !== 'hetmm-template-store') return `header.format is ${JSON.stringify(h.format)}, expected "hetmm-template-store"`;
  if (version >= 2 && (typeof h.lineage !== 'string' || h.lineage.length === 0 || h.lineage.length > 200)) {
    return 'header.lineage must be a non-empty string';
  }
  if (h.dtype !== 'float32' && h.dtype !== 'float16') return `header.dtype is ${JSON.stringify(h.dtype)}, expected "float32" or "float16"`;
  if (!Number.isInteger(h.count) || (h.count as number) < 0) return `header.count is ${JSON.stringify(h.count)}, expected a non-negative integer`;
  if (!Array.isArray(h.files) || h.files.length !== h.count || !h.files.every((f) => typeof f === 'string')) {
    return `header.files must be ${String(h.count)} strings`;
  }
  if (!isObject(h.meta)) return 'header.meta must be an object';
  if (h.ids !== undefined && !validIds(h.ids, h.count as number)) return `header.ids must be ${String(h.count)} strings or nulls`;
  if (h.fence !== undefined && !(Number.isSafeInteger(h.fence) && (h.fence as number) >= 0)) return 'header.fence must be a non-negative integer';
  if (h.origins !== undefined && !(Array.isArray(h.origins) && h.origins.length === h.count && h.origins.every((o) => o === null || validOrigin(o)))) {
    return `header.origins must be ${String(h.count)} nulls or {at, update} objects`;
  }
  if (h.removed !== undefined && !(Array.isArray(h.removed) && validIds(h.removed, h.removed.length) && !h.removed.includes(null))) return 'header.removed must be ids';
  const b = h.backbone;
  if (!isObject(b) || typeof b.name !== 'string' || typeof b.modelSha256 !== 'string' || !Array.isArray(b.inputSize) || !Array.isArray(b.layers)) {
    return 'header.backbone must be {name, modelSha256, inputSize, layers}';
  }
  if (!Array.isArray(h.layers) || h.layers.length !== b.layers.length || h.layers.length === 0) {
    return 'header.layers must list one entry per backbone layer';
  }
  const bpe = bytesPerElement(h.dtype);
  let expectedOffset = 0;
  for (let i = 0; i < h.layers.length; i++) {
    const l: unknown = h.layers[i];
    const bl: unknown = b.layers[i];
    if (!isObject(l) || !isObject(bl)) return `header.layers[${i}] is not an object`;
    const shape = l.shape;
    if (!Array.isArray(shape) || shape.length !== 4 || !shape.every((v) => Number.isInteger(v) && v >= 0)) {
      return `header.layers[${i}].shape must be [N, C, H, W]`;
    }
    if (shape[0] !== h.count || shape[1] !== bl.channels || shape[2] !== bl.height || shape[3] !== bl.width || l.name !== bl.name) {
      return `header.layers[${i}] ${String(l.name)}${JSON.stringify(shape)} disagrees with count ${String(h.count)} and backbone layer ${JSON.stringify(bl)}`;
    }
    if (!(shape[1] > 0 && shape[2] > 0 && shape[3] > 0)) return `header.layers[${i}] has an empty dimension`;
    const elements = shape[0] * shape[1] * shape[2] * shape[3];
    if (l.byteLength !== elements * bpe) return `header.layers[${i}].byteLength is ${String(l.byteLength)}, expected ${elements * bpe}`;
    if (elements > MAX_ELEMENTS) return `header.layers[${i}] has ${elements} elements, more than this platform's typed arrays hold`;
    if (l.offset !== expectedOffset) return `header.layers[${i}].offset is ${String(l.offset)}, expected ${expectedOffset}`;
    expectedOffset = align(expectedOffset + elements * bpe);
  }
  return modelProblem(h.model, version, expectedOffset, b.modelSha256);
}

/** Structural validation of header.model (version 3: the embedded model follows the last layer). */
function modelProblem(m: unknown, version: number, expectedOffset: number, backboneSha256: string): string | undefined {
  if (m === undefined) return undefined;
  if (version < 3) return `header.model (an embedded model) in a version ${version} file`;
  if (!isObject(m)) return 'header.model is not an object';
  if (m.offset !== expectedOffset) return `header.model.offset is ${String(m.offset)}, expected ${expectedOffset}`;
  if (!Number.isSafeInteger(m.byteLength) || (m.byteLength as number) < 1 || (m.byteLength as number) > MAX_MODEL_BYTES) {
    return `header.model.byteLength is ${String(m.byteLength)}, expected 1..${MAX_MODEL_BYTES}`;
  }
  if (typeof m.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(m.sha256)) return 'header.model.sha256 must be 64 hex digits';
  if (m.sha256 !== backboneSha256) return `header.model.sha256 ${m.sha256} is not the backbone's modelSha256 ${backboneSha256}`;
  try {
    validateBackboneDescription(m.description, 'header.model.description');
  } catch (e) {
    return (e as Error).message;
  }
  return undefined;
}

/** Where the base section's data ends (the checksum follows): after the embedded model, else after the last layer. */
function baseDataEnd(header: StoreHeader, dataStart: number): number {
  if (header.model !== undefined) return dataStart + header.model.offset + header.model.byteLength;
  const last = header.layers[header.layers.length - 1]!;
  return dataStart + last.offset + last.byteLength;
}

/** Elements per image of each layer, from a validated header. */
export function elementsPerImage(header: StoreHeader): number[] {
  return header.layers.map((l) => l.shape[1] * l.shape[2] * l.shape[3]);
}

/**
 * Reads the headers of a store file (not its feature data): the base
 * section's header and trailer, then every complete append record's
 * header. Throws E_STORE_FORMAT for anything that is not a torn tail.
 */
export async function indexStoreFile(handle: FileHandle, filePath: string): Promise<StoreFileIndex> {
  const info = await handle.stat();
  if (!info.isFile()) {
    throw new HetmmError('E_STORE_READ', `cannot read template store '${filePath}': ${info.isDirectory() ? 'is a directory' : 'not a regular file'}`);
  }
  const size = info.size;
  if (size < PREFIX_BYTES) {
    // Distinguish "not ours" from "ours but cut short".
    const head = Buffer.alloc(size);
    await readExactly(handle, head, 0);
    const n = Math.min(size, STORE_MAGIC.length);
    if (size > 0 && head.subarray(0, n).equals(STORE_MAGIC.subarray(0, n))) throw formatError(filePath, `truncated: expected at least ${PREFIX_BYTES} bytes, found ${size}`);
    throw formatError(filePath, `not a hetmm template store (bad magic; the file has only ${size} bytes)`);
  }
  const prefix = Buffer.alloc(PREFIX_BYTES);
  await readExactly(handle, prefix, 0);
  if (!prefix.subarray(0, 8).equals(STORE_MAGIC)) {
    throw formatError(filePath, `not a hetmm template store (bad magic ${JSON.stringify(prefix.subarray(0, 8).toString('latin1'))}, expected "HETMMTS\\0")`);
  }
  const version = prefix.readUInt32LE(8);
  if (version > STORE_FORMAT_VERSION_WITH_REMOVALS) {
    throw formatError(filePath, `written by a newer hetmm (format version ${version}; this hetmm reads versions ${READABLE_VERSIONS.join(', ')}): upgrade hetmm`);
  }
  if (!READABLE_VERSIONS.includes(version)) throw formatError(filePath, `unknown format version ${version}`);
  const headerLength = prefix.readUInt32LE(12);
  if (headerLength === 0 || headerLength > MAX_HEADER_BYTES) throw formatError(filePath, `implausible header length ${headerLength}`);
  if (PREFIX_BYTES + headerLength + TRAILER_BYTES > size) {
    throw formatError(filePath, `truncated: expected at least ${PREFIX_BYTES + headerLength + TRAILER_BYTES} bytes, found ${size}`);
  }
  const headerBytes = Buffer.alloc(headerLength);
  await readExactly(handle, headerBytes, PREFIX_BYTES);
  let parsed: unknown;
  try {
    parsed = JSON.parse(headerBytes.toString('utf8'));
  } catch (e) {
    throw formatError(filePath, `header is not valid JSON (${(e as Error).message}): file corrupted`);
  }
  const problem = headerProblem(parsed, version);
  if (problem !== undefined) throw formatError(filePath, `invalid header: ${problem}`);
  const header = parsed as StoreHeader;
  const dataStart = align(PREFIX_BYTES + headerLength);
  const dataEnd = baseDataEnd(header, dataStart);
  const baseEnd = dataEnd + TRAILER_BYTES;
  if (size < baseEnd) throw formatError(filePath, `truncated: expected ${baseEnd} bytes, found ${size}`);
  if (version === 1 && size > baseEnd) throw formatError(filePath, `unexpected extra data: expected ${baseEnd} bytes, found ${size}`);
  const trailer = Buffer.alloc(TRAILER_BYTES);
  await readExactly(handle, trailer, dataEnd);
  if (!trailer.subarray(CHECKSUM_BYTES).equals(STORE_END_MAGIC)) throw formatError(filePath, 'bad end magic: file corrupted or truncated');
  const baseChecksum = Buffer.from(trailer.subarray(0, CHECKSUM_BYTES));
  // Version 1 has no lineage: its checksum names its contents, the same in every process.
  const lineage = version === 1 ? `v1-${baseChecksum.toString('hex').slice(0, 32)}` : header.lineage!;

  const per = elementsPerImage(header);
  const bpe = bytesPerElement(header.dtype);
  const records: RecordEntry[] = [];
  let count = header.count;
  let offset = baseEnd;
  while (offset < size) {
    const entry = await readRecordHeader(handle, filePath, offset, size, lineage, count, per, bpe, version);
    if (entry === undefined) break; // torn tail
    records.push(entry);
    count += entry.header.count;
    offset += entry.length;
  }
  return { version, header, lineage, dataStart, baseEnd, baseChecksum, records, committedEnd: offset, size, count };
}

/** One record's header at `offset`, or undefined when the rest of the file is a torn (never completed) append. */
async function readRecordHeader(
  handle: FileHandle,
  filePath: string,
  offset: number,
  size: number,
  lineage: string,
  first: number,
  per: readonly number[],
  bpe: number,
  version: number,
): Promise<RecordEntry | undefined> {
  const where = `append record at byte ${offset}`;
  const remaining = size - offset;
  const prefix = Buffer.alloc(Math.min(RECORD_PREFIX_BYTES, remaining));
  await readExactly(handle, prefix, offset);
  const magicPart = prefix.subarray(0, Math.min(8, prefix.length));
  if (!magicPart.equals(RECORD_MAGIC.subarray(0, magicPart.length))) {
    if (prefix.every((b) => b === 0)) return undefined; // extended with zeros by a crash before the data reached the disk
    throw formatError(filePath, `${where}: bad record magic: file corrupted`);
  }
  if (remaining < RECORD_PREFIX_BYTES) return undefined; // a record prefix cut short
  const length = prefix.readBigUInt64LE(8);
  if ((length ^ prefix.readBigUInt64LE(16)) !== 0xffffffffffffffffn) throw formatError(filePath, `${where}: damaged record length: file corrupted`);
  const headerLength = prefix.readUInt32LE(24);
  if (headerLength === 0 || headerLength > MAX_RECORD_HEADER_BYTES || length > BigInt(Number.MAX_SAFE_INTEGER) || length < BigInt(RECORD_PREFIX_BYTES + headerLength + TRAILER_BYTES)) {
    throw formatError(filePath, `${where}: implausible record length ${length} or header length ${headerLength}`);
  }
  const total = Number(length);
  if (total > remaining) return undefined; // still being written, or its writer died
  const endMagic = Buffer.alloc(RECORD_END_MAGIC.length);
  await readExactly(handle, endMagic, offset + total - endMagic.length);
  if (!endMagic.equals(RECORD_END_MAGIC)) {
    // The end magic is written (and synced) last: without it at the end of the file, the append never completed.
    if (offset + total === size) return undefined;
    throw formatError(filePath, `${where}: bad record end magic: file corrupted`);
  }
  const headerBytes = Buffer.alloc(headerLength);
  await readExactly(handle, headerBytes, offset + RECORD_PREFIX_BYTES);
  let h: unknown;
  try {
    h = JSON.parse(headerBytes.toString('utf8'));
  } catch (e) {
    throw formatError(filePath, `${where}: record header is not valid JSON (${(e as Error).message}): file corrupted`);
  }
  // A removal record (version 4): no images, the ids it removes.
  const removal = isObject(h) && h.count === 0 && version >= STORE_FORMAT_VERSION_WITH_REMOVALS && Array.isArray(h.remove) && h.remove.length > 0 && validIds(h.remove, h.remove.length) && !h.remove.includes(null);
  if (
    !isObject(h) ||
    h.lineage !== lineage ||
    h.first !== first ||
    !Number.isInteger(h.count) ||
    ((h.count as number) < 1 && !removal) ||
    (h.remove !== undefined && !removal) ||
    (h.at !== undefined && !(Number.isSafeInteger(h.at) && (h.at as number) >= 0)) ||
    !Array.isArray(h.files) ||
    h.files.length !== h.count ||
    !h.files.every((f) => typeof f === 'string') ||
    (h.ids !== undefined && !validIds(h.ids, h.count as number)) ||
    (h.update !== undefined && typeof h.update !== 'string') ||
    (h.fence !== undefined && !(Number.isSafeInteger(h.fence) && (h.fence as number) >= 0))
  ) {
    throw formatError(filePath, `${where}: invalid record header (expected lineage ${lineage}, first ${first}, count >= 1 and as many file names, or a removal record)`);
  }
  const dataStart = offset + align(RECORD_PREFIX_BYTES + headerLength);
  const dataBytes = per.reduce((sum, p) => sum + p * (h.count as number) * bpe, 0);
  if (dataStart + dataBytes + TRAILER_BYTES !== offset + total) {
    throw formatError(filePath, `${where}: record length ${total} does not match its ${String(h.count)} images`);
  }
  if (first + (h.count as number) > MAX_ELEMENTS / Math.max(...per)) throw formatError(filePath, `${where}: more images than a store holds`);
  return { offset, length: total, header: h as unknown as RecordHeader, dataStart };
}

/**
 * Reads and verifies the base section's data into `buffers` (per layer, from
 * image 0), and the embedded model (version 3) into `model`, which must then
 * hold header.model.byteLength bytes.
 */
export async function readBaseInto(
  handle: FileHandle,
  filePath: string,
  index: StoreFileIndex,
  buffers: ReadonlyArray<Float32Array | Uint16Array>,
  model?: Uint8Array,
): Promise<void> {
  const hash = createHash('sha256');
  let position = 0;
  const hashBytes = async (target: Uint8Array): Promise<void> => {
    await readHashed(handle, target, position, hash);
    position += target.length;
  };
  // A version 4 file's base was written (and checksummed) as version 2 or 3: the first removal patched the field.
  const prefix = new Uint8Array(index.dataStart);
  await readExactly(handle, prefix, 0);
  Buffer.from(prefix.buffer, prefix.byteOffset, prefix.length).writeUInt32LE(baseVersionOf(index.version, index.header.model !== undefined), 8);
  hash.update(prefix);
  position = index.dataStart;
  for (let i = 0; i < index.header.layers.length; i++) {
    const l = index.header.layers[i]!;
    if (position < index.dataStart + l.offset) await hashBytes(new Uint8Array(index.dataStart + l.offset - position));
    const b = buffers[i]!;
    await hashBytes(new Uint8Array(b.buffer, b.byteOffset, l.byteLength));
  }
  const m = index.header.model;
  if (m !== undefined) {
    if (model?.length !== m.byteLength) throw new HetmmError('E_INTERNAL', `a buffer of ${m.byteLength} bytes is needed for the embedded model`);
    if (position < index.dataStart + m.offset) await hashBytes(new Uint8Array(index.dataStart + m.offset - position));
    await hashBytes(model);
  }
  if (!hash.digest().equals(index.baseChecksum)) throw formatError(filePath, 'checksum mismatch: file corrupted');
  if (m !== undefined && createHash('sha256').update(model!).digest('hex') !== m.sha256) throw formatError(filePath, 'embedded model: sha256 mismatch: file corrupted');
}

/**
 * The embedded model of an indexed version 3 file alone (no feature data),
 * checked against its own sha256: what a worker thread reads to run a
 * store's int8 backbone. Undefined when the file embeds none.
 */
export async function readEmbeddedModel(handle: FileHandle, filePath: string, index: StoreFileIndex): Promise<{ bytes: Uint8Array; sha256: string; description: BackboneDescription } | undefined> {
  const m = index.header.model;
  if (m === undefined) return undefined;
  const bytes = new Uint8Array(m.byteLength);
  await readExactly(handle, bytes, index.dataStart + m.offset);
  if (createHash('sha256').update(bytes).digest('hex') !== m.sha256) throw formatError(filePath, 'embedded model: sha256 mismatch: file corrupted');
  return { bytes, sha256: m.sha256, description: m.description };
}

/** Reads and verifies one record's data into `buffers` at image `record.header.first`; returns its checksum. */
export async function readRecordInto(
  handle: FileHandle,
  filePath: string,
  index: StoreFileIndex,
  record: RecordEntry,
  buffers: ReadonlyArray<Float32Array | Uint16Array>,
  atImage = record.header.first,
): Promise<Buffer> {
  const hash = createHash('sha256');
  const head = new Uint8Array(record.dataStart - record.offset);
  await readHashed(handle, head, record.offset, hash);
  let position = record.dataStart;
  const per = elementsPerImage(index.header);
  // a removal record (count 0) has no data
  for (let i = 0; i < per.length && record.header.count > 0; i++) {
    const b = buffers[i]!;
    const bytes = record.header.count * per[i]! * b.BYTES_PER_ELEMENT;
    const target = new Uint8Array(b.buffer, b.byteOffset + atImage * per[i]! * b.BYTES_PER_ELEMENT, bytes);
    await readHashed(handle, target, position, hash);
    position += bytes;
  }
  const stored = Buffer.alloc(CHECKSUM_BYTES);
  await readExactly(handle, stored, position);
  if (!hash.digest().equals(stored)) throw formatError(filePath, `append record at byte ${record.offset}: checksum mismatch: file corrupted`);
  return stored;
}

/**
 * The record bytes for one append (prefix, header, padding; the layer data
 * and trailer follow). `layerBytes` is the data size of all layers.
 */
export function recordHead(header: RecordHeader, layerBytes: number): { head: Buffer; total: number } {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headBytes = align(RECORD_PREFIX_BYTES + json.length);
  const total = headBytes + layerBytes + TRAILER_BYTES;
  const head = Buffer.alloc(headBytes);
  RECORD_MAGIC.copy(head, 0);
  head.writeBigUInt64LE(BigInt(total), 8);
  head.writeBigUInt64LE(~BigInt(total) & 0xffffffffffffffffn, 16);
  head.writeUInt32LE(json.length, 24);
  json.copy(head, RECORD_PREFIX_BYTES);
  return { head, total };
}

/**
 * The file a store path stands for: symlinks are followed (a write goes to
 * the target, the link stays), even when the target does not exist yet.
 */
export async function resolveStoreTarget(filePath: string): Promise<string> {
  let current = path.resolve(filePath);
  for (let hops = 0; hops < 40; hops++) {
    let isLink: boolean;
    try {
      isLink = (await lstat(current)).isSymbolicLink();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        // A missing file: resolve its directory (which may be a link) and keep the name.
        try {
          return path.join(await realpath(path.dirname(current)), path.basename(current));
        } catch {
          return current;
        }
      }
      throw e;
    }
    if (!isLink) return realpath(current);
    current = path.resolve(path.dirname(current), await readlink(current));
  }
  throw Object.assign(new Error(`ELOOP: too many levels of symbolic links, '${filePath}'`), { code: 'ELOOP' });
}
