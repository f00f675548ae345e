/**
 * Independent single-threaded pipelines (Detector.predictMany's `pipelines`,
 * and the in-process server's predictions): N worker threads, each decoding
 * an image, running the backbone in its own 1-thread onnxruntime session and
 * matching on its own thread (matchSharedLayer: no shared kernel pool, no
 * barrier), then scoring it. On 2 cores, 2 pipelines of one thread each
 * beat one pipeline of two threads (docs/PERFORMANCE.md, "Pipelines"): a
 * multi-threaded pipeline's threads meet at every onnxruntime operator and
 * every matching call, and wait there for each other.
 *
 * A pool is one model's threads; what an image is matched against travels
 * with each request (PipelineState: the templates in shared memory, their
 * count, the preset, the threshold, the backend), so one pool serves every
 * store of that model and a hot update reaches the very next prediction of
 * every thread. The templates are put into shared memory by the detector's
 * backend (its shareLayer capability: int8-quantised when it matches in
 * int8), once per store and then only the appended ones (SharedTemplates),
 * and every thread reads the same copy with the backend of the same name
 * and precision (matchSharedLayer); a backend without that capability, or
 * one the threads cannot load by name, is an E_BACKEND error saying so,
 * never a quiet change of backend. A pipeline costs its own model session
 * and scratch (measured in docs/PERFORMANCE.md).
 *
 * A thread that dies rejects its images with HetmmError E_INTERNAL; with
 * `restart` (the server) the pool starts a new thread in its place.
 */
import type { Backbone } from '../backbone/backbone.js';
import type { BackboneDescription } from '../backbone/description.js';
import { HetmmError } from '../errors.js';
import type { KernelBackend, MatchPrecision, SharedLayer } from '../kernels/contract.js';
import type { Preset } from '../matching/index.js';
import type { TemplateSelection, TemplateSelector } from '../selection/nearest-templates.js';
import type { StoreSnapshot } from '../store/index.js';
import { WorkerThread } from '../threads/index.js';
import type { MapsOption, PredictionMaps } from './maps.js';
import type { Prediction } from './prediction.js';
import type { StoredThreshold } from './threshold.js';

/** What one image is matched against: sent with every request (shared memory is not copied). */
export interface PipelineState {
  readonly preset: Preset;
  /** per backbone layer, the templates in shared memory (SharedTemplates) */
  readonly layers: readonly SharedLayer[];
  readonly templates: number;
  readonly threshold?: number;
  /** the kernel backend (its name in the registry) and precision that shared the layers and match them */
  readonly backend: string;
  readonly precision: MatchPrecision;
  /** template preselection: its settings and the snapshot's template descriptors in shared memory */
  readonly selection?: PipelineSelection;
}

export interface PipelineSelection {
  readonly settings: Required<TemplateSelection>;
  readonly descriptors: Float32Array;
}

/** workerData of ./pipeline-worker.ts: the model its thread loads. */
export interface PipelineModel {
  readonly model: string;
  /** an embedded model's bytes (./store-backbone.ts) */
  readonly modelBytes?: Uint8Array;
  readonly description: BackboneDescription;
  /** the detector's model: a thread that loads another refuses to start */
  readonly modelSha256: string;
}

/** A served prediction (the server's answer): the figures and the rendered maps, not the maps' arrays. */
export interface ServedPrediction {
  readonly score: number;
  readonly label?: 'ok' | 'defect';
  readonly threshold?: number;
  readonly templates: number;
  readonly width: number;
  readonly height: number;
  readonly timings: { readonly decode: number; readonly backbone: number; readonly match: number; readonly score: number; readonly maps: number };
  readonly maps: PredictionMaps;
}

/** An image decoded and its features extracted (a hot update's normals). */
export interface PipelineFeatures {
  readonly features: Float32Array[];
  readonly decodeMs: number;
  readonly backboneMs: number;
}

export type PipelineRequest =
  | { readonly op: 'init' }
  /** loads a backend by name on the thread: a run checks it once, so a backend the threads cannot load fails the run, not each image */
  | { readonly op: 'backend'; readonly backend: string; readonly precision: MatchPrecision }
  | { readonly op: 'predict'; readonly source: string; readonly state: PipelineState; readonly maxPixels?: number }
  | {
      readonly op: 'serve';
      readonly source: Uint8Array;
      readonly state: PipelineState;
      readonly maxPixels?: number;
      readonly maps: MapsOption;
      /** the line's stored threshold, for the heat map's colour scale */
      readonly mapThreshold?: StoredThreshold;
    }
  | { readonly op: 'features'; readonly source: Uint8Array; readonly maxPixels?: number };

/** A pipeline thread's answer: by op, the prediction, the served prediction or the features. */
export interface PipelineReply {
  readonly prediction?: Prediction;
  readonly served?: ServedPrediction;
  readonly features?: PipelineFeatures;
}

export interface PipelineOutcome {
  readonly source: string;
  readonly prediction?: Prediction;
  readonly error?: Error;
}

/**
 * The backend's shareLayer, or E_BACKEND saying why pipelines cannot use it.
 * Asked before any thread starts: a thread stopped while onnxruntime loads
 * its model can abort the process at exit.
 */
export function sharingOf(backend: KernelBackend): NonNullable<KernelBackend['shareLayer']> {
  if (backend.shareLayer === undefined || backend.matchSharedLayer === undefined) {
    throw new HetmmError(
      'E_BACKEND',
      `the "${backend.name}" kernel backend has no shared-memory matching (shareLayer and matchSharedLayer), which pipelines need: use one pipeline, or a backend that has it`,
    );
  }
  return backend.shareLayer.bind(backend);
}

/**
 * One store's templates in shared memory, for the pipelines: shared by the
 * detector's backend at its precision, once; later snapshots of the same
 * growing buffers (appends: rows [0, count) are never written again, see
 * src/store/template-store.ts) share only their new templates, so one copy
 * serves every thread and every hot update costs its own templates only. A
 * snapshot of other buffers (the store reallocated or re-read its file) is
 * shared anew; the old copy goes with the last request that holds it.
 */
export class SharedTemplates {
  readonly #backend: KernelBackend;
  readonly #preset: Preset;
  readonly #share: NonNullable<KernelBackend['shareLayer']>;
  #shared: { readonly snapshot: StoreSnapshot; readonly layers: readonly SharedLayer[] } | undefined;

  constructor(backend: KernelBackend, preset: Preset) {
    this.#share = sharingOf(backend);
    this.#backend = backend;
    this.#preset = preset;
  }

  /** The pipelines' state for `snapshot` of the store, labelled with `threshold`; with `selector`, its descriptors in shared memory. */
  state(snapshot: StoreSnapshot, threshold: number | undefined, selector?: TemplateSelector): PipelineState {
    return {
      preset: this.#preset,
      layers: this.#layers(snapshot),
      templates: snapshot.count,
      ...(threshold === undefined ? {} : { threshold }),
      backend: this.#backend.name,
      precision: this.#backend.precision ?? 'float',
      ...(selector === undefined ? {} : { selection: { settings: selector.selection, descriptors: selector.sharedDescriptors(snapshot.layers) } }),
    };
  }

  #layers(snapshot: StoreSnapshot): readonly SharedLayer[] {
    const before = this.#shared;
    if (before?.snapshot === snapshot) return before.layers;
    // the same buffers, as many or more templates: the earlier ones are unchanged
    const extends_ = before !== undefined && snapshot.count >= before.snapshot.count && snapshot.layers.every((stack, l) => stack.data === before.snapshot.layers[l]?.data);
    const layers = snapshot.layers.map((stack, l) => this.#share(stack, this.#preset.layers[l]!, extends_ ? before.layers[l] : undefined));
    this.#shared = { snapshot, layers };
    return layers;
  }
}

/** One pipeline thread (src/threads/: it keeps the process alive only while it has work). */
function pipelineThread(model: PipelineModel): WorkerThread<PipelineRequest, PipelineReply> {
  return new WorkerThread(new URL('./pipeline-worker.js', import.meta.url), { name: 'a pipeline thread', data: model, onnxruntime: true });
}

/** images handed to a pipeline thread at a time: the one it works on and the next */
export const PIPELINE_DEPTH = 2;

interface Task {
  readonly request: PipelineRequest;
  readonly transfer: ArrayBuffer[];
  readonly resolve: (reply: PipelineReply) => void;
  readonly reject: (e: unknown) => void;
}

interface Slot {
  thread: WorkerThread<PipelineRequest, PipelineReply>;
  /** settles when the thread loaded its model (rejects when it could not) */
  ready: Promise<unknown>;
  /** the thread answered 'init': a restart of a thread that never started would fail again */
  started: boolean;
}

/** What a pool's threads run: the model of `backbone`. */
export interface PipelinePoolOptions {
  /** start a new thread in place of one that died (the server); default false (a run's images fail with E_INTERNAL) */
  readonly restart?: boolean;
}

/**
 * `count` pipeline threads of one model. Threads take requests from one
 * queue, so concurrent runs (and lines) share them fairly; idle threads do
 * not keep the process alive. close() stops them.
 */
export class PipelinePool {
  readonly count: number;
  readonly #backbone: Backbone;
  readonly #model: PipelineModel;
  readonly #restart: boolean;
  readonly #slots: Slot[];
  readonly #ready: Promise<unknown>;
  readonly #queue: Task[] = [];
  #closed = false;
  /** threads started in place of dead ones */
  #restarts = 0;

  constructor(count: number, backbone: Backbone, options: PipelinePoolOptions = {}) {
    this.count = count;
    this.#backbone = backbone;
    this.#restart = options.restart === true;
    this.#model = {
      model: backbone.modelPath,
      ...(backbone.modelBytes === undefined ? {} : { modelBytes: backbone.modelBytes }),
      description: backbone.description,
      modelSha256: backbone.identity.modelSha256,
    };
    const slots = Array.from({ length: count }, () => this.#startSlot());
    this.#slots = slots;
    this.#ready = (async () => {
      // every thread's init settles before a failure closes them: one stopped while onnxruntime
      // loads its model can abort the process at exit
      const inits = await Promise.allSettled(slots.map((s) => s.ready));
      const failed = inits.find((r) => r.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    })();
    // reported to every request; the threads stop, so the detector's next run starts new ones
    this.#ready.catch(() => this.close());
  }

  /** Resolves when every thread loaded its model; rejects with the first that could not. */
  ready(): Promise<unknown> {
    return this.#ready;
  }

  /** Whether this pool's threads are `count` pipelines of `backbone`, and some run. */
  fits(count: number, backbone: Backbone): boolean {
    return count === this.count && backbone === this.#backbone && this.alive;
  }

  /** true while a thread runs or can be restarted */
  get alive(): boolean {
    return !this.#closed && this.#slots.some((s) => s.thread.failure === undefined || (this.#restart && s.started));
  }

  /** threads started in place of dead ones (diagnostics, tests) */
  get restarts(): number {
    return this.#restarts;
  }

  /**
   * Predicts `sources` against `state` and yields the outcomes in input
   * order; a failing image yields an Error in its place. At most 3 images
   * per pipeline are ahead of the consumer. Started images finish even when
   * the consumer stops early.
   */
  async *run(sources: readonly string[], state: PipelineState, maxPixels?: number): AsyncGenerator<PipelineOutcome> {
    await this.#ready;
    await this.#submit({ op: 'backend', backend: state.backend, precision: state.precision });
    // outcomes[i] is dropped once yielded: a run of thousands of images must not keep every prediction
    const outcomes: (Promise<PipelineOutcome> | undefined)[] = [];
    let consumed = 0;
    const fill = (): void => {
      while (outcomes.length < sources.length && outcomes.length < consumed + (PIPELINE_DEPTH + 1) * this.count) {
        const source = sources[outcomes.length]!;
        outcomes.push(
          this.#submit({ op: 'predict', source, state, ...(maxPixels === undefined ? {} : { maxPixels }) }).then(
            (reply) => ({ source, prediction: reply.prediction! }),
            (e: unknown) => ({ source, error: e instanceof Error ? e : new Error(String(e)) }),
          ),
        );
      }
    };
    try {
      fill();
      for (let i = 0; i < sources.length; i++) {
        const outcome = await outcomes[i]!;
        outcomes[i] = undefined;
        consumed = i + 1;
        fill();
        yield outcome;
      }
    } finally {
      await Promise.allSettled(outcomes.filter((o) => o !== undefined));
    }
  }

  /** Decodes `bytes` (moved to the thread), predicts it against `state` and renders `maps` there. */
  async serve(bytes: Uint8Array, state: PipelineState, options: { maps: MapsOption; mapThreshold?: StoredThreshold; maxPixels?: number }): Promise<ServedPrediction> {
    await this.#ready;
    const request: PipelineRequest = { op: 'serve', source: bytes, state, ...options };
    return (await this.#submit(request, transferable(bytes))).served!;
  }

  /** Decodes `bytes` (moved to the thread) and extracts its features. */
  async features(bytes: Uint8Array, maxPixels?: number): Promise<PipelineFeatures> {
    await this.#ready;
    const request: PipelineRequest = { op: 'features', source: bytes, ...(maxPixels === undefined ? {} : { maxPixels }) };
    return (await this.#submit(request, transferable(bytes))).features!;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#slots.map((s) => s.thread.close()));
    this.#drain();
  }

  #startSlot(): Slot {
    const thread = pipelineThread(this.#model);
    const slot: Slot = { thread, ready: thread.call({ op: 'init' }), started: false };
    slot.ready.then(
      () => {
        slot.started = true;
        this.#drain();
      },
      () => this.#drain(),
    );
    return slot;
  }

  #submit(request: PipelineRequest, transfer: ArrayBuffer[] = []): Promise<PipelineReply> {
    return new Promise<PipelineReply>((resolve, reject) => {
      this.#queue.push({ request, transfer, resolve, reject });
      this.#drain();
    });
  }

  #drain(): void {
    if (this.#restart && !this.#closed) {
      for (let i = 0; i < this.#slots.length; i++) {
        const slot = this.#slots[i]!;
        // a thread that ran and then died is replaced; one that never started would fail again
        if (slot.thread.failure !== undefined && slot.started) {
          this.#restarts++;
          this.#slots[i] = this.#startSlot();
        }
      }
    }
    // each thread gets its next image before it finishes the current one (PIPELINE_DEPTH), so it
    // never waits for this thread to be scheduled (on a loaded machine that wait was milliseconds)
    for (let depth = 1; depth <= PIPELINE_DEPTH; depth++) {
      for (const slot of this.#slots) {
        if (this.#queue.length === 0) return;
        const thread = slot.thread;
        if (!slot.started || thread.pending >= depth || thread.failure !== undefined) continue;
        const task = this.#queue.shift()!;
        thread
          .call(task.request, task.transfer)
          .then(task.resolve, task.reject)
          .finally(() => this.#drain());
      }
    }
    // no thread runs or will (a crash, or closed): the requests no thread will take are errors, not lost
    if (this.#queue.length > 0 && !this.alive) {
      const failure = this.#slots.find((s) => s.thread.failure !== undefined)?.thread.failure ?? new HetmmError('E_INTERNAL', 'the pipeline threads were closed');
      for (const task of this.#queue.splice(0)) task.reject(failure);
    }
  }
}

/** The buffer of `bytes` when it can be moved to a thread (a view of its whole, unshared buffer). */
function transferable(bytes: Uint8Array): ArrayBuffer[] {
  return bytes.buffer instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? [bytes.buffer] : [];
}
