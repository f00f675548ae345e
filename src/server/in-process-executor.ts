/**
 * The in-process InspectionExecutor: one Detector per line in this process.
 *
 * Consistency: each line has a published state (store snapshot, threshold,
 * version). A prediction pins the published state when it starts matching,
 * so it sees exactly one version. A change is written to the store file
 * first (normals: one locked, fsynced append record; threshold: a full
 * atomic save) and only then published and answered: no prediction ever
 * sees a change that is not on disk, and a crash after the answer loses
 * nothing. Changes to one line are serialised; predictions never wait for
 * them (snapshots stay valid while the store grows).
 *
 * Other writers (`hetmm add`, another server) are seen: each line's file is
 * watched (src/store/file-watch.ts) and their appends are read and
 * published, serialised with this server's own changes.
 *
 * Version = templates + meta.revision (../fit/line-state.ts).
 */
import { EventEmitter } from 'node:events';
import { rm } from 'node:fs/promises';
import { Backbone } from '../backbone/backbone.js';
import { Detector } from '../detector/detector.js';
import { servedLineOptions } from '../detector/line.js';
import { storedThreshold, type StoredThreshold } from '../detector/threshold.js';
import { isHetmmError } from '../errors.js';
import { fitStore } from '../fit/fit-store.js';
import { describeLine, metaWithThreshold, normalsOf, renderMaps, storeVersion } from '../fit/line-state.js';
import { isUnknownNormalError, type StoreSnapshot } from '../store/index.js';
import { watchStoreFile } from '../store/file-watch.js';
import { DEFAULT_MAX_PIXELS } from '../image/index.js';
import type { BackendPreference } from '../kernels/index.js';
import { ServerError } from './errors.js';
import { FeatureThread, type PreparedImage } from './feature-thread.js';
import { int8BackboneName } from '../detector/store-backbone.js';
import { quantizeOnThread } from '../detector/quantize-thread.js';
import { hotUpdateId } from '../store/update-id.js';
import type {
  BrokenLine,
  ExecutorEvent,
  HotUpdateOptions,
  FitOptions,
  FitProgress,
  HotUpdateOutcome,
  ImageUpload,
  InspectionExecutor,
  LineInfo,
  LineLoad,
  NormalsList,
  PredictOutcome,
  PredictRequest,
  RemoveNormalsOutcome,
} from './executor.js';
import { abortError, LineQueue } from './line-queue.js';
import { lineNameOfStore, storePathInDataDir, validateLineName } from './line-name.js';

export interface InProcessExecutorOptions {
  /** store files served as lines named after the file (line3.hetmm -> line3) */
  readonly stores?: readonly string[];
  /** a directory of <line>.hetmm stores; lines can be created and deleted in it */
  readonly dataDir?: string;
  readonly model?: string;
  readonly backend?: BackendPreference;
  readonly threads?: number;
  /**
   * Whole-pipeline precision, as Detector.open's: default each store's own
   * (an int8 store, the default of `hetmm fit`, runs its int8 backbone on
   * its feature thread and matches in int8); 'float' refuses int8 stores
   * (E_STORE_MISMATCH), 'int8' matches float stores in int8.
   */
  readonly precision?: 'float' | 'int8';
  /** matching precision only (default: the line service's rule, src/detector/line.ts) */
  readonly matchPrecision?: 'float' | 'int8';
  /** predictions computed at once per line; default 2 (overlaps one image's backbone with another's matching) */
  readonly concurrency?: number;
  /** predictions waiting per line before 429; default 8 */
  readonly queueLimit?: number;
  /** decoder pixel limit per image; default the library's (DEFAULT_MAX_PIXELS of hetmm/image, 64 Mpx) */
  readonly maxPixels?: number;
}

interface Published {
  readonly snapshot: StoreSnapshot;
  readonly version: number;
  readonly threshold: StoredThreshold | undefined;
}

interface Line {
  readonly name: string;
  readonly file: string;
  readonly detector: Detector;
  /** decoding and the backbone of this line's store (its int8 backbone for an int8 store), off the event loop */
  readonly thread: FeatureThread;
  readonly queue: LineQueue;
  /** true for --store lines: the API does not delete the operator's file */
  readonly pinned: boolean;
  published: Published;
  /** serialises changes */
  writes: Promise<unknown>;
  deleted: boolean;
  /** stops watching the file for other writers */
  unwatch: () => void;
}

function publish(line: Line): void {
  const store = line.detector.store;
  line.published = {
    snapshot: store.snapshot(),
    version: storeVersion(store),
    threshold: storedThreshold(store.meta, line.detector.preset.name),
  };
}

export class InProcessExecutor implements InspectionExecutor {
  readonly kind = 'in-process';
  readonly #options: InProcessExecutorOptions;
  readonly #lines = new Map<string, Line>();
  /** lines whose store did not open at start, with the reason: listed, not served, the others unaffected */
  readonly #broken = new Map<string, string>();
  /** names being created (a fit in progress) */
  readonly #creating = new Set<string>();
  readonly #events = new EventEmitter();
  #closing = false;
  /**
   * Decoding and the backbone, off the event loop: one thread per backbone
   * model. '' keys the server's own model (--model or the default), shared
   * by the float stores and the lines created over HTTP (started with the
   * first of them or with a data directory); each int8 store has its own int8 backbone (quantised on its
   * normals), keyed by its path, hence its own thread.
   */
  readonly #threads = new Map<string, Promise<FeatureThread>>();
  /** the '' thread, started by open with a data directory */
  #ownThread: FeatureThread | undefined;
  #pending = new Set<Promise<unknown>>();

  private constructor(options: InProcessExecutorOptions) {
    this.#options = options;
    this.#events.setMaxListeners(0);
  }

  /** Loads every --store file and every store in the data directory. */
  static async open(options: InProcessExecutorOptions): Promise<InProcessExecutor> {
    const executor = new InProcessExecutor(options);
    const files: Array<{ name: string; file: string; pinned: boolean }> = [];
    for (const file of options.stores ?? []) files.push({ name: lineNameOfStore(file), file, pinned: true });
    if (options.dataDir !== undefined) {
      const { mkdir, readdir } = await import('node:fs/promises');
      await mkdir(options.dataDir, { recursive: true });
      for (const entry of (await readdir(options.dataDir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
        if (!entry.isFile() || !entry.name.endsWith('.hetmm')) continue;
        let name: string;
        try {
          name = lineNameOfStore(entry.name);
        } catch {
          continue; // not a name the API could address
        }
        files.push({ name, file: storePathInDataDir(options.dataDir, name), pinned: false });
      }
    }
    try {
      // the server's own model: for lines created over HTTP (and the float stores, which start it anyway)
      if (options.dataDir !== undefined) executor.#ownThread = await executor.#threadFor(undefined);
      for (const f of files) {
        if (executor.#lines.has(f.name) || executor.#broken.has(f.name)) throw new ServerError('E_ARGUMENT', `two stores would both serve line '${f.name}': rename one file`);
        let detector: Detector;
        try {
          detector = await executor.#openDetector(f.file);
        } catch (e) {
          // One bad store of the data directory (corrupt, missing its int8 model) must not take the other lines
          // down; a --store the operator named explicitly still fails the start, naming the file.
          if (!isHetmmError(e) || f.pinned) throw e;
          executor.#broken.set(f.name, `${e.code}: ${e.message}`);
          continue;
        }
        executor.#lines.set(f.name, executor.#newLine(f.name, f.file, detector, await executor.#threadFor(detector).catch((e: unknown) => {
          detector.dispose();
          throw e;
        }), f.pinned));
      }
    } catch (e) {
      for (const line of executor.#lines.values()) line.detector.dispose();
      await executor.#closeThreads();
      throw e;
    }
    return executor;
  }

  ready(): boolean {
    return !this.#closing && this.#ownThread?.alive !== false && [...this.#lines.values()].every((l) => l.thread.alive);
  }

  lineNames(): string[] {
    return [...this.#lines.keys()].sort();
  }

  lineInfo(name: string): LineInfo {
    const line = this.#line(name);
    const { detector, published } = line;
    return { name, version: published.version, ...describeLine(detector, published.snapshot.count, published.threshold) };
  }

  async predict(request: PredictRequest): Promise<PredictOutcome> {
    this.#refuseWhenClosing();
    const line = this.#line(request.line);
    if (request.minVersion !== undefined && request.minVersion > line.published.version) {
      throw new ServerError(
        'E_ARGUMENT',
        `line '${line.name}' is at store version ${line.published.version}; version ${request.minVersion} does not exist yet`,
      );
    }
    return this.#track(
      line.queue.run(async (queued) => {
        const prepared = await this.#prepare(line.thread, request.image);
        checkSignal(request.signal);
        // One instant: the snapshot, the threshold and the version agree.
        const pinned = line.published;
        const p = await line.detector.predict(prepared.image, { snapshot: pinned.snapshot, threshold: pinned.threshold?.value, features: prepared.features });
        checkSignal(request.signal);
        const t1 = performance.now();
        const maps = await renderMaps(p, request.maps, pinned.threshold);
        const mapsMs = performance.now() - t1;
        const outcome: PredictOutcome = {
          line: line.name,
          score: p.score,
          ...(p.label === undefined ? {} : { label: p.label, threshold: p.threshold }),
          templates: p.templates,
          version: pinned.version,
          width: prepared.image.originalWidth,
          height: prepared.image.originalHeight,
          timings: { queue: queued, decode: prepared.decodeMs, backbone: prepared.backboneMs, match: p.timings.match, score: p.timings.score, maps: mapsMs },
          maps,
        };
        this.#emit({
          type: 'verdict',
          line: line.name,
          ...(request.id === undefined ? {} : { id: request.id }),
          name: request.image.name,
          score: outcome.score,
          ...(outcome.label === undefined ? {} : { label: outcome.label, threshold: outcome.threshold }),
          templates: outcome.templates,
          version: outcome.version,
          at: new Date().toISOString(),
        });
        return outcome;
      }, request.signal),
    );
  }

  async addNormals(name: string, images: readonly ImageUpload[], options: HotUpdateOptions = {}): Promise<HotUpdateOutcome> {
    this.#refuseWhenClosing();
    const line = this.#line(name);
    if (images.length === 0) throw new ServerError('E_NO_IMAGES', 'no images to add: send one or more normal images');
    return this.#change(line, async () => {
      // Every image is decoded and its features extracted before anything is appended: one bad image adds nothing.
      const features: Float32Array[][] = [];
      for (const upload of images) {
        checkSignal(options.signal);
        features.push((await this.#prepare(line.thread, upload)).features);
      }
      // One locked, fsynced append record; other processes' appends to the file are merged in too.
      // Images the store holds by id (a repeated key, a prediction marked twice) are not appended again.
      const update = hotUpdateId(options.key);
      const items = images.map((upload, i) => ({ features: features[i]!, file: upload.name, id: upload.id ?? `${update}/${i}` }));
      const result = await line.detector.store.appendToFile(line.file, items, { update, lock: { purpose: `hetmm serve: hot update of line ${line.name}` } });
      publish(line);
      if (result.appended > 0 || result.merged > 0) this.#emitStore(line, 'normals');
      return { line: line.name, added: result.appended, duplicates: result.duplicates, templates: line.published.snapshot.count, version: line.published.version, ids: items.map((i) => i.id) };
    });
  }

  async listNormals(name: string): Promise<NormalsList> {
    const line = this.#line(name);
    // after the changes in progress: the list agrees with the version
    await line.writes.catch(() => undefined);
    return { line: line.name, version: line.published.version, ...normalsOf(line.detector.store) };
  }

  async removeNormals(name: string, ids: readonly string[], options: HotUpdateOptions = {}): Promise<RemoveNormalsOutcome> {
    this.#refuseWhenClosing();
    const line = this.#line(name);
    return this.#change(line, async () => {
      checkSignal(options.signal);
      const store = line.detector.store;
      const r = await store.removeFromFile(line.file, ids, { ...(options.key === undefined ? {} : { update: hotUpdateId(options.key) }), lock: { purpose: `hetmm serve: removal of normals of line ${line.name}` } });
      publish(line);
      if (r.removed.length > 0 || r.merged > 0) this.#emitStore(line, 'normals');
      return { line: line.name, removed: r.removed, alreadyRemoved: r.alreadyRemoved, templates: line.published.snapshot.count, version: line.published.version };
    }).catch(unknownNormal);
  }

  async setThreshold(name: string, value: number): Promise<LineInfo> {
    this.#refuseWhenClosing();
    const line = this.#line(name);
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new ServerError('E_ARGUMENT', `Expected the threshold as a finite number but received ${JSON.stringify(value)}`);
    }
    return this.#change(line, async () => {
      const store = line.detector.store;
      const before = store.meta;
      store.meta = metaWithThreshold(line.detector, value);
      try {
        await store.save(line.file, { lock: { purpose: `hetmm serve: threshold of line ${line.name}` } });
      } catch (e) {
        // memory stays as the file on disk
        store.meta = before;
        throw e;
      }
      publish(line);
      this.#emitStore(line, 'threshold');
      return this.lineInfo(line.name);
    });
  }

  async createLine(name: string, images: readonly ImageUpload[], options: FitOptions, onProgress?: (p: FitProgress) => void): Promise<LineInfo> {
    this.#refuseWhenClosing();
    validateLineName(name);
    const dataDir = this.#options.dataDir;
    if (dataDir === undefined) throw new ServerError('E_FORBIDDEN', 'lines can only be created when the server runs with --data-dir');
    if (this.#lines.has(name) || this.#creating.has(name)) throw new ServerError('E_CONFLICT', `line '${name}' already exists`);
    if (this.#broken.has(name)) throw new ServerError('E_CONFLICT', `line '${name}' exists but its store does not open (${this.#broken.get(name)!}): not replaced over HTTP`);
    if (images.length === 0) throw new ServerError('E_NO_IMAGES', 'no images: a new line needs normal images to fit');
    const samples = options.calibrate;
    if (samples !== undefined && (!Number.isInteger(samples) || samples < 0)) throw new ServerError('E_ARGUMENT', `Expected calibrate as a non-negative integer but received ${String(samples)}`);
    const precision = options.precision ?? (this.#options.precision === 'float' ? 'float' : 'int8');
    if (precision !== 'float' && precision !== 'int8') throw new ServerError('E_ARGUMENT', `Expected precision float or int8 but received ${JSON.stringify(precision)}`);
    if (precision === 'int8' && this.#options.precision === 'float') {
      throw new ServerError('E_ARGUMENT', 'this server runs with precision float: it cannot serve an int8 line');
    }
    this.#creating.add(name);
    const file = storePathInDataDir(dataDir, name);
    const work = (async (): Promise<LineInfo> => {
      let int8Thread: string | undefined;
      const stage = { quantize: 'quantize', fit: 'features', calibrate: 'calibrate' } as const;
      // hetmm fit's own path (fitStore), with the backbone on this server's threads: the same images give the same store and threshold
      const fitted = await fitStore(
        { ...this.#detectorOptions(), precision, preset: options.preset ?? 'default', dtype: options.dtype ?? 'float32' },
        {
          files: images.map((i) => i.name),
          output: file,
          ...(samples === undefined ? {} : samples === 0 ? { calibrate: false } : { calibrationSamples: samples }),
          onProgress: (phase, done, total) => {
            if (phase in stage) onProgress?.({ stage: stage[phase as keyof typeof stage], done, total });
          },
          hooks: {
            // quantised on a thread (seconds of work), the uploads decoded there
            // quantised into memory (embedded in the store) on a thread: seconds of work, the uploads decoded there
            quantize: async (model) => {
              const backbone = await Backbone.load({ model, ...(this.#options.threads === undefined ? {} : { threads: this.#options.threads }) });
              const inputSize = backbone.identity.inputSize;
              backbone.dispose();
              return quantizeOnThread({ images: images.map((i) => i.bytes), model, inputSize, maxPixels: this.#maxPixels(), ...(this.#options.threads === undefined ? {} : { threads: this.#options.threads }) });
            },
            features: async (detector, index) => {
              if (precision === 'int8') int8Thread = detector.backbone.modelPath;
              return this.#prepare(await this.#threadFor(detector, precision === 'int8'), images[index]!).then((p) => p.features);
            },
          },
        },
      ).catch(async (e: unknown) => {
        // an int8 line's feature thread (its embedded model's) is its own
        if (int8Thread !== undefined) await this.#closeThread(int8Thread);
        throw e;
      });
      const detector = fitted.detector;
      try {
        onProgress?.({ stage: 'save', done: 1, total: 1 });
        const line = this.#newLine(name, file, detector, await this.#threadFor(detector), false);
        this.#lines.set(name, line);
        this.#emitStore(line, 'created');
        return this.lineInfo(name);
      } catch (e) {
        detector.dispose();
        if (int8BackboneName(detector.store.meta) !== undefined) await this.#closeThread(detector.backbone.modelPath);
        throw e;
      }
    })();
    try {
      return await this.#track(work);
    } finally {
      this.#creating.delete(name);
    }
  }

  async deleteLine(name: string): Promise<void> {
    this.#refuseWhenClosing();
    const line = this.#line(name);
    if (line.pinned) throw new ServerError('E_FORBIDDEN', `line '${name}' is served from --store ${line.file}; it is not deleted over HTTP`);
    await this.#change(line, async () => {
      line.deleted = true;
      line.unwatch();
      this.#lines.delete(name);
      await line.queue.drained();
      await rm(line.file, { force: true });
      // An int8 store's feature thread is its own. Its model is inside the store file (or, an older store,
      // in sidecar files that other stores may name too: left in place, never deleted with a line).
      if (int8BackboneName(line.detector.store.meta) !== undefined) await this.#closeThread(line.detector.backbone.modelPath);
      line.detector.dispose();
      this.#emit({ type: 'store', line: name, change: 'deleted', templates: 0, version: line.published.version, at: new Date().toISOString() });
    });
  }

  subscribe(listener: (event: ExecutorEvent) => void): () => void {
    this.#events.on('event', listener);
    return () => this.#events.off('event', listener);
  }

  load(): LineLoad[] {
    return [...this.#lines.values()].map((l) => ({
      line: l.name,
      queued: l.queue.queued,
      running: l.queue.running,
      queueLimit: l.queue.limit,
      retryAfter: l.queue.retryAfter(),
    }));
  }

  async close(): Promise<void> {
    this.#closing = true;
    // Accepted work finishes (changes are saved before they are answered, so nothing else needs flushing).
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    for (const line of this.#lines.values()) line.unwatch();
    for (const line of this.#lines.values()) await line.writes.catch(() => undefined);
    for (const line of this.#lines.values()) line.detector.dispose();
    this.#lines.clear();
    await this.#closeThreads();
  }

  /** Closes the feature thread started under `key` (an int8 model's), unless a line still runs on it. */
  async #closeThread(key: string): Promise<void> {
    const pending = this.#threads.get(key);
    if (pending === undefined) return;
    const thread = await pending.catch(() => undefined);
    if (thread !== undefined && [...this.#lines.values()].some((l) => l.thread === thread)) return;
    this.#threads.delete(key);
    await thread?.close();
  }

  async #closeThreads(): Promise<void> {
    const threads = [...this.#threads.values()];
    this.#threads.clear();
    await Promise.allSettled(threads.map(async (t) => (await t).close()));
  }

  /**
   * The feature thread running `detector`'s backbone model (undefined: the
   * server's own model, --model or the default), started on first use and
   * checked to load the same model as the detector. `int8`: the detector runs
   * an int8 store's own backbone (default: its store names one; a line being
   * fitted int8 does not yet).
   */
  async #threadFor(detector: Detector | undefined, int8 = detector !== undefined && int8BackboneName(detector.store.meta) !== undefined): Promise<FeatureThread> {
    const ownModel = detector === undefined || !int8;
    const key = ownModel ? '' : detector.backbone.modelPath;
    let pending = this.#threads.get(key);
    if (pending === undefined) {
      const o = this.#options;
      const model = ownModel ? o.model : detector.backbone.modelPath;
      pending = FeatureThread.start({ ...(model === undefined ? {} : { model }), ...(o.threads === undefined ? {} : { threads: o.threads }) }, undefined);
      this.#threads.set(key, pending);
      pending.catch(() => this.#threads.delete(key)); // a later line retries
    }
    const thread = await pending;
    if (detector !== undefined && thread.modelSha256 !== detector.backbone.identity.modelSha256) {
      throw new ServerError('E_MODEL_INVALID', `the feature thread loaded another model than the store's detector (${detector.backbone.modelPath} changed on disk?)`);
    }
    return thread;
  }

  #newLine(name: string, file: string, detector: Detector, thread: FeatureThread, pinned: boolean): Line {
    const line: Line = {
      name,
      file,
      detector,
      thread,
      queue: new LineQueue(this.#options.concurrency ?? 2, this.#options.queueLimit ?? 8),
      pinned,
      published: undefined as unknown as Published,
      writes: Promise.resolve(),
      deleted: false,
      unwatch: () => {},
    };
    publish(line);
    line.unwatch = watchStoreFile(
      file,
      () => this.#followOtherWriters(line),
      // the line keeps serving what it has (e.g. the file was refitted with another backbone: restart to serve it)
      (e) => process.emitWarning(`line ${name}: cannot read other writers' changes to ${file}: ${e instanceof Error ? e.message : String(e)}`),
    );
    return line;
  }

  /** Reads other processes' changes to a line's file (after this server's own, never during them) and publishes them. */
  #followOtherWriters(line: Line): Promise<void> {
    if (this.#closing || line.deleted) return Promise.resolve();
    return this.#change(line, async () => {
      const store = line.detector.store;
      const [count, lineage, version] = [store.count, store.lineage, line.published.version];
      await store.refresh(line.file);
      if (store.count === count && store.lineage === lineage && storeVersion(store) === version) return;
      publish(line);
      this.#emitStore(line, 'normals');
    });
  }

  /** Detector.open's options for every line (the line service decides each store's backbone and precision). */
  #detectorOptions(): { model?: string; backend?: BackendPreference; threads?: number; matchPrecision?: 'float' | 'int8'; precision?: 'float' | 'int8' } {
    const o = this.#options;
    return {
      ...(o.precision === undefined ? {} : { precision: o.precision }),
      ...(o.model === undefined ? {} : { model: o.model }),
      ...(o.backend === undefined ? {} : { backend: o.backend }),
      ...(o.threads === undefined ? {} : { threads: o.threads }),
      ...(o.matchPrecision === undefined ? {} : { matchPrecision: o.matchPrecision }),
    };
  }

  async #openDetector(file: string): Promise<Detector> {
    // an int8 store opens its own int8 backbone, which its feature thread then runs
    return Detector.open((await servedLineOptions(file, this.#detectorOptions())).options);
  }

  #maxPixels(): number {
    return this.#options.maxPixels ?? DEFAULT_MAX_PIXELS;
  }

  brokenLines(): BrokenLine[] {
    return [...this.#broken.entries()].map(([line, reason]) => ({ line, state: 'failed' as const, reason }));
  }

  /** Decodes an upload and extracts its features on the line's feature thread; errors name the upload. */
  async #prepare(thread: FeatureThread, upload: ImageUpload): Promise<PreparedImage> {
    try {
      return await thread.prepare(upload.bytes, this.#maxPixels());
    } catch (e) {
      // The library names the source '<buffer>'; the operator knows the upload by its name.
      if (isHetmmError(e)) e.message = e.message.replace("'<buffer>'", JSON.stringify(upload.name));
      throw e;
    }
  }

  #line(name: string): Line {
    const line = typeof name === 'string' ? this.#lines.get(name) : undefined;
    if (line === undefined || line.deleted) {
      throw new ServerError('E_NOT_FOUND', `no line named ${JSON.stringify(String(name).slice(0, 80))} (lines: ${this.lineNames().join(', ') || 'none'})`);
    }
    return line;
  }

  #refuseWhenClosing(): void {
    if (this.#closing) throw new ServerError('E_UNAVAILABLE', 'the server is shutting down', { retryAfter: 5 });
  }

  /** Runs a change to one line after the ones before it; a failed change leaves memory as the file on disk. */
  #change<T>(line: Line, apply: () => Promise<T>): Promise<T> {
    const result = line.writes.then(async () => {
      if (line.deleted) throw new ServerError('E_NOT_FOUND', `line '${line.name}' was deleted`);
      return apply();
    });
    line.writes = result.catch(() => undefined);
    return this.#track(result);
  }

  #track<T>(work: Promise<T>): Promise<T> {
    this.#pending.add(work);
    const done = (): void => {
      this.#pending.delete(work);
    };
    work.then(done, done);
    return work;
  }

  #emitStore(line: Line, change: 'normals' | 'threshold' | 'created'): void {
    this.#emit({
      type: 'store',
      line: line.name,
      change,
      templates: line.published.snapshot.count,
      version: line.published.version,
      ...(line.published.threshold === undefined ? {} : { threshold: line.published.threshold.value }),
      at: new Date().toISOString(),
    });
  }

  #emit(event: ExecutorEvent): void {
    this.#events.emit('event', event);
  }
}

/** An id the line never held: 404, like an unknown line. */
function unknownNormal(e: unknown): never {
  if (isUnknownNormalError(e)) throw new ServerError('E_NOT_FOUND', (e as Error).message, { cause: e });
  throw e;
}

function checkSignal(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}
