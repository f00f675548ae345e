/**
 * The template store: HETMM's "memory" of normal images, per backbone layer
 * an [N, C, H, W] stack of L2-normalised features, with the backbone's
 * identity, the source file names and free-form metadata.
 *
 * In memory: append() writes past the end of per-layer buffers that grow by
 * capacity doubling (amortised O(1) per image). Rows [0, count) are never
 * written again, so a FeatureStack handed out earlier (shape N = old count)
 * stays valid and unchanged while matching runs and new images arrive.
 *
 * On disk (docs/STORE_FORMAT.md, "Concurrency and durability"), the API for
 * servers, queue workers and the CLI:
 *
 *   const store = await TemplateStore.load(file)        // never blocks on writers
 *   const r = await store.appendToFile(file, [{ features, file: name }, ...])
 *     // durable hot update: takes the cross-process lock `<target>.lock`,
 *     // re-reads the on-disk version (lineage + count), first merges into
 *     // memory the templates other processes appended since this store was
 *     // loaded, then appends ONE checksummed record holding only the new
 *     // images (fsync, end magic, fsync) and returns
 *     // { file, count, appended, merged, rewritten }. Resolved = durable.
 *   await store.refresh(file)      // pick up other processes' appends, no lock
 *   await store.save(file)         // full rewrite (compaction): lock, merge
 *     // the same lineage's unseen appends, temp + fsync + rename + dir fsync
 *
 * Writes go to a symlink's target; stale temp files of dead writers are
 * removed by the next writer. A failed append leaves the memory store and
 * the file as they were (the file may keep a torn tail, which readers ignore
 * and the next writer truncates).
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { identityDifference, type BackboneDescription, type BackboneIdentity } from '../backbone/description.js';
import { HetmmError } from '../errors.js';
import type { FeatureDType, FeatureStack } from './feature-stack.js';
import { float32ArrayToFloat16 } from './float16.js';
import {
  PREFIX_BYTES,
  RECORD_END_MAGIC,
  STORE_END_MAGIC,
  STORE_FORMAT_VERSION,
  STORE_FORMAT_VERSION_WITHOUT_MODEL,
  STORE_FORMAT_VERSION_WITH_REMOVALS,
  STORE_MAGIC,
  TRAILER_BYTES,
  align,
  bytesPerElement,
  type StoreHeader,
  type StoreHeaderLayer,
  type StoreHeaderModel,
  type RecordHeader,
  type TemplateOrigin,
} from './format.js';
import { isStaleLockFile, processAlive, withFileLock, type LockOptions } from './lock.js';
import {
  CHUNK_BYTES,
  MAX_ELEMENTS,
  indexStoreFile,
  readBaseInto,
  readRecordInto,
  recordHead,
  resolveStoreTarget,
  type StoreFileIndex,
} from './store-file.js';


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
  /** the cross-process writer lock: wait timeout, stale age, purpose shown to waiters */
  readonly lock?: LockOptions;
}

/** One image for appendToFile: per-layer [C, H, W] float32 features (L2-normalised over C) and its name. */
export interface StoreAppendItem {
  readonly features: readonly Float32Array[];
  readonly file: string;
  /**
   * A stable id for this image (e.g. `<idempotency key>/0`, `image:<sha256>`):
   * recorded with it, and an image whose id the store already holds is not
   * appended again (a retried hot update changes nothing).
   */
  readonly id?: string;
}

export interface StoreAppendOptions extends StoreSaveOptions {
  /** the hot update's id, recorded in its append record (an idempotency key, a queue job id) */
  readonly update?: string;
  /**
   * The writer's fencing token (from the cluster lock it holds): refused
   * with E_STORE_LOCKED, under the file lock and before anything is
   * written, when the store already records an update with a higher token,
   * i.e. a writer that lost the cluster lock (paused past its TTL) never writes.
   */
  readonly fence?: number;
}

export interface StoreAppendResult {
  /** the file written (a symlink's target) */
  readonly file: string;
  /** templates in the store (memory and file) after the append */
  readonly count: number;
  readonly appended: number;
  /** templates other processes had appended since this store last read the file, now merged into memory */
  readonly merged: number;
  /** true when the whole file was rewritten (version 1 file, or this store's memory differs from the file) */
  readonly rewritten: boolean;
  /** items not appended because the store already held their id (a repeated update) */
  readonly duplicates: number;
}

export interface StoreRemoveOptions {
  /** the removal's id, recorded in its removal record (an idempotency key, a queue job id) */
  readonly update?: string;
  /** the writer's fencing token, as for appendToFile */
  readonly fence?: number;
  readonly lock?: LockOptions;
}

export interface StoreRemoveResult {
  /** the file written (a symlink's target) */
  readonly file: string;
  /** the ids removed by this call */
  readonly removed: string[];
  /** ids that were removed before (a repeated removal): nothing written for them */
  readonly alreadyRemoved: string[];
  /** templates in the store after the removal */
  readonly count: number;
  /** templates other processes had appended since this store last read the file, now merged */
  readonly merged: number;
  /** true when the whole file was rewritten (a version 1 file, or unsaved in-memory appends) */
  readonly rewritten: boolean;
}

/** One normal of a store (TemplateStore.normals). */
export interface StoreNormal {
  /** stable id: given at the append (`key:.../0`, `image:<sha256>`, `n-...`), or derived from the base (`t-<checksum>-<slot>`) */
  readonly id: string;
  /** position among the store's current templates */
  readonly index: number;
  /** source file name as recorded */
  readonly file: string;
  /** 'base': fitted (or a PTS sheet); 'appended': a hot update */
  readonly kind: 'base' | 'appended';
  /** when it was appended (ISO 8601), if recorded */
  readonly addedAt?: string;
  /** the hot update that appended it, if recorded */
  readonly update?: string;
}

/** What this store's memory shares with a file: templates [0, count) equal the file's first `count`. */
interface DiskLink {
  readonly file: string;
  readonly lineage: string;
  /** file slots: templates of the base and of the append records, removed ones included */
  readonly count: number;
}

/**
 * Where a store stands in its lineage, the same in every process that
 * read the same file: the base section's checksum and, after each append
 * record, a chain head (sha256 of the previous head and the record's
 * checksum), keyed by the template count after that record. Two stores of
 * one lineage whose heads agree at a count hold the same templates up to
 * it. A full save (compaction) starts a new base.
 */
export interface StoreChain {
  readonly lineage: string;
  /** hex sha256 of the base section (its checksum as written in the file) */
  readonly base: string;
  readonly baseCount: number;
  /**
   * [position, head, the record's fencing token (0: none)] after the base (head = base) and after each record, in order.
   * Position = templates + 2 x removed normals (each was appended, then removed): without removals the template count;
   * it grows with every record, as the store version does (src/fit/line-state.ts).
   */
  readonly heads: ReadonlyArray<readonly [number, string, number]>;
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

/**
 * The model a store's features come from, carried inside the store (format
 * version 3): the int8 backbone of a store fitted int8 end to end. Its
 * sha256 is the store identity's modelSha256.
 */
export interface EmbeddedModel {
  /** the .onnx bytes */
  readonly bytes: Uint8Array;
  readonly sha256: string;
  readonly description: BackboneDescription;
}

/** What a failed full rewrite restores (TemplateStore.#state). */
interface MemoryState {
  readonly layers: Array<Float32Array | Uint16Array>;
  readonly files: string[];
  readonly ids: Array<string | null>;
  readonly origins: Array<TemplateOrigin | null>;
  readonly removed: string[];
  readonly count: number;
  readonly slots: number;
  readonly capacity: number;
  readonly fence: number;
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
  /** per template its id (StoreAppendItem.id) or null, and the set of those ids */
  #ids: Array<string | null>;
  #idSet: Set<string>;
  /** the highest fencing token recorded (appendToFile's `fence`) */
  #fence: number;
  /** the file's chain (StoreChain) as far as memory holds it; undefined before the first save or load */
  #chain: { base: string; baseCount: number; heads: Array<readonly [number, string, number]> } | undefined;
  #count: number;
  /** file slots memory's templates stand for: #count plus the ones removals dropped since the last full save or load */
  #slots: number;
  /** per template how it was appended (null: fitted, or not recorded) */
  #origins: Array<TemplateOrigin | null>;
  /** ids of the normals removed in this lineage so far, in order (a full save keeps them in its header) */
  #removed: string[];
  #capacity: number;
  readonly #layers: LayerBuffer[];
  #lineage: string;
  #disk: DiskLink | undefined;
  #model: EmbeddedModel | undefined;

  private constructor(identity: BackboneIdentity, dtype: FeatureDType, meta: Record<string, unknown>, lineage = randomBytes(12).toString('hex')) {
    this.identity = identity;
    this.dtype = dtype;
    this.meta = meta;
    this.#lineage = lineage;
    this.#disk = undefined;
    this.#files = [];
    this.#ids = [];
    this.#idSet = new Set();
    this.#fence = 0;
    this.#chain = undefined;
    this.#count = 0;
    this.#slots = 0;
    this.#origins = [];
    this.#removed = [];
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

  /** `model`: the model the features will come from, carried in the store (its sha256 must be identity.modelSha256) */
  static create(identity: BackboneIdentity, options: { dtype?: FeatureDType; meta?: Record<string, unknown>; model?: EmbeddedModel } = {}): TemplateStore {
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
    const store = new TemplateStore(identity, dtype, { ...(options.meta ?? {}) });
    if (options.model !== undefined) {
      const m = options.model;
      if (!(m.bytes instanceof Uint8Array) || m.bytes.length === 0 || m.sha256 !== identity.modelSha256) {
        throw new HetmmError('E_ARGUMENT', `Expected an embedded model whose sha256 is the identity's modelSha256 ${identity.modelSha256} but received ${String(m.sha256)}`);
      }
      store.#model = m;
    }
    return store;
  }

  /** The model embedded in this store (format version 3), if any: the int8 backbone its features come from. */
  get model(): EmbeddedModel | undefined {
    return this.#model;
  }

  get count(): number {
    return this.#count;
  }

  /** Identifies this sequence of templates across processes and saves (format version 2 header). */
  get lineage(): string {
    return this.#lineage;
  }

  /** Source file names, in append order (a copy). */
  get files(): string[] {
    return this.#files.slice();
  }

  /** The highest writer fencing token the store records (appendToFile's `fence`; 0: none). */
  get fence(): number {
    return this.#fence;
  }

  /** The store's place in its lineage (StoreChain), as of the file last read or written; undefined for a store never saved or loaded. */
  chain(): StoreChain | undefined {
    const c = this.#chain;
    return c === undefined ? undefined : { lineage: this.#lineage, base: c.base, baseCount: c.baseCount, heads: c.heads.slice() };
  }

  #extendChain(record: { count: number; fence?: number; remove?: readonly string[] }, recordChecksum: Buffer): void {
    const c = this.#chain;
    if (c === undefined) return;
    const [position, previous] = c.heads[c.heads.length - 1]!;
    const head = createHash('sha256').update(previous).update(recordChecksum).digest('hex');
    c.heads.push([position + (record.remove?.length ?? record.count), head, record.fence ?? 0]);
  }

  /** Whether the store holds an image with this id (StoreAppendItem.id). */
  hasId(id: string): boolean {
    return this.#idSet.has(id);
  }

  /** Normals removed so far in this store's lineage (removeFromFile); part of the store version. */
  get removedCount(): number {
    return this.#removed.length;
  }

  /** Whether a normal with this id was removed (and none with it added since). */
  wasRemoved(id: string): boolean {
    return !this.#idSet.has(id) && this.#removed.includes(id);
  }

  /** The store's normals in order: id, file name, base or appended, when (if recorded). */
  normals(): StoreNormal[] {
    return this.#files.map((file, index) => {
      const origin = this.#origins[index] ?? null;
      return {
        id: this.#ids[index] ?? '',
        index,
        file,
        kind: origin === null ? ('base' as const) : ('appended' as const),
        ...(origin?.at === undefined ? {} : { addedAt: new Date(origin.at).toISOString() }),
        ...(origin?.update === undefined ? {} : { update: origin.update }),
      };
    });
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
  append(features: readonly Float32Array[], file: string, id?: string, origin: TemplateOrigin | null = null): void {
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
    checkId(id, 'id');
    const n = this.#count;
    if (n + 1 > this.#capacity) this.#grow(n + 1);
    this.#layers.forEach((l, i) => {
      const offset = n * l.elementsPerImage;
      if (l.data instanceof Float32Array) l.data.set(features[i], offset);
      else float32ArrayToFloat16(features[i], l.data, offset);
    });
    this.#files.push(file);
    this.#ids.push(id ?? null);
    this.#origins.push(origin);
    if (id !== undefined) this.#idSet.add(id);
    this.#count = n + 1;
    this.#slots++;
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
    const m = this.#model;
    const model: StoreHeaderModel | undefined = m === undefined ? undefined : { offset, byteLength: m.bytes.length, sha256: m.sha256, description: m.description };
    const header: StoreHeader = {
      format: 'hetmm-template-store',
      lineage: this.#lineage,
      backbone: this.identity,
      dtype: this.dtype,
      count: this.#count,
      files: this.#files,
      meta: this.meta,
      layers,
      ...(model === undefined ? {} : { model }),
      ...(this.#idSet.size === 0 ? {} : { ids: this.#ids }),
      ...(this.#fence === 0 ? {} : { fence: this.#fence }),
      ...(this.#origins.some((o) => o !== null) ? { origins: this.#origins } : {}),
      ...(this.#removed.length === 0 ? {} : { removed: this.#removed }),
    };
    let headerBytes: Buffer;
    try {
      headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
    } catch (e) {
      throw new HetmmError('E_ARGUMENT', `store meta is not JSON-serialisable: ${(e as Error).message}`, { cause: e });
    }
    const dataStart = align(PREFIX_BYTES + headerBytes.length);
    const last = layers[layers.length - 1];
    const dataEnd = model === undefined ? dataStart + last.offset + last.byteLength : dataStart + model.offset + model.byteLength;
    return { header, headerBytes, dataStart, dataEnd };
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
   * Full save (also the compaction of append records): under the file's
   * writer lock, merges templates of the same lineage that other processes
   * appended since this store read the file (so none is lost), then streams
   * to `<target>.tmp-<pid>-<random>` in the same directory, fsyncs, renames
   * over the target (a symlink's target) and fsyncs the directory. A file of
   * another lineage (another fit) is replaced. On failure the temp file is
   * removed and the file at `path` is untouched.
   */
  async save(filePath: string, options: StoreSaveOptions = {}): Promise<void> {
    isLittleEndian();
    this.#layout(); // meta must serialise before anything is locked or written
    const target = await targetOf(filePath);
    await withFileLock(
      target,
      async () => {
        await removeStaleTemps(target);
        // A file that cannot be read (corrupt, a directory) is simply replaced, or refused by the rename.
        const disk = await openIndexed(target, filePath).catch(() => undefined);
        try {
          if (disk !== undefined && this.#linkedTo(target, disk.index)) await this.#mergeRecords(disk.handle, filePath, disk.index);
          else if (disk !== undefined && disk.index.lineage === this.#lineage && this.#disk?.file === target && this.#disk.count === this.#slots) {
            // Another process rewrote the file since (a threshold, a compaction): its templates, this store's meta.
            const meta = this.meta;
            await this.#replaceFrom(disk.handle, filePath, disk.index);
            this.meta = meta;
          }
        } finally {
          await disk?.handle.close();
        }
        await this.#writeFull(target, filePath, options);
      },
      { purpose: 'hetmm save', ...options.lock },
    ).catch((e: unknown) => {
      throw asWriteError(e, filePath);
    });
  }

  /**
   * Durable hot update of the store file at `filePath` (the API at the top
   * of this file). All items are validated before anything is written; on
   * any failure memory and file are as before (others' merged appends
   * aside, which are on disk anyway). When this store does not hold the
   * file's templates (it was loaded elsewhere, or the file was refitted
   * since), it first reloads the file: the images are appended to what the
   * file holds, never to a stale copy.
   */
  async appendToFile(filePath: string, items: readonly StoreAppendItem[], options: StoreAppendOptions = {}): Promise<StoreAppendResult> {
    isLittleEndian();
    if (!Array.isArray(items)) throw new HetmmError('E_ARGUMENT', `Expected an array of {features, file} but received ${typeof items}`);
    items.forEach((item, i) => {
      this.#checkFeatures(item?.features, item?.file, `items[${i}]`);
      checkId(item.id, `items[${i}].id`);
    });
    checkUpdateOptions(options);
    // Every appended normal gets a stable id (issue 21): the caller's, else a fresh one recorded with it.
    items = items.map((item) => (item.id === undefined ? { ...item, id: `n-${randomBytes(8).toString('hex')}` } : item));
    const origin: TemplateOrigin = { at: Date.now(), ...(options.update === undefined ? {} : { update: options.update }) };
    return this.#underLock(filePath, { purpose: 'hetmm append', ...options.lock }, async (target, disk) => {
      if (disk === undefined) {
        const fresh = this.#unseen(items, options, filePath);
        await this.#changeAndWriteFull(target, filePath, options, () => this.#appendAll(fresh, origin), fresh.length > 0);
        return { file: target, count: this.#count, appended: fresh.length, merged: 0, rewritten: fresh.length > 0, duplicates: items.length - fresh.length };
      }
      const { handle, index } = disk;
      const merged = await this.#catchUpUnderLock(handle, filePath, index);
      // Checked against the file's ids and tokens, read under the lock: a repeat or a stale writer writes nothing.
      const fresh = this.#unseen(items, options, filePath);
      const duplicates = items.length - fresh.length;
      if (fresh.length === 0) return { file: target, count: this.#count, appended: 0, merged, rewritten: false, duplicates };
      if (index.version >= 2 && this.#inStep(target, index)) {
        await this.#writeRecord(handle, filePath, index, fresh, options, origin.at!);
        this.#appendAll(fresh, origin);
        if (options.fence !== undefined) this.#fence = Math.max(this.#fence, options.fence);
        this.#disk = { file: target, lineage: this.#lineage, count: this.#slots };
        return { file: target, count: this.#count, appended: fresh.length, merged, rewritten: false, duplicates };
      }
      // A version 1 file, or memory that differs from the file (unsaved in-memory appends): rewrite it whole.
      await this.#changeAndWriteFull(target, filePath, options, () => this.#appendAll(fresh, origin), true);
      return { file: target, count: this.#count, appended: fresh.length, merged, rewritten: true, duplicates };
    });
  }

  /**
   * Runs `body` under the file's writer lock (after removing dead writers'
   * leftovers) with the file opened for writing and indexed (undefined when
   * there is none); errors become write errors naming the file.
   */
  async #underLock<T>(filePath: string, lock: LockOptions, body: (target: string, disk: { handle: FileHandle; index: IndexedFile } | undefined) => Promise<T>): Promise<T> {
    const target = await targetOf(filePath);
    return withFileLock(
      target,
      async () => {
        await removeStaleTemps(target);
        const disk = await openIndexed(target, filePath, 'r+');
        try {
          return await body(target, disk);
        } finally {
          await disk?.handle.close();
        }
      },
      lock,
    ).catch((e: unknown) => {
      throw asWriteError(e, filePath);
    });
  }

  /**
   * Removes normals by id (TemplateStore.normals), durably: under the file's
   * writer lock, after merging other processes' changes, one removal record
   * (no data: the ids) is appended and fsynced before this resolves; a
   * version 2/3 file is first marked version 4 so that older hetmm refuses
   * it rather than serve removed normals. The removed templates no longer
   * take part in matching. An id removed before is a no-op (alreadyRemoved);
   * an unknown id, or removing every normal, is E_ARGUMENT and nothing is
   * written.
   */
  async removeFromFile(filePath: string, ids: readonly string[], options: StoreRemoveOptions = {}): Promise<StoreRemoveResult> {
    isLittleEndian();
    if (!Array.isArray(ids) || ids.length === 0) throw new HetmmError('E_ARGUMENT', 'Expected one or more normal ids to remove');
    ids.forEach((id, i) => {
      if (id === undefined) throw new HetmmError('E_ARGUMENT', `Expected ids[${i}] as a string`);
      checkId(id, `ids[${i}]`);
    });
    checkUpdateOptions(options);
    const unique = [...new Set(ids)];
    return this.#underLock(filePath, { purpose: 'hetmm remove', ...options.lock }, async (target, disk) => {
      if (disk === undefined) throw new HetmmError('E_STORE_READ', `cannot read template store '${filePath}': ENOENT (no such file)`);
      const { handle, index } = disk;
      const merged = await this.#catchUpUnderLock(handle, filePath, index);
      this.#checkFence(options.fence, filePath);
      const unknown = unique.filter((id) => !this.#idSet.has(id) && !this.#removed.includes(id));
      if (unknown.length > 0) {
        throw new HetmmError('E_ARGUMENT', `template store '${filePath}' ${UNKNOWN_NORMAL} ${unknown.map((id) => JSON.stringify(id)).join(', ')} (\`hetmm normals list\` shows the ids): nothing removed`);
      }
      const removing = unique.filter((id) => this.#idSet.has(id));
      const alreadyRemoved = unique.filter((id) => !this.#idSet.has(id));
      const result = (rewritten: boolean): StoreRemoveResult => ({ file: target, removed: removing, alreadyRemoved, count: this.#count, merged, rewritten });
      if (removing.length === 0) return result(false);
      if (removing.length >= this.#count) {
        throw new HetmmError('E_ARGUMENT', `removing ${removing.length} normals would leave template store '${filePath}' without any (it holds ${this.#count}): nothing removed`);
      }
      if (index.version >= 2 && this.#inStep(target, index)) {
        if (index.version < STORE_FORMAT_VERSION_WITH_REMOVALS) await markRemovals(handle);
        await this.#writeRecord(handle, filePath, index, [], options, Date.now(), removing);
        this.#dropIds(removing, false);
        if (options.fence !== undefined) this.#fence = Math.max(this.#fence, options.fence);
        return result(false);
      }
      // A version 1 file, or unsaved in-memory appends: the whole file is rewritten without them.
      await this.#changeAndWriteFull(target, filePath, options, () => this.#dropIds(removing, false), true);
      return result(true);
    });
  }

  /**
   * Brings this store up to date with the file without taking the lock:
   * appends of other processes are merged (reading only their records); a
   * file that was replaced (another lineage) is reloaded. Returns how many
   * templates were gained. For long-running servers and workers.
   */
  async refresh(filePath?: string): Promise<number> {
    const file = filePath ?? this.#disk?.file;
    if (file === undefined) throw new HetmmError('E_ARGUMENT', 'refresh() needs a file: this store was not loaded from or saved to one');
    const target = await targetOf(file);
    const before = this.#count;
    if (this.#disk?.file === target && this.#slots > this.#disk.count) {
      // Merging now would put others' templates after these, out of the file's order, and again at the next write.
      throw new HetmmError('E_ARGUMENT', `this store holds ${this.#slots - this.#disk.count} templates not yet written to '${file}': save() or appendToFile() them before refresh()`);
    }
    await retryWhileChanging(file, async () => {
      const disk = await openIndexed(target, file);
      if (disk === undefined) throw new HetmmError('E_STORE_READ', `cannot read template store '${file}': no such file`);
      try {
        if (this.#linkedTo(target, disk.index)) await this.#mergeRecords(disk.handle, file, disk.index);
        else await this.#replaceFrom(disk.handle, file, disk.index);
      } finally {
        await disk.handle.close();
      }
    });
    return this.#count - before;
  }

  /** Applies `change` to memory and rewrites the whole file; on failure memory is as before. */
  async #changeAndWriteFull(target: string, filePath: string, options: StoreSaveOptions & { fence?: number }, change: () => void, changed: boolean): Promise<void> {
    if (!changed) return;
    const before = this.#state();
    change();
    if (options.fence !== undefined) this.#fence = Math.max(this.#fence, options.fence);
    try {
      await this.#writeFull(target, filePath, options);
    } catch (e) {
      this.#restore(before);
      throw e;
    }
  }

  /** Under the file lock: brings memory up to the file (merging others' records, or reloading a replaced file); returns the templates gained. */
  async #catchUpUnderLock(handle: FileHandle, filePath: string, index: IndexedFile): Promise<number> {
    const before = this.#count;
    if (this.#linkedTo(index.target, index)) await this.#mergeRecords(handle, filePath, index);
    else await this.#replaceFrom(handle, filePath, index);
    return this.#count - before;
  }

  /** Whether memory holds exactly the file's templates (so a record can be appended). */
  #inStep(target: string, index: StoreFileIndex): boolean {
    return this.#disk?.file === target && this.#disk.count === this.#slots && this.#disk.count === index.count;
  }

  /** What a failed full rewrite restores (the buffers are not touched: a change only ever replaces or appends past them). */
  #state(): MemoryState {
    return {
      layers: this.#layers.map((l) => l.data),
      files: this.#files.slice(),
      ids: this.#ids.slice(),
      origins: this.#origins.slice(),
      removed: this.#removed.slice(),
      count: this.#count,
      slots: this.#slots,
      capacity: this.#capacity,
      fence: this.#fence,
    };
  }

  #restore(s: MemoryState): void {
    this.#layers.forEach((l, i) => {
      l.data = s.layers[i]!;
    });
    [this.#files, this.#ids, this.#origins, this.#removed] = [s.files, s.ids, s.origins, s.removed];
    this.#idSet = new Set(s.ids.filter((id): id is string => id !== null));
    [this.#count, this.#slots, this.#fence] = [s.count, s.slots, s.fence];
    // Rows past the old count may hold the failed change's templates: the next append reallocates rather than overwrite a snapshot's rows.
    this.#capacity = s.count;
  }

  /**
   * The items to append: those whose id the store does not hold yet (nor an
   * earlier item of the same call). Throws E_STORE_LOCKED for a writer
   * whose fencing token is older than one the store records.
   */
  #unseen(items: readonly StoreAppendItem[], options: StoreAppendOptions, filePath: string): StoreAppendItem[] {
    this.#checkFence(options.fence, filePath);
    const seen = new Set<string>();
    return items.filter((item) => {
      if (item.id === undefined) return true;
      if (this.#idSet.has(item.id) || seen.has(item.id)) return false;
      seen.add(item.id);
      return true;
    });
  }

  #checkFence(fence: number | undefined, filePath: string): void {
    if (fence !== undefined && fence < this.#fence) {
      throw new HetmmError(
        'E_STORE_LOCKED',
        `not written to template store '${filePath}': this writer's fencing token ${fence} is older than the store's ${this.#fence} (it lost the cluster lock to another writer)`,
      );
    }
  }

  /** Whether memory holds the file's first #disk.count templates and the file only grew since by whole records. */
  #linkedTo(target: string, index: StoreFileIndex): boolean {
    const d = this.#disk;
    if (d === undefined || d.file !== target || d.lineage !== index.lineage || index.lineage !== this.#lineage) return false;
    if (index.count < d.count || d.count < index.header.count) return false;
    // Another base (a full save since): with removals compacted its slots are not ours.
    if (this.#chain !== undefined && this.#chain.base !== index.baseChecksum.toString('hex')) return false;
    return d.count === index.count || index.records.some((r) => r.header.first === d.count);
  }

  /** Appends to memory the file's records past #disk.count (others' hot updates), verified. */
  async #mergeRecords(handle: FileHandle, filePath: string, index: StoreFileIndex): Promise<void> {
    const d = this.#disk!;
    // The records memory has not applied: the chain counts the applied ones (same base: #linkedTo).
    const records = index.records.slice(this.#chain!.heads.length - 1);
    if (records.length === 0) return;
    const extra = records.reduce((sum, r) => sum + r.header.count, 0);
    const pending = this.#slots - d.count;
    if (this.#count + extra > this.#capacity) this.#grow(this.#count + extra);
    const checksums: Buffer[] = [];
    for (const r of records) {
      if (r.header.remove !== undefined) checksums.push(await readRecordInto(handle, filePath, index, r, []));
      else {
        checksums.push(await readRecordInto(handle, filePath, index, r, this.#layers.map((l) => l.data), this.#count));
        this.#takeRecord(r.header, index);
      }
      if (r.header.remove !== undefined) this.#dropIds(r.header.remove, false);
      this.#fence = Math.max(this.#fence, r.header.fence ?? 0);
    }
    if (pending === 0) records.forEach((r, i) => this.#extendChain(r.header, checksums[i]!));
    // With unsaved in-memory appends the order differs from the file's: the link is only valid up to the old point.
    if (pending === 0) this.#disk = { ...d, count: index.count };
  }

  /** The bookkeeping of one append record whose data was just read into rows [count, count + record.count). */
  #takeRecord(r: RecordHeader, index: StoreFileIndex): void {
    this.#files.push(...r.files);
    this.#addIds(r.ids ?? r.files.map(() => null), r.first, index.baseChecksum);
    const origin: TemplateOrigin = { ...(r.at === undefined ? {} : { at: r.at }), ...(r.update === undefined ? {} : { update: r.update }) };
    for (let i = 0; i < r.count; i++) this.#origins.push(origin);
    this.#count += r.count;
    this.#slots += r.count;
  }

  /**
   * Drops the templates holding `ids` (a removal record, or removeFromFile).
   * `inPlace` only while no snapshot can exist (a load): otherwise the kept
   * rows are copied into new buffers, so snapshots and the int8 caches keyed
   * by a buffer stay valid. Slots stay: the file still holds the rows.
   */
  #dropIds(ids: readonly string[], inPlace: boolean): void {
    const drop = new Set(ids);
    const keep: number[] = [];
    for (let i = 0; i < this.#count; i++) if (!drop.has(this.#ids[i] ?? '')) keep.push(i);
    this.#removed.push(...ids.filter((id) => this.#idSet.has(id)));
    if (keep.length === this.#count) return;
    const tail = keep.every((from, to) => from === to);
    // The last templates removed (an undo right after its hot update): the rows before stay where they are, in the
    // same buffers; the next append reallocates (capacity = count), so a snapshot that still holds them keeps them.
    if (tail) this.#capacity = keep.length;
    for (const l of tail ? [] : this.#layers) {
      const per = l.elementsPerImage;
      const next = inPlace ? l.data : l.data instanceof Float32Array ? new Float32Array(this.#capacity * per) : new Uint16Array(this.#capacity * per);
      keep.forEach((from, to) => {
        if (inPlace && from === to) return;
        next.set(l.data.subarray(from * per, (from + 1) * per), to * per);
      });
      l.data = next;
    }
    this.#files = keep.map((i) => this.#files[i]!);
    this.#ids = keep.map((i) => this.#ids[i] ?? null);
    this.#origins = keep.map((i) => this.#origins[i] ?? null);
    this.#idSet = new Set(this.#ids.filter((id): id is string => id !== null));
    this.#count = keep.length;
  }

  /** Replaces memory with the file's contents (old buffers stay with old snapshots). */
  async #replaceFrom(handle: FileHandle, filePath: string, index: IndexedFile): Promise<void> {
    const loaded = await TemplateStore.#fromFile(handle, filePath, index, this.identity, index.target);
    if (loaded.dtype !== this.dtype) {
      throw new HetmmError('E_STORE_MISMATCH', `template store '${filePath}' now holds ${loaded.dtype} templates, this store ${this.dtype}: reopen it`);
    }
    this.#layers.forEach((l, i) => {
      l.data = loaded.#layers[i]!.data;
    });
    this.#files = loaded.#files;
    this.#origins = loaded.#origins;
    this.#removed = loaded.#removed;
    this.#slots = loaded.#slots;
    this.#ids = loaded.#ids;
    this.#idSet = loaded.#idSet;
    this.#fence = loaded.#fence;
    this.#chain = loaded.#chain;
    this.#count = loaded.#count;
    this.#capacity = loaded.#capacity;
    this.meta = loaded.meta;
    this.#model = loaded.#model;
    this.#lineage = loaded.#lineage;
    this.#disk = loaded.#disk;
  }

  #checkFeatures(features: readonly Float32Array[] | undefined, file: unknown, what: string): void {
    if (!Array.isArray(features) || features.length !== this.#layers.length) {
      throw new HetmmError('E_ARGUMENT', `Expected ${what}.features for ${this.#layers.length} layers but received ${Array.isArray(features) ? features.length : typeof features}`);
    }
    this.#layers.forEach((l, i) => {
      const f = features[i];
      if (!(f instanceof Float32Array) || f.length !== l.elementsPerImage) {
        throw new HetmmError(
          'E_ARGUMENT',
          `Expected ${what} layer '${l.name}' features as a Float32Array of ${l.channels}*${l.height}*${l.width} = ${l.elementsPerImage} elements but received ${f instanceof Float32Array ? `length ${f.length}` : typeof f}`,
        );
      }
    });
    if (typeof file !== 'string') throw new HetmmError('E_ARGUMENT', `Expected ${what}.file to be a string but received ${typeof file}`);
  }

  #appendAll(items: readonly StoreAppendItem[], origin: TemplateOrigin | null = null): void {
    if (this.#count + items.length > this.#capacity) this.#grow(this.#count + items.length);
    for (const item of items) this.append(item.features, item.file, item.id, origin);
  }

  /**
   * Records the ids of templates at file slots [first, first + ids.length).
   * A template without a recorded id (fitted, or appended by an older
   * hetmm) gets one derived from the base checksum and its slot: the same in
   * every process that reads the file; a full save records it.
   */
  #addIds(ids: ReadonlyArray<string | null>, first: number, baseChecksum: Buffer): void {
    ids.forEach((given, k) => {
      const id = given ?? derivedId(baseChecksum, first + k);
      this.#ids.push(id);
      this.#idSet.add(id);
    });
  }

  /** Forgets templates [n, count) after a failed write; the next append reallocates, so snapshots that saw them stay intact. */
  #rollback(n: number): void {
    this.#slots -= this.#count - n;
    this.#count = n;
    this.#files.length = n;
    this.#origins.length = n;
    for (const id of this.#ids.splice(n)) if (id !== null) this.#idSet.delete(id);
    this.#capacity = n;
  }

  /**
   * Undoes the appends after the first `count` templates (a batch that
   * failed half-way). Snapshots taken meanwhile stay valid: the next append
   * reallocates instead of overwriting their rows.
   */
  rollbackTo(count: number): void {
    if (!Number.isInteger(count) || count < 0 || count > this.#count) {
      throw new HetmmError('E_ARGUMENT', `Expected a template count in [0, ${this.#count}] but received ${String(count)}`);
    }
    if (count === this.#count) return;
    this.#rollback(count);
    if (this.#disk !== undefined && this.#disk.count > this.#slots) this.#disk = undefined;
  }

  /** Appends one record holding `items` at the file's committed end (truncating a torn tail first). */
  async #writeRecord(
    handle: FileHandle,
    filePath: string,
    index: StoreFileIndex,
    items: readonly StoreAppendItem[],
    options: StoreAppendOptions,
    at: number,
    remove?: readonly string[],
  ): Promise<void> {
    const bpe = bytesPerElement(this.dtype);
    const layerBytes = this.#layers.reduce((sum, l) => sum + l.elementsPerImage * items.length * bpe, 0);
    const header: RecordHeader = {
      lineage: this.#lineage,
      first: index.count,
      count: items.length,
      files: items.map((i) => i.file),
      ...(options.update === undefined ? {} : { update: options.update }),
      ...(items.some((i) => i.id !== undefined) ? { ids: items.map((i) => i.id ?? null) } : {}),
      ...(options.fence === undefined ? {} : { fence: options.fence }),
      at,
      ...(remove === undefined ? {} : { remove: remove.slice() }),
    };
    const { head, total } = recordHead(header, layerBytes);
    const start = index.committedEnd;
    const hash = createHash('sha256');
    let written = 0;
    const write = async (chunk: Buffer, hashed = true): Promise<void> => {
      options.beforeWrite?.(written);
      if (hashed) hash.update(chunk);
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, start + written + done);
        done += bytesWritten;
      }
      written += chunk.length;
    };
    try {
      if (index.size > start) await handle.truncate(start);
      await write(head);
      for (let l = 0; l < this.#layers.length; l++) {
        for (const item of items) {
          const f = item.features[l]!;
          if (this.dtype === 'float32') await write(Buffer.from(f.buffer, f.byteOffset, f.byteLength));
          else {
            const half = new Uint16Array(f.length);
            float32ArrayToFloat16(f, half, 0);
            await write(Buffer.from(half.buffer, half.byteOffset, half.byteLength));
          }
        }
      }
      // Data first, then the end magic: a record with its end magic is complete even after a power loss.
      await handle.sync();
      const checksum = hash.digest();
      await write(Buffer.concat([checksum, RECORD_END_MAGIC]), false);
      await handle.sync();
      if (written !== total) throw new Error(`internal: record of ${written} bytes, expected ${total}`);
      this.#extendChain(header, checksum);
    } catch (e) {
      await handle.truncate(start).catch(() => undefined);
      throw e;
    }
  }

  /** The full-file write of save(), without the lock. */
  async #writeFull(target: string, filePath: string, options: StoreSaveOptions): Promise<void> {
    // Every saved template has an id in the header (issue 21): fitted ones get `t-<nonce of this save>-<index>`.
    if (this.#ids.includes(null)) {
      const nonce = randomBytes(4).toString('hex');
      this.#ids.forEach((id, i) => {
        if (id !== null) return;
        this.#ids[i] = `t-${nonce}-${i}`;
        this.#idSet.add(this.#ids[i]!);
      });
    }
    const { headerBytes, dataStart, header } = this.#layout();
    const temp = `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
    const hash = createHash('sha256');
    let written = 0;
    let handle: FileHandle | undefined;
    let checksum = Buffer.alloc(0);
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
      prefix.writeUInt32LE(header.model === undefined ? STORE_FORMAT_VERSION_WITHOUT_MODEL : STORE_FORMAT_VERSION, 8);
      prefix.writeUInt32LE(headerBytes.length, 12);
      headerBytes.copy(prefix, PREFIX_BYTES);
      await write(prefix);
      for (let i = 0; i < this.#layers.length; i++) {
        const l = this.#layers[i]!;
        const h = header.layers[i]!;
        if (written < dataStart + h.offset) await write(Buffer.alloc(dataStart + h.offset - written));
        const total = this.#count * l.elementsPerImage;
        const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / l.data.BYTES_PER_ELEMENT));
        for (let e = 0; e < total; e += perChunk) await write(bytesOf(l.data, e, Math.min(total, e + perChunk)));
      }
      if (header.model !== undefined) {
        if (written < dataStart + header.model.offset) await write(Buffer.alloc(dataStart + header.model.offset - written));
        const bytes = this.#model!.bytes;
        await write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      }
      checksum = hash.copy().digest();
      const trailer = Buffer.concat([checksum, STORE_END_MAGIC]);
      options.beforeWrite?.(written);
      await handle.write(trailer, 0, trailer.length, written);
      await handle.sync();
      await handle.close();
      handle = undefined;
      await rename(temp, target);
    } catch (e) {
      await handle?.close().catch(() => undefined);
      await rm(temp, { force: true }).catch(() => undefined);
      throw e;
    }
    this.#disk = { file: target, lineage: this.#lineage, count: this.#count };
    this.#slots = this.#count;
    this.#chain = { base: checksum.toString('hex'), baseCount: this.#count, heads: [[this.#count + 2 * this.#removed.length, checksum.toString('hex'), 0]] };
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
   * Fails now, with E_STORE_WRITE naming the reason, when a store could not
   * be saved at `filePath`: its directory is missing or not a directory, not
   * writable, or the path is a directory. Commands that write a store check
   * this before their work starts (a fit can take minutes).
   */
  static async checkWritable(filePath: string): Promise<void> {
    const target = await targetOf(filePath);
    const dir = path.dirname(target);
    const refuse = (why: string): never => {
      throw new HetmmError('E_STORE_WRITE', `cannot write template store '${filePath}': ${why}`);
    };
    const info = await stat(dir).catch((e: NodeJS.ErrnoException) => refuse(e.code === 'ENOENT' ? `the directory '${dir}' does not exist` : `cannot reach the directory '${dir}' (${e.code ?? String(e)})`));
    if (!info.isDirectory()) refuse(`'${dir}' is not a directory`);
    await access(dir, constants.W_OK).catch((e: NodeJS.ErrnoException) => refuse(`the directory '${dir}' is not writable (${e.code ?? String(e)})`));
    if ((await stat(target).catch(() => undefined))?.isDirectory() === true) refuse('it is a directory');
  }

  /**
   * Load and verify a store (magic, version, header, sizes, sha256 checksums
   * of the base and of every append record), and with `expect` that it was
   * built with the same backbone. Never waits for writers: it reads the
   * complete records present when it starts (a torn or in-progress append is
   * ignored) and re-reads if the file changed under it.
   */
  static async load(filePath: string, options: { expect?: BackboneIdentity } = {}): Promise<TemplateStore> {
    isLittleEndian();
    if (typeof filePath !== 'string' || filePath === '') throw new HetmmError('E_ARGUMENT', `Expected a store file path but received ${JSON.stringify(filePath)}`);
    let target: string;
    try {
      target = await resolveStoreTarget(filePath);
    } catch (e) {
      throw readError(e, filePath);
    }
    return retryWhileChanging(filePath, async () => {
      const disk = await openIndexed(target, filePath);
      if (disk === undefined) throw new HetmmError('E_STORE_READ', `cannot read template store '${filePath}': ENOENT (no such file)`);
      try {
        return await TemplateStore.#fromFile(disk.handle, filePath, disk.index, options.expect, target);
      } finally {
        await disk.handle.close();
      }
    });
  }

  /** Builds a store from an indexed file: base data then every record, all verified. */
  static async #fromFile(
    handle: FileHandle,
    filePath: string,
    index: StoreFileIndex,
    expect: BackboneIdentity | undefined,
    target: string | undefined,
  ): Promise<TemplateStore> {
    const header = index.header;
    if (expect !== undefined) {
      const difference = identityDifference(header.backbone, expect);
      if (difference !== undefined) {
        throw new HetmmError(
          'E_STORE_MISMATCH',
          `template store '${filePath}' was built with backbone '${header.backbone.name}' but the current backbone is '${expect.name}': ${difference} (store vs current)`,
        );
      }
    }
    // Buffers hold exactly the file's templates (capacity = count); the first append grows them.
    const store = new TemplateStore(header.backbone, header.dtype, header.meta, index.lineage);
    for (const l of store.#layers) {
      const size = index.count * l.elementsPerImage;
      l.data = header.dtype === 'float32' ? new Float32Array(size) : new Uint16Array(size);
    }
    const buffers = store.#layers.map((l) => l.data);
    const m = header.model;
    const model = m === undefined ? undefined : new Uint8Array(m.byteLength);
    await readBaseInto(handle, filePath, index, buffers, model);
    if (m !== undefined) store.#model = { bytes: model!, sha256: m.sha256, description: m.description };
    const base = index.baseChecksum.toString('hex');
    store.#removed = [...(header.removed ?? [])];
    store.#chain = { base, baseCount: header.count, heads: [[header.count + 2 * store.#removed.length, base, 0]] };
    store.#files = [...header.files];
    store.#addIds(header.ids ?? header.files.map(() => null), 0, index.baseChecksum);
    store.#origins = header.origins === undefined ? header.files.map(() => null) : [...header.origins];
    store.#count = header.count;
    store.#slots = header.count;
    store.#capacity = index.count;
    // Records in order; a removal record drops templates in place (nothing holds these buffers yet).
    for (const r of index.records) {
      if (r.header.remove !== undefined) {
        store.#extendChain(r.header, await readRecordInto(handle, filePath, index, r, []));
        store.#dropIds(r.header.remove, true);
      } else {
        store.#extendChain(r.header, await readRecordInto(handle, filePath, index, r, buffers, store.#count));
        store.#takeRecord(r.header, index);
      }
    }
    store.#fence = Math.max(header.fence ?? 0, ...index.records.map((r) => r.header.fence ?? 0));
    store.#capacity = index.count; // the buffers' size (no snapshot exists yet: rows dropped at the tail may be reused)
    if (target !== undefined) store.#disk = { file: target, lineage: index.lineage, count: index.count };
    return store;
  }
}

/**
 * Marks a version 2/3 file as version 4 (it will hold removal records), in
 * place and durably, before the first removal record is written: a reader
 * that knows only versions 1-3 then refuses the file. The 4 bytes lie in one
 * sector; the base checksum stays the one written (readers substitute the
 * base's own version: format.ts baseVersionOf).
 */
async function markRemovals(handle: FileHandle): Promise<void> {
  const field = Buffer.alloc(4);
  field.writeUInt32LE(STORE_FORMAT_VERSION_WITH_REMOVALS, 0);
  await handle.write(field, 0, 4, 8);
  await handle.sync();
}

/** The words of removeFromFile's error for an id the store never held (servers answer it 404). */
const UNKNOWN_NORMAL = 'holds no normal with id';

/** Whether `e` is removeFromFile's refusal of an id the store never held (also after a trip through a queue, which keeps code and message). */
export function isUnknownNormalError(e: unknown): boolean {
  return e instanceof HetmmError && e.code === 'E_ARGUMENT' && e.message.includes(UNKNOWN_NORMAL);
}

/** The id of a template recorded without one: `t-` + the base checksum's first 8 hex digits + `-` + its file slot. */
function derivedId(baseChecksum: Buffer, slot: number): string {
  return `t-${baseChecksum.toString('hex').slice(0, 8)}-${slot}`;
}

function checkUpdateOptions(options: { update?: string; fence?: number }): void {
  checkId(options.update, 'options.update');
  if (options.fence !== undefined && !(Number.isSafeInteger(options.fence) && options.fence >= 0)) {
    throw new HetmmError('E_ARGUMENT', `Expected options.fence as a non-negative integer but received ${String(options.fence)}`);
  }
}

function checkId(id: unknown, what: string): void {
  if (id !== undefined && !(typeof id === 'string' && id.length > 0 && id.length <= 200)) {
    throw new HetmmError('E_ARGUMENT', `Expected ${what} as a string of 1-200 characters but received ${typeof id === 'string' ? `${id.length} characters` : typeof id}`);
  }
}

function readError(e: unknown, filePath: string): HetmmError {
  if (e instanceof HetmmError) return e;
  const code = (e as NodeJS.ErrnoException).code ?? String(e);
  const words = code === 'ENOENT' ? ' (no such file)' : code === 'ELOOP' ? ' (a symbolic link loop)' : code === 'EACCES' ? ' (permission denied)' : '';
  return new HetmmError('E_STORE_READ', `cannot read template store '${filePath}': ${code}${words}`, { cause: e });
}

/** Errors of a write: ours pass through (E_STORE_LOCKED, E_STORE_FORMAT of a corrupt file, ...), the rest are E_STORE_WRITE. */
function asWriteError(e: unknown, filePath: string): HetmmError {
  if (e instanceof HetmmError && e.code !== 'E_INTERNAL') return e;
  const reason = e instanceof Error ? e.message : String(e);
  return new HetmmError('E_STORE_WRITE', `could not write template store '${filePath}' (${reason}); the previous file at that path, if any, is untouched`, { cause: e });
}

async function targetOf(filePath: string): Promise<string> {
  if (typeof filePath !== 'string' || filePath === '') throw new HetmmError('E_ARGUMENT', `Expected a store file path but received ${JSON.stringify(filePath)}`);
  try {
    return await resolveStoreTarget(filePath);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new HetmmError('E_STORE_WRITE', `could not write template store '${filePath}': ${code}`, { cause: e });
  }
}

type IndexedFile = StoreFileIndex & { readonly target: string };

/** Opens and indexes the file at `target`, or undefined when there is none. */
async function openIndexed(target: string, filePath: string, flags: 'r' | 'r+' = 'r'): Promise<{ handle: FileHandle; index: IndexedFile } | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(target, flags);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw readError(e, filePath);
  }
  try {
    const index = await indexStoreFile(handle, filePath);
    return { handle, index: { ...index, target } };
  } catch (e) {
    await handle.close();
    throw e instanceof HetmmError ? e : readError(e, filePath);
  }
}

/**
 * Runs a read; when it fails as corrupt while the file changed under it (a
 * writer truncated a torn tail, or renamed a new file in), reads again.
 */
async function retryWhileChanging<T>(filePath: string, read: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const before = await stat(filePath).catch(() => undefined);
    try {
      return await read();
    } catch (e) {
      if (!(e instanceof HetmmError) || e.code !== 'E_STORE_FORMAT' || attempt >= 3) throw e;
      const after = await stat(filePath).catch(() => undefined);
      if (before === undefined || after === undefined) throw e;
      if (before.ino === after.ino && before.size === after.size && before.mtimeMs === after.mtimeMs) throw e;
    }
  }
}

/** How old a temp file of a writer whose pid is still in use must be to count as abandoned (pid reuse). */
const ABANDONED_TEMP_MS = 10 * 60 * 1000;

/**
 * Removes `<target>.tmp-<pid>-*` files of writers that died mid-save (a
 * killed fit leaves gigabytes), and lock candidate files of killed lockers.
 * Runs under the lock, so no live writer of this store has a temp file open.
 */
async function removeStaleTemps(target: string): Promise<void> {
  const dir = path.dirname(target);
  const base = path.basename(target);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(base)) continue;
    if (name === `${base}.lock.break`) {
      // the break lock of a waiter killed while breaking a stale lock
      if (await isStaleLockFile(path.join(dir, name))) await rm(path.join(dir, name), { force: true }).catch(() => undefined);
      continue;
    }
    const m = /^\.(tmp-|lock\.|lock\.break\.)(\d+)[-.][0-9a-f]+$/.exec(name.slice(base.length));
    if (m === null) continue;
    const pid = Number(m[2]);
    const file = path.join(dir, name);
    const info = await stat(file).catch(() => undefined);
    if (info === undefined) continue;
    // A lock candidate lives for a millisecond while its live owner links it: only a dead owner's is garbage.
    const stale =
      m[1] === 'tmp-'
        ? pid === process.pid || !processAlive(pid) || Date.now() - info.mtimeMs > ABANDONED_TEMP_MS
        : pid !== process.pid && !processAlive(pid);
    if (stale) await rm(file, { force: true }).catch(() => undefined);
  }
}
