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
 * Predictions run on the predict command's pipelines (src/detector/pipelines.ts):
 * per backbone model a pool of single-threaded pipeline threads (decode,
 * backbone, matching, scoring and the maps' PNG encoding), shared by the
 * lines of that model. Each request carries its line's pinned state (the
 * templates in shared memory, one copy per line extended by each append,
 * the threshold), so the next prediction after a change uses it in every
 * thread. A thread that dies answers its requests with E_INTERNAL and is
 * restarted. Hot updates extract their normals' features on the same
 * threads.
 *
 * Version = templates + meta.revision (../fit/line-state.ts).
 */
import { EventEmitter } from 'node:events';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import { Backbone } from '../backbone/backbone.js';
import { Detector } from '../detector/detector.js';
import { servedLineOptions } from '../detector/line.js';
import { PIPELINE_DEPTH, PipelinePool, SharedTemplates, type PipelineFeatures } from '../detector/pipelines.js';
import { storedThreshold, type StoredThreshold } from '../detector/threshold.js';
import { setting } from '../config.js';
import { isHetmmError } from '../errors.js';
import { fitStore } from '../fit/fit-store.js';
import { checkThresholdValue, describeLine, metaWithThreshold, normalsOf, storeVersion } from '../fit/line-state.js';
import { isUnknownNormalError, type StoreSnapshot } from '../store/index.js';
import { watchStoreFile } from '../store/file-watch.js';
import { DEFAULT_MAX_PIXELS } from '../image/index.js';
import type { BackendPreference } from '../kernels/index.js';
import { ServerError } from './errors.js';
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
  PredictionMaps,
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
  /**
   * cores to use: the number of pipeline threads per backbone model (default
   * the threads setting, HETMM_THREADS, else one per core; at most 8)
   */
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
  /** predictions computed at once per line; default 2 per pipeline thread (each thread has its next image at hand) */
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
  /** the pipeline threads of this line's backbone model (an int8 store's own int8 backbone) */
  readonly pool: PipelinePool;
  /** its pool key (#pools) */
  readonly poolKey: string;
  /** the templates in shared memory, for the pipelines */
  readonly shared: SharedTemplates;
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
  // shared with the pipelines now (a new line: the whole store, before it serves; a change: its own templates),
  // not in the first request after it
  line.shared.state(line.published.snapshot, line.published.threshold?.value, line.detector.templateSelector);
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
   * The pipeline threads, one pool per backbone model, keyed by the model's
   * sha256: the float stores of the server's model share one, each int8
   * store (its own int8 backbone, quantised on its normals) has its own.
   * With its users (lines, fits in progress): the last one closes it.
   */
  readonly #pools = new Map<string, { readonly pool: PipelinePool; users: number }>();
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
        try {
          // the threads load their model before the server answers: a model that does not load fails the start
          executor.#lines.set(f.name, await executor.#newLine(f.name, f.file, detector, f.pinned));
        } catch (e) {
          detector.dispose();
          throw e;
        }
      }
    } catch (e) {
      for (const line of executor.#lines.values()) line.detector.dispose();
      await executor.#closePools();
      throw e;
    }
    return executor;
  }

  ready(): boolean {
    return !this.#closing && [...this.#lines.values()].every((l) => l.pool.alive);
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
        checkSignal(request.signal);
        // One instant: the snapshot, the threshold and the version agree; the request carries them to its thread.
        const pinned = line.published;
        const state = line.shared.state(pinned.snapshot, pinned.threshold?.value, line.detector.templateSelector);
        const p = await this.#onPipeline(request.image, () =>
          line.pool.serve(new Uint8Array(request.image.bytes), state, {
            maps: request.maps,
            ...(pinned.threshold === undefined ? {} : { mapThreshold: pinned.threshold }),
            maxPixels: this.#maxPixels(),
          }),
        );
        checkSignal(request.signal);
        const outcome: PredictOutcome = {
          line: line.name,
          score: p.score,
          ...(p.label === undefined ? {} : { label: p.label, threshold: p.threshold }),
          templates: p.templates,
          version: pinned.version,
          width: p.width,
          height: p.height,
          timings: { queue: queued, ...p.timings },
          maps: asBuffers(p.maps),
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
        features.push((await this.#features(line.pool, upload)).features);
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
    checkThresholdValue(value);
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
      // the pool the fit's features ran on (its model's), held until the line holds it
      let fitPool: string | undefined;
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
              if (fitPool === undefined) fitPool = this.#acquirePool(detector).key;
              return this.#features(this.#pools.get(fitPool)!.pool, images[index]!).then((p) => p.features);
            },
          },
        },
      ).catch(async (e: unknown) => {
        if (fitPool !== undefined) await this.#releasePool(fitPool);
        throw e;
      });
      const detector = fitted.detector;
      try {
        onProgress?.({ stage: 'save', done: 1, total: 1 });
        const line = await this.#newLine(name, file, detector, false);
        this.#lines.set(name, line);
        this.#emitStore(line, 'created');
        return this.lineInfo(name);
      } catch (e) {
        detector.dispose();
        throw e;
      } finally {
        if (fitPool !== undefined) await this.#releasePool(fitPool);
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
      // An int8 store's pipelines are its own (the last user closes a pool). Its model is inside the store file
      // (or, an older store, in sidecar files that other stores may name too: left in place, never deleted with a line).
      await this.#releasePool(line.poolKey);
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
    await this.#closePools();
  }

  /** This many pipelines per backbone model: the threads option, else the threads setting (HETMM_THREADS), else one per core; at most 8. */
  #pipelineCount(): number {
    const configured = this.#options.threads ?? Number(setting('threads') ?? NaN);
    const count = Number.isInteger(configured) && configured > 0 ? configured : os.availableParallelism();
    return Math.max(1, Math.min(count, MAX_PIPELINES));
  }

  /** The pipeline pool of `detector`'s backbone model, started on first use; one more user. */
  #acquirePool(detector: Detector): { key: string; pool: PipelinePool } {
    const key = detector.backbone.identity.modelSha256;
    let entry = this.#pools.get(key);
    if (entry === undefined || !entry.pool.alive) {
      const pool = new PipelinePool(this.#pipelineCount(), detector.backbone, { restart: true });
      pool.ready().catch(() => undefined); // reported to the line that starts it and to every request
      entry = { pool, users: entry?.users ?? 0 };
      this.#pools.set(key, entry);
    }
    entry.users++;
    return { key, pool: entry.pool };
  }

  /** One user less of the pool under `key`; the last one closes it. */
  async #releasePool(key: string): Promise<void> {
    const entry = this.#pools.get(key);
    if (entry === undefined || --entry.users > 0) return;
    this.#pools.delete(key);
    await entry.pool.close();
  }

  async #closePools(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.allSettled(pools.map((p) => p.pool.close()));
  }

  /** A line serving `detector`, its pipelines started (and their model loaded). */
  async #newLine(name: string, file: string, detector: Detector, pinned: boolean): Promise<Line> {
    // a backend that cannot share its templates with the pipelines is refused before any thread starts
    const shared = new SharedTemplates(detector.backend, detector.preset);
    const { key, pool } = this.#acquirePool(detector);
    try {
      await pool.ready();
    } catch (e) {
      await this.#releasePool(key);
      throw e;
    }
    const line: Line = {
      name,
      file,
      detector,
      pool,
      poolKey: key,
      shared,
      queue: new LineQueue(this.#options.concurrency ?? PIPELINE_DEPTH * pool.count, this.#options.queueLimit ?? 8),
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

  /** Decodes an upload and extracts its features on a pipeline thread. */
  #features(pool: PipelinePool, upload: ImageUpload): Promise<PipelineFeatures> {
    // a copy: the upload stays with its request (a prediction's "mark as normal"), the copy moves to the thread
    return this.#onPipeline(upload, () => pool.features(new Uint8Array(upload.bytes), this.#maxPixels()));
  }

  /** Runs `work` on the pipelines for `upload`; errors name the upload. */
  async #onPipeline<T>(upload: ImageUpload, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
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

/** pipelines per model at most (each holds its own model session) */
const MAX_PIPELINES = 8;

/** Maps from a pipeline thread (views, after the structured copy) as Buffers again. */
function asBuffers(maps: PredictionMaps): PredictionMaps {
  const wrap = (b: Uint8Array | undefined): Buffer | undefined => (b === undefined ? undefined : Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  const out: { heatmapPng?: Buffer; maskPng?: Buffer; anomalyNpy?: Buffer } = {};
  for (const k of ['heatmapPng', 'maskPng', 'anomalyNpy'] as const) {
    const b = wrap(maps[k]);
    if (b !== undefined) out[k] = b;
  }
  return out;
}

function checkSignal(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}
