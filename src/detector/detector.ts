/**
 * The detector: backbone + template store + matching backend + preset, the
 * one object the CLI (and later the HTTP server and queue workers) drive.
 *
 * Concurrency model: one loaded store serves any number of concurrent
 * `predict` calls while `add` appends images. A prediction reads a snapshot
 * of the store taken when its matching starts (the store grows in place past
 * the snapshot's end and never rewrites images a snapshot can see), so an
 * image added mid-prediction takes effect from the next prediction on.
 */
// backbone.js and description.js, not the folder's index: the index also exports the quantiser (onnx-proto), loaded only when used
import type { Backbone } from '../backbone/backbone.js';
import { HetmmError } from '../errors.js';
import { loadImage, type LoadedImage } from '../image/index.js';
import type { FeatureStack, KernelBackend, MatchResult } from '../kernels/contract.js';
import { matchLayerAt } from '../kernels/index.js';
import { resolvePreset, scoreMap, type Preset } from '../matching/index.js';
import { TemplateSelector, type TemplateSelection } from '../selection/nearest-templates.js';
import { TemplateStore, type StoreNormal, type StoreRemoveOptions, type StoreRemoveResult, type StoreSnapshot } from '../store/index.js';
import { storedThreshold } from './threshold.js';
import { assertSameBackbone, lineTemplateSelection, openLineParts, presetFromMeta, type DetectorOptions } from './line.js';
import { BackboneThread } from './backbone-thread.js';
import { PipelinePool, SharedTemplates } from './pipelines.js';
import { layerInputs, scoreResults, toPrediction, type Prediction } from './prediction.js';
import { validateDetectorOptions, validateImageSource, validatePredictMany } from './validate.js';

export type { DetectorOptions } from './line.js';

export { INT8_BACKBONE_META } from './store-backbone.js';

export type { Prediction } from './prediction.js';

export interface ProgressEvent {
  readonly done: number;
  readonly total: number;
  readonly file: string;
}

export type ProgressCallback = (event: ProgressEvent) => void;

const now = (): number => performance.now();

export class Detector {
  readonly backbone: Backbone;
  readonly backend: KernelBackend;
  preset: Preset;
  #store: TemplateStore;
  /** the store file this detector was opened from: `add` appends to it durably (locked, merged) */
  #storeFile: string | undefined;
  #maxPixels: number | undefined;
  /** predictMany's pipeline threads, kept between calls (./pipelines.ts) */
  #pipelines: PipelinePool | undefined;
  /** the templates the pipelines match, in shared memory (./pipelines.ts SharedTemplates) */
  #shared: { readonly backend: KernelBackend; readonly preset: Preset; readonly templates: SharedTemplates } | undefined;
  /** onnxruntime threads the detector was opened with (predictMany's backbone thread uses the same) */
  #threads: number | undefined;
  /** template preselection (the line's templateSelection); undefined: exact ATMM over all templates */
  #selector: TemplateSelector | undefined;

  private constructor(backbone: Backbone, backend: KernelBackend, store: TemplateStore, preset: Preset, storeFile?: string) {
    this.backbone = backbone;
    this.backend = backend;
    this.#store = store;
    this.preset = preset;
    this.#storeFile = storeFile;
  }

  /**
   * Opens a detector. `store` is a template store file, a loaded store, or
   * undefined for a new empty store (fill it with `add`).
   */
  static async open(options: DetectorOptions = {}): Promise<Detector> {
    validateDetectorOptions(options);
    // the line service decides the backbone, the precision, the backend and the preset (./line.ts)
    const line = await openLineParts(options);
    const detector = new Detector(line.backbone, line.backend, line.store, line.preset, line.storeFile);
    detector.#maxPixels = options.maxPixels;
    detector.#threads = options.threads;
    detector.#useSelection(line.selection);
    return detector;
  }

  get store(): TemplateStore {
    return this.#store;
  }

  /** The line's template preselection (k, grid, layer), or undefined: exact ATMM over all templates. */
  get templateSelection(): Required<TemplateSelection> | undefined {
    return this.#selector?.selection;
  }

  /** The preselection itself, for the server's pipelines (they take its descriptors in shared memory); undefined: exact. */
  get templateSelector(): TemplateSelector | undefined {
    return this.#selector;
  }

  /** Starts (or stops) template preselection; descriptors of the store's templates are computed at once. */
  #useSelection(selection: Required<TemplateSelection> | undefined): void {
    this.#selector = selection === undefined ? undefined : new TemplateSelector(selection);
    this.#describeTemplates();
  }

  /** Descriptors of templates not yet described (at open and after a hot update: no retraining, O(1) per template). */
  #describeTemplates(): void {
    const snapshot = this.#store.snapshot();
    if (this.#selector !== undefined && snapshot.count > 0) this.#selector.descriptors(snapshot.layers);
  }

  /** The store file `add` writes to (the one the detector was opened from), if any. */
  get storeFile(): string | undefined {
    return this.#storeFile;
  }

  /**
   * Replaces the store (e.g. with a PTS-compressed one); in-flight predictions
   * keep their snapshot. `file`: the store file later adds append to (default none).
   */
  setStore(store: TemplateStore, file?: string): void {
    assertSameBackbone(store.identity, this.backbone.identity);
    this.#store = store;
    this.#storeFile = file;
  }

  /**
   * A detector for another store sharing this one's backbone and backend (one
   * ONNX session for many lines); dispose only the detector that opened them.
   */
  withStore(store: TemplateStore, preset?: Preset | string): Detector {
    assertSameBackbone(store.identity, this.backbone.identity);
    const option = preset ?? presetFromMeta(store.meta.preset) ?? 'default';
    const detector = new Detector(this.backbone, this.backend, store, typeof option === 'string' ? resolvePreset(option) : option);
    // the other store's own templateSelection (the line rule without an option)
    detector.#useSelection(lineTemplateSelection(undefined, store.meta, store.layerCount));
    return detector;
  }

  /** Decodes and resizes an image to the backbone's input size. */
  async loadImage(source: string | Buffer): Promise<LoadedImage> {
    const [h, w] = this.backbone.identity.inputSize;
    return loadImage(source, { size: [h, w], maxPixels: this.#maxPixels });
  }

  /** Per-layer L2-normalised features [C,H,W] of one image. */
  async features(source: string | Buffer | LoadedImage): Promise<{ image: LoadedImage; features: Float32Array[] }> {
    validateImageSource(source, 'features(source)');
    const image = isLoadedImage(source) ? source : await this.loadImage(source);
    return { image, features: await this.backbone.extract(image) };
  }

  /**
   * Hot update: appends normal images to the template store. They take effect
   * for every prediction that starts matching after this resolves. Opened
   * from a store file, the images are appended to that file durably (under
   * its cross-process lock, merging other processes' appends: see
   * TemplateStore.appendToFile) before this resolves.
   *
   * All or nothing: features are extracted for every image first; by default
   * the first bad image throws and nothing is added. With `onFailure`, a bad
   * image is reported to it and skipped, and the others are added.
   */
  async add(
    sources: readonly string[],
    onProgress?: ProgressCallback,
    options: { onFailure?: (file: string, error: Error) => void } = {},
  ): Promise<number> {
    if (!Array.isArray(sources) || !sources.every((s) => typeof s === 'string')) {
      throw new HetmmError('E_ARGUMENT', `Expected add(sources) to be an array of file paths but received ${describeValue(sources)}`);
    }
    // A store file gets one durable append of all images at the end; a store in memory grows
    // image by image (fit: no second copy of gigabytes of features) and is rolled back on failure.
    const toFile = this.#storeFile !== undefined;
    const items: { features: Float32Array[]; file: string }[] = [];
    const countBefore = this.#store.count;
    if (!toFile) this.#store.reserve(sources.length); // on a PTS store a new image becomes one more sheet (docs/PTS.md)
    let done = 0;
    // Decoding of image i+1 overlaps the backbone on image i.
    const load = (i: number): Promise<LoadedImage> => {
      const p = this.loadImage(sources[i]!);
      p.catch(() => undefined); // surfaced when awaited
      return p;
    };
    try {
      let next: Promise<LoadedImage> | undefined = sources.length > 0 ? load(0) : undefined;
      for (let i = 0; i < sources.length; i++) {
        const current = next!;
        next = i + 1 < sources.length ? load(i + 1) : undefined;
        try {
          const features = await this.backbone.extract(await current);
          if (toFile) items.push({ features, file: sources[i]! });
          else this.#store.append(features, sources[i]!);
        } catch (e) {
          if (options.onFailure === undefined) throw e;
          options.onFailure(sources[i]!, e instanceof Error ? e : new Error(String(e)));
        }
        done++;
        onProgress?.({ done, total: sources.length, file: sources[i]! });
      }
    } catch (e) {
      if (!toFile) this.#store.rollbackTo(countBefore);
      throw e;
    }
    if (toFile && items.length > 0) {
      await this.#store.appendToFile(this.#storeFile!, items, { lock: { purpose: 'hetmm add' } });
    }
    this.#describeTemplates();
    return toFile ? items.length : this.#store.count - countBefore;
  }

  /** The store's normals: id, file name, base or appended, when (TemplateStore.normals). */
  normals(): StoreNormal[] {
    return this.#store.normals();
  }

  /**
   * Undo of a hot update: removes normals by id from the store file, durably
   * (TemplateStore.removeFromFile: one removal record under the file lock).
   * They take no part in predictions that start matching after this
   * resolves. Only for a detector opened from a store file.
   */
  async removeNormals(ids: readonly string[], options: StoreRemoveOptions = {}): Promise<StoreRemoveResult> {
    if (this.#storeFile === undefined) throw new HetmmError('E_ARGUMENT', 'removeNormals needs a detector opened from a store file (Detector.open({ store }))');
    return this.#store.removeFromFile(this.#storeFile, ids, { ...options, lock: { purpose: 'hetmm normals remove', ...options.lock } });
  }

  /** Matches already-extracted features against the current store snapshot. */
  async matchFeatures(
    features: readonly Float32Array[],
    options: { exclude?: number; snapshot?: StoreSnapshot; backend?: KernelBackend } = {},
  ): Promise<{
    results: MatchResult[];
    templates: number;
  }> {
    const snapshot = options.snapshot ?? this.#store.snapshot();
    if (snapshot.count === 0) {
      throw new HetmmError('E_ARGUMENT', 'the template store is empty: add normal images first (hetmm fit / hetmm add)');
    }
    const layers = this.backbone.identity.layers;
    const backend = options.backend ?? this.backend; // calibration may match in int8
    const results: MatchResult[] = [];
    // template preselection: the nearest k (never the left-out one), undefined when k covers them all
    const chosen = this.#selector?.select(snapshot.layers, features, options.exclude);
    if (chosen !== undefined) {
      for (let l = 0; l < layers.length; l++) {
        const { query, match } = layerInputs(this.backbone.identity, this.preset, features, l);
        results.push(await matchLayerAt(backend, query, snapshot.layers[l]!, chosen, match));
      }
      return { results, templates: chosen.length };
    }
    for (let l = 0; l < layers.length; l++) {
      const { query, match } = layerInputs(this.backbone.identity, this.preset, features, l);
      const stack = snapshot.layers[l]!;
      if (options.exclude === undefined) {
        results.push(await backend.matchLayer(query, stack, match));
        continue;
      }
      // Leave one out without copying the store: both sides of the excluded
      // image are contiguous views, and Fwd/Bwd are maxima over templates.
      const parts = splitAround(stack, options.exclude);
      const partial: MatchResult[] = [];
      for (const part of parts) partial.push(await backend.matchLayer(query, part, match));
      results.push(maxMerge(partial));
    }
    return { results, templates: options.exclude === undefined ? snapshot.count : snapshot.count - 1 };
  }

  /**
   * Scores one image: anomaly score, maps and, when the store has a threshold, a label.
   * `pinned` (the server) matches against a given snapshot of this store and labels
   * with a given threshold, so that a prediction sees one published store version,
   * and may bring the image's features (extracted on another thread).
   */
  async predict(
    source: string | Buffer | LoadedImage,
    pinned?: { snapshot: StoreSnapshot; threshold: number | undefined; features?: Float32Array[] },
  ): Promise<Prediction> {
    validateImageSource(source, 'predict(source)');
    const t0 = now();
    const image = isLoadedImage(source) ? source : await this.loadImage(source);
    const t1 = now();
    const features = pinned?.features ?? (await this.backbone.extract(image));
    return this.#matchAndScore(image, features, { decode: t1 - t0, backbone: now() - t1 }, pinned);
  }

  async #matchAndScore(
    image: LoadedImage,
    features: Float32Array[],
    before: { decode: number; backbone: number },
    pinned?: { snapshot: StoreSnapshot; threshold: number | undefined },
  ): Promise<Prediction> {
    const t2 = now();
    const { results, templates } = await this.matchFeatures(features, { snapshot: pinned?.snapshot });
    const t3 = now();
    const scored = this.scoreResults(results, image);
    const t4 = now();
    const threshold = pinned === undefined ? this.threshold : pinned.threshold;
    return toPrediction(image, scored, threshold, templates, { ...before, match: t3 - t2, score: t4 - t3 });
  }

  /**
   * Combines per-layer match results into maps and a score with the current
   * preset; `image` (the decoded input) adds the preset's band cue, if any,
   * to the pixel map.
   */
  scoreResults(results: readonly MatchResult[], image?: LoadedImage): ReturnType<typeof scoreMap> {
    return scoreResults(this.backbone.identity, this.preset, results, image);
  }

  /**
   * Predicts many images, overlapping decoding, the backbone and matching of
   * consecutive images (`concurrency` images in flight), and yields results
   * in input order. A failing image yields an Error in its place and the run
   * goes on. Default concurrency 2: enough to overlap one image's backbone
   * with the previous one's matching on a 2-core machine; 3 measured no
   * consistently better (docs/PERFORMANCE.md, end to end).
   * `pipelines` N > 1: N independent single-threaded pipelines on worker
   * threads instead (./pipelines.ts; `concurrency` then does not apply):
   * on 2 cores, 2 pipelines are the fastest way through many images.
   */
  async *predictMany(
    sources: readonly string[],
    options: { concurrency?: number; backboneThread?: boolean; pipelines?: number } = {},
  ): AsyncGenerator<{ source: string; prediction?: Prediction; error?: Error }> {
    const { concurrency, backboneThread, pipelines } = validatePredictMany(sources, options);
    const snapshot = this.#store.snapshot();
    if (pipelines > 1 && snapshot.count > 0 && sources.length > 0) {
      // the templates are shared before any thread starts (a backend that cannot share them is refused first);
      // the threads are kept for the next call while the backbone stays the same (dispose() stops them)
      const state = this.#sharedTemplates().state(snapshot, this.threshold, this.#selector);
      if (this.#pipelines?.fits(pipelines, this.backbone) !== true) {
        void this.#pipelines?.close();
        this.#pipelines = new PipelinePool(pipelines, this.backbone);
      }
      yield* this.#pipelines.run(sources, state, this.#maxPixels);
      return;
    }
    const thread = backboneThread
      ? await BackboneThread.start(
          {
            model: this.backbone.modelPath,
            ...(this.backbone.modelBytes === undefined ? {} : { modelBytes: this.backbone.modelBytes }),
            description: this.backbone.description,
            backend: this.backend.name,
            ...(this.#threads === undefined ? {} : { threads: this.#threads }),
          },
          this.backbone.identity.modelSha256,
        )
      : undefined;
    const predictOne = async (file: string): Promise<Prediction> => {
      if (thread === undefined) return this.predict(file);
      const prepared = await thread.features(file, this.#maxPixels);
      return this.#matchAndScore(prepared.image, prepared.features, { decode: prepared.decodeMs, backbone: prepared.backboneMs });
    };
    const inFlight: Promise<{ source: string; prediction?: Prediction; error?: Error }>[] = [];
    let next = 0;
    const start = (i: number): Promise<{ source: string; prediction?: Prediction; error?: Error }> =>
      predictOne(sources[i]!).then(
        (prediction) => ({ source: sources[i]!, prediction }),
        (error: unknown) => ({ source: sources[i]!, error: error instanceof Error ? error : new Error(String(error)) }),
      );
    try {
      while (next < sources.length && inFlight.length < concurrency) inFlight.push(start(next++));
      while (inFlight.length > 0) {
        const result = await inFlight.shift()!;
        if (next < sources.length) inFlight.push(start(next++));
        yield result;
      }
    } finally {
      await Promise.allSettled(inFlight); // a consumer that stops early: let started images finish before the thread goes
      await thread?.close();
    }
  }

  /** The store's templates in shared memory for pipelines, kept while the backend and preset stay the same. */
  #sharedTemplates(): SharedTemplates {
    const kept = this.#shared;
    if (kept !== undefined && kept.backend === this.backend && kept.preset === this.preset) return kept.templates;
    const templates = new SharedTemplates(this.backend, this.preset);
    this.#shared = { backend: this.backend, preset: this.preset, templates };
    return templates;
  }

  /** The deployment threshold stored with the templates, if it was calibrated with the current preset. */
  get threshold(): number | undefined {
    return storedThreshold(this.#store.meta, this.preset.name)?.value;
  }

  dispose(): void {
    void this.#pipelines?.close();
    this.#pipelines = undefined;
    this.backbone.dispose();
  }
}

function describeValue(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array with a non-string entry' : typeof v;
}

function isLoadedImage(x: unknown): x is LoadedImage {
  return typeof x === 'object' && x !== null && !Buffer.isBuffer(x) && (x as LoadedImage).data instanceof Float32Array;
}

/** The non-empty views of a stack before and after image `index`. */
function splitAround(stack: FeatureStack, index: number): FeatureStack[] {
  const [n, c, h, w] = stack.shape;
  if (!Number.isInteger(index) || index < 0 || index >= n) {
    throw new HetmmError('E_ARGUMENT', `Expected a template index in [0, ${n - 1}] to leave out but received ${String(index)}`);
  }
  const per = c * h * w;
  const parts: FeatureStack[] = [];
  if (index > 0) parts.push({ dtype: stack.dtype, shape: [index, c, h, w], data: stack.data.subarray(0, index * per) });
  if (index < n - 1) {
    parts.push({ dtype: stack.dtype, shape: [n - 1 - index, c, h, w], data: stack.data.subarray((index + 1) * per, n * per) });
  }
  if (parts.length === 0) throw new HetmmError('E_ARGUMENT', 'leave-one-out needs at least 2 templates');
  return parts;
}

function maxMerge(results: readonly MatchResult[]): MatchResult {
  if (results.length === 1) return results[0]!;
  const forward = Float32Array.from(results[0]!.forward);
  const backward = Float32Array.from(results[0]!.backward);
  for (const r of results.slice(1)) {
    for (let i = 0; i < forward.length; i++) {
      if (r.forward[i]! > forward[i]!) forward[i] = r.forward[i]!;
      if (r.backward[i]! > backward[i]!) backward[i] = r.backward[i]!;
    }
  }
  return { forward, backward };
}
