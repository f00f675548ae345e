/**
 * The template store: HETMM's "memory" of normal images, per backbone layer
 * an [N, C, H, W] stack of L2-normalised features, with the backbone's
 * identity, the source file names and free-form metadata.
 *
 * Hot update: append() writes past the end of per-layer buffers that grow
 * by capacity doubling (amortised O(1) per image). Rows [0, count) are never
 * written again, so a FeatureStack handed out earlier (shape N = old count)
 * stays valid and unchanged while matching runs and new images arrive.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { identityDifference, type BackboneIdentity } from '../backbone/description.js';
import { HetmmError } from '../errors.js';
import type { FeatureDType, FeatureStack } from './feature-stack.js';
import { float32ArrayToFloat16 } from './float16.js';
import {
  CHECKSUM_BYTES,
  MAX_HEADER_BYTES,
  PREFIX_BYTES,
  STORE_END_MAGIC,
  STORE_FORMAT_VERSION,
  STORE_MAGIC,
  TRAILER_BYTES,
  align,
  bytesPerElement,
  type StoreHeader,
  type StoreHeaderLayer,
} from './format.js';

/** Largest typed array V8 allows (elements); a layer's N*C*H*W must fit. */
const MAX_ELEMENTS = 2 ** 32;
/** I/O chunk size: big enough for throughput, small enough to keep memory flat. */
const CHUNK_BYTES = 16 * 1024 * 1024;

export interface StoreSnapshot {
  readonly count: number;
  readonly layers: readonly FeatureStack[];
  readonly files: readonly string[];
}

export interface StoreSaveOptions {
  /**
   * Fault injection for tests: called before each chunk is written with the
   * bytes written so far; throwing simulates a failed write (e.g. ENOSPC).
   */
  readonly beforeWrite?: (bytesWritten: number) => void;
}

export interface StoreDescription {
  readonly backbone: { name: string; modelSha256: string; inputSize: readonly [number, number] };
  readonly dtype: FeatureDType;
  readonly count: number;
  readonly layers: ReadonlyArray<{ name: string; shape: [number, number, number, number]; stride: number }>;
  /** size of the file this store would be saved as (exactly, header included) */
  readonly bytesOnDisk: number;
  /** memory held by the feature buffers (capacity, not just count) */
  readonly bytesInMemory: number;
  readonly meta: Record<string, unknown>;
}

interface LayerBuffer {
  readonly name: string;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  /** C*H*W: elements per image */
  readonly elementsPerImage: number;
  data: Float32Array | Uint16Array;
}

function isLittleEndian(): void {
  if (os.endianness() !== 'LE') throw new HetmmError('E_INTERNAL', 'template stores are only supported on little-endian machines');
}

function bytesOf(a: Float32Array | Uint16Array, fromElement: number, toElement: number): Buffer {
  return Buffer.from(a.buffer, a.byteOffset + fromElement * a.BYTES_PER_ELEMENT, (toElement - fromElement) * a.BYTES_PER_ELEMENT);
}

export class TemplateStore {
  readonly identity: BackboneIdentity;
  readonly dtype: FeatureDType;
  /** Extension object saved in the header (threshold, preset, PTS info, ...). Must be JSON-serialisable. */
  meta: Record<string, unknown>;
  #files: string[];
  #count: number;
  #capacity: number;
  readonly #layers: LayerBuffer[];

  private constructor(identity: BackboneIdentity, dtype: FeatureDType, meta: Record<string, unknown>) {
    this.identity = identity;
    this.dtype = dtype;
    this.meta = meta;
    this.#files = [];
    this.#count = 0;
    this.#capacity = 0;
    this.#layers = identity.layers.map((l) => ({
      name: l.name,
      channels: l.channels,
      height: l.height,
      width: l.width,
      elementsPerImage: l.channels * l.height * l.width,
      data: dtype === 'float32' ? new Float32Array(0) : new Uint16Array(0),
    }));
  }

  static create(identity: BackboneIdentity, options: { dtype?: FeatureDType; meta?: Record<string, unknown> } = {}): TemplateStore {
    const dtype = options.dtype ?? 'float32';
    if (dtype !== 'float32' && dtype !== 'float16') {
      throw new HetmmError('E_ARGUMENT', `Expected dtype 'float32' or 'float16' but received ${JSON.stringify(dtype)}`);
    }
    if (identity.layers.length === 0) throw new HetmmError('E_ARGUMENT', 'Expected a backbone identity with at least one layer');
    for (const l of identity.layers) {
      if (![l.channels, l.height, l.width].every((v) => Number.isInteger(v) && v > 0)) {
        throw new HetmmError('E_ARGUMENT', `Expected positive integer channels/height/width for layer '${l.name}' but received ${l.channels}x${l.height}x${l.width}`);
      }
    }
    return new TemplateStore(identity, dtype, { ...(options.meta ?? {}) });
  }

  get count(): number {
    return this.#count;
  }

  /** Source file names, in append order (a copy). */
  get files(): string[] {
    return this.#files.slice();
  }

  /** Memory held by the feature buffers, in bytes (capacity, so >= what count needs). */
  get bytes(): number {
    return this.#layers.reduce((sum, l) => sum + l.data.byteLength, 0);
  }

  get layerCount(): number {
    return this.#layers.length;
  }

  /** Layer i as a FeatureStack with N = the current count; stays valid after later appends. */
  layer(i: number): FeatureStack {
    const l = this.#layers[i];
    if (!Number.isInteger(i) || l === undefined) {
      throw new HetmmError('E_ARGUMENT', `Expected layer index 0..${this.#layers.length - 1} but received ${String(i)}`);
    }
    return Object.freeze({
      dtype: this.dtype,
      shape: Object.freeze([this.#count, l.channels, l.height, l.width] as [number, number, number, number]),
      data: l.data,
    });
  }

  /** An immutable view of the current contents; later appends do not change it. */
  snapshot(): StoreSnapshot {
    return Object.freeze({
      count: this.#count,
      layers: Object.freeze(this.#layers.map((_, i) => this.layer(i))),
      files: Object.freeze(this.#files.slice()),
    });
  }

  /**
   * Add one image's features (per layer [C, H, W] float32, L2-normalised
   * over C). Amortised O(1): buffers double when full.
   */
  append(features: readonly Float32Array[], file: string): void {
    if (features.length !== this.#layers.length) {
      throw new HetmmError('E_ARGUMENT', `Expected features for ${this.#layers.length} layers but received ${features.length}`);
    }
    this.#layers.forEach((l, i) => {
      const f = features[i];
      if (!(f instanceof Float32Array) || f.length !== l.elementsPerImage) {
        throw new HetmmError(
          'E_ARGUMENT',
          `Expected layer '${l.name}' features as a Float32Array of ${l.channels}*${l.height}*${l.width} = ${l.elementsPerImage} elements but received ${f instanceof Float32Array ? `length ${f.length}` : typeof f}`,
        );
      }
    });
    if (typeof file !== 'string') throw new HetmmError('E_ARGUMENT', `Expected file name string but received ${typeof file}`);
    const n = this.#count;
    if (n + 1 > this.#capacity) this.#grow(n + 1);
    this.#layers.forEach((l, i) => {
      const offset = n * l.elementsPerImage;
      if (l.data instanceof Float32Array) l.data.set(features[i], offset);
      else float32ArrayToFloat16(features[i], l.data, offset);
    });
    this.#files.push(file);
    this.#count = n + 1;
  }

  /**
   * Make room for `additional` more images in one allocation of exactly that
   * size, so that a known batch (fit, add of a folder) does not pay for
   * doubling: a 761-image float32 store is 5.6 GB, doubling would peak near 2x.
   */
  reserve(additional: number): void {
    if (!Number.isInteger(additional) || additional < 0) {
      throw new HetmmError('E_ARGUMENT', `Expected a non-negative integer for additional but received ${String(additional)}`);
    }
    if (this.#count + additional > this.#capacity) this.#grow(this.#count + additional, true);
  }

  /** Reallocate every layer to at least `needed` images, copying [0, count); old buffers stay untouched for old snapshots. */
  #grow(needed: number, exact = false): void {
    const maxImages = Math.min(...this.#layers.map((l) => Math.floor(MAX_ELEMENTS / l.elementsPerImage)));
    if (needed > maxImages) {
      throw new HetmmError('E_ARGUMENT', `a template store holds at most ${maxImages} images with this backbone (one typed array per layer)`);
    }
    const capacity = exact ? needed : Math.min(maxImages, Math.max(needed, this.#capacity * 2, 4));
    for (const l of this.#layers) {
      const size = capacity * l.elementsPerImage;
      const next = l.data instanceof Float32Array ? new Float32Array(size) : new Uint16Array(size);
      next.set(l.data.subarray(0, this.#count * l.elementsPerImage));
      l.data = next;
    }
    this.#capacity = capacity;
  }

  /** The header and layout this store would be saved with. */
  #layout(): { header: StoreHeader; headerBytes: Buffer; dataStart: number; dataEnd: number } {
    const bpe = bytesPerElement(this.dtype);
    let offset = 0;
    const layers: StoreHeaderLayer[] = this.#layers.map((l) => {
      const byteLength = this.#count * l.elementsPerImage * bpe;
      const entry = { name: l.name, shape: [this.#count, l.channels, l.height, l.width] as [number, number, number, number], offset, byteLength };
      offset = align(offset + byteLength);
      return entry;
    });
    const header: StoreHeader = {
      format: 'hetmm-template-store',
      backbone: this.identity,
      dtype: this.dtype,
      count: this.#count,
      files: this.#files,
      meta: this.meta,
      layers,
    };
    let headerBytes: Buffer;
    try {
      headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
    } catch (e) {
      throw new HetmmError('E_ARGUMENT', `store meta is not JSON-serialisable: ${(e as Error).message}`, { cause: e });
    }
    const dataStart = align(PREFIX_BYTES + headerBytes.length);
    const last = layers[layers.length - 1];
    return { header, headerBytes, dataStart, dataEnd: dataStart + last.offset + last.byteLength };
  }

  describe(): StoreDescription {
    const { dataEnd } = this.#layout();
    return {
      backbone: { name: this.identity.name, modelSha256: this.identity.modelSha256, inputSize: this.identity.inputSize },
      dtype: this.dtype,
      count: this.#count,
      layers: this.#layers.map((l, i) => ({
        name: l.name,
        shape: [this.#count, l.channels, l.height, l.width] as [number, number, number, number],
        stride: this.identity.layers[i].stride,
      })),
      bytesOnDisk: dataEnd + TRAILER_BYTES,
      bytesInMemory: this.bytes,
      meta: this.meta,
    };
  }

  /**
   * Save atomically: stream to `<path>.tmp-<pid>-<random>` in the same
   * directory, fsync, rename over `path`, fsync the directory. On failure the
   * temp file is removed and the previous file at `path` is untouched.
   */
  async save(filePath: string, options: StoreSaveOptions = {}): Promise<void> {
    isLittleEndian();
    const { headerBytes, dataStart, header } = this.#layout();
    const target = path.resolve(filePath);
    const temp = `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
    const hash = createHash('sha256');
    let written = 0;
    let handle: FileHandle | undefined;
    const write = async (chunk: Buffer): Promise<void> => {
      options.beforeWrite?.(written);
      hash.update(chunk);
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await handle!.write(chunk, done, chunk.length - done, written + done);
        done += bytesWritten;
      }
      written += chunk.length;
    };
    try {
      handle = await open(temp, 'wx');
      const prefix = Buffer.alloc(dataStart);
      STORE_MAGIC.copy(prefix, 0);
      prefix.writeUInt32LE(STORE_FORMAT_VERSION, 8);
      prefix.writeUInt32LE(headerBytes.length, 12);
      headerBytes.copy(prefix, PREFIX_BYTES);
      await write(prefix);
      for (let i = 0; i < this.#layers.length; i++) {
        const l = this.#layers[i];
        const h = header.layers[i];
        if (written < dataStart + h.offset) await write(Buffer.alloc(dataStart + h.offset - written));
        const total = this.#count * l.elementsPerImage;
        const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / l.data.BYTES_PER_ELEMENT));
        for (let e = 0; e < total; e += perChunk) await write(bytesOf(l.data, e, Math.min(total, e + perChunk)));
      }
      const trailer = Buffer.concat([hash.copy().digest(), STORE_END_MAGIC]);
      options.beforeWrite?.(written);
      await handle.write(trailer, 0, trailer.length, written);
      await handle.sync();
      await handle.close();
      handle = undefined;
      await rename(temp, target);
    } catch (e) {
      await handle?.close().catch(() => undefined);
      await rm(temp, { force: true }).catch(() => undefined);
      const reason = e instanceof Error ? e.message : String(e);
      throw new HetmmError(
        'E_STORE_WRITE',
        `could not write template store '${filePath}' (${reason}); the previous file at that path, if any, is untouched`,
        { cause: e },
      );
    }
    // Make the rename itself durable. Not possible on every platform (Windows): best effort.
    try {
      const dir = await open(path.dirname(target), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch {
      // the data is written and renamed; only durability across power loss is weaker
    }
  }

  /**
   * Load and verify a store (magic, version, header, sizes, sha256 checksum),
   * and with `expect` that it was built with the same backbone.
   */
  static async load(filePath: string, options: { expect?: BackboneIdentity } = {}): Promise<TemplateStore> {
    isLittleEndian();
    let handle: FileHandle;
    try {
      handle = await open(filePath, 'r');
    } catch (e) {
      throw new HetmmError('E_STORE_READ', `cannot read template store '${filePath}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
    }
    let header: StoreHeader;
    let buffers: Array<Float32Array | Uint16Array>;
    try {
      ({ header, buffers } = await readStore(handle, filePath, options.expect));
    } finally {
      await handle.close();
    }
    // Buffers are allocated exactly (capacity = count); the first append grows them.
    const store = new TemplateStore(header.backbone, header.dtype, header.meta);
    store.#layers.forEach((l, i) => {
      l.data = buffers[i];
    });
    store.#files = header.files.slice();
    store.#count = header.count;
    store.#capacity = header.count;
    return store;
  }
}

async function readExactly(handle: FileHandle, target: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await handle.read(target, done, target.length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Structural validation of a parsed header; returns why it is invalid, or undefined. */
function headerProblem(h: unknown): string | undefined {
  if (!isObject(h)) return 'header is not a JSON object';
  if (h.format !== 'hetmm-template-store') return `header.format is ${JSON.stringify(h.format)}, expected "hetmm-template-store"`;
  if (h.dtype !== 'float32' && h.dtype !== 'float16') return `header.dtype is ${JSON.stringify(h.dtype)}, expected "float32" or "float16"`;
  if (!Number.isInteger(h.count) || (h.count as number) < 0) return `header.count is ${JSON.stringify(h.count)}, expected a non-negative integer`;
  if (!Array.isArray(h.files) || h.files.length !== h.count || !h.files.every((f) => typeof f === 'string')) {
    return `header.files must be ${String(h.count)} strings`;
  }
  if (!isObject(h.meta)) return 'header.meta must be an object';
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
    const elements = shape[0] * shape[1] * shape[2] * shape[3];
    if (l.byteLength !== elements * bpe) return `header.layers[${i}].byteLength is ${String(l.byteLength)}, expected ${elements * bpe}`;
    if (elements > MAX_ELEMENTS) return `header.layers[${i}] has ${elements} elements, more than this platform's typed arrays hold`;
    if (l.offset !== expectedOffset) return `header.layers[${i}].offset is ${String(l.offset)}, expected ${expectedOffset}`;
    expectedOffset = align(expectedOffset + elements * bpe);
  }
  return undefined;
}

async function readStore(
  handle: FileHandle,
  filePath: string,
  expect: BackboneIdentity | undefined,
): Promise<{ header: StoreHeader; buffers: Array<Float32Array | Uint16Array> }> {
  const formatError = (why: string): HetmmError => new HetmmError('E_STORE_FORMAT', `template store '${filePath}': ${why}`);
  const size = (await handle.stat()).size;
  if (size < PREFIX_BYTES) {
    // Distinguish "not ours" from "ours but cut short".
    const head = Buffer.alloc(size);
    await readExactly(handle, head, 0);
    const n = Math.min(size, STORE_MAGIC.length);
    if (size > 0 && head.subarray(0, n).equals(STORE_MAGIC.subarray(0, n))) throw formatError(`truncated: expected at least ${PREFIX_BYTES} bytes, found ${size}`);
    throw formatError(`not a hetmm template store (bad magic; the file has only ${size} bytes)`);
  }
  const prefix = Buffer.alloc(PREFIX_BYTES);
  await readExactly(handle, prefix, 0);
  if (!prefix.subarray(0, 8).equals(STORE_MAGIC)) {
    throw formatError(`not a hetmm template store (bad magic ${JSON.stringify(prefix.subarray(0, 8).toString('latin1'))}, expected "HETMMTS\\0")`);
  }
  const version = prefix.readUInt32LE(8);
  if (version > STORE_FORMAT_VERSION) {
    throw formatError(`written by a newer hetmm (format version ${version}; this hetmm reads version ${STORE_FORMAT_VERSION}): upgrade hetmm`);
  }
  if (version !== STORE_FORMAT_VERSION) throw formatError(`unknown format version ${version}`);
  const headerLength = prefix.readUInt32LE(12);
  if (headerLength === 0 || headerLength > MAX_HEADER_BYTES) throw formatError(`implausible header length ${headerLength}`);
  if (PREFIX_BYTES + headerLength + TRAILER_BYTES > size) {
    throw formatError(`truncated: expected at least ${PREFIX_BYTES + headerLength + TRAILER_BYTES} bytes, found ${size}`);
  }
  const hash = createHash('sha256');
  hash.update(prefix);
  const headerBytes = Buffer.alloc(headerLength);
  await readExactly(handle, headerBytes, PREFIX_BYTES);
  hash.update(headerBytes);
  let parsed: unknown;
  try {
    parsed = JSON.parse(headerBytes.toString('utf8'));
  } catch (e) {
    throw formatError(`header is not valid JSON (${(e as Error).message}): file corrupted`);
  }
  const problem = headerProblem(parsed);
  if (problem !== undefined) throw formatError(`invalid header: ${problem}`);
  const header = parsed as StoreHeader;
  const dataStart = align(PREFIX_BYTES + headerLength);
  const last = header.layers[header.layers.length - 1];
  const dataEnd = dataStart + last.offset + last.byteLength;
  const expectedSize = dataEnd + TRAILER_BYTES;
  if (size < expectedSize) throw formatError(`truncated: expected ${expectedSize} bytes, found ${size}`);
  if (size > expectedSize) throw formatError(`unexpected extra data: expected ${expectedSize} bytes, found ${size}`);

  // Read padding and layer data in chunks, hashing as we go.
  let position = PREFIX_BYTES + headerLength;
  const hashRange = async (target: Uint8Array): Promise<void> => {
    for (let done = 0; done < target.length; done += CHUNK_BYTES) {
      const part = target.subarray(done, Math.min(target.length, done + CHUNK_BYTES));
      await readExactly(handle, part, position);
      hash.update(part);
      position += part.length;
    }
  };
  const buffers: Array<Float32Array | Uint16Array> = [];
  for (const l of header.layers) {
    if (position < dataStart + l.offset) await hashRange(new Uint8Array(dataStart + l.offset - position));
    const elements = l.shape[0] * l.shape[1] * l.shape[2] * l.shape[3];
    const data = header.dtype === 'float32' ? new Float32Array(elements) : new Uint16Array(elements);
    await hashRange(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    buffers.push(data);
  }
  const trailer = Buffer.alloc(TRAILER_BYTES);
  await readExactly(handle, trailer, dataEnd);
  if (!trailer.subarray(CHECKSUM_BYTES).equals(STORE_END_MAGIC)) throw formatError('bad end magic: file corrupted or truncated');
  if (!hash.digest().equals(trailer.subarray(0, CHECKSUM_BYTES))) throw formatError('checksum mismatch: file corrupted');

  if (expect !== undefined) {
    const difference = identityDifference(header.backbone, expect);
    if (difference !== undefined) {
      throw new HetmmError(
        'E_STORE_MISMATCH',
        `template store '${filePath}' was built with backbone '${header.backbone.name}' but the current backbone is '${expect.name}': ${difference} (store vs current)`,
      );
    }
  }
  return { header, buffers };
}
