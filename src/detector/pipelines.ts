/**
 * Independent single-threaded pipelines (Detector.predictMany's `pipelines`):
 * N worker threads, each decoding an image, running the backbone in its own
 * 1-thread onnxruntime session and matching on its own thread
 * (matchSharedLayer: no shared kernel pool, no barrier), then scoring it.
 * On 2 cores, 2 pipelines of one thread each beat one pipeline of two
 * threads by ~18% (docs/PERFORMANCE.md, "Pipelines"): a multi-threaded
 * pipeline's threads meet at every onnxruntime operator and every matching
 * call, and wait there for each other.
 *
 * The templates are put into shared memory once, by the detector's backend
 * (its shareLayer capability: int8-quantised when it matches in int8), and
 * every pipeline reads the same copy with the backend of the same name and
 * precision (matchSharedLayer); a backend without that capability, or one
 * the threads cannot load by name, is an E_BACKEND error saying so, never a
 * quiet change of backend. A pipeline costs its own model session and
 * scratch (measured in docs/PERFORMANCE.md). A run matches against the
 * store as it was when the run started.
 */
import type { Backbone } from '../backbone/backbone.js';
import type { BackboneDescription } from '../backbone/description.js';
import { HetmmError } from '../errors.js';
import type { KernelBackend, MatchPrecision, SharedLayer } from '../kernels/contract.js';
import type { Preset } from '../matching/index.js';
import type { TemplateSelection, TemplateSelector } from '../selection/nearest-templates.js';
import type { StoreSnapshot } from '../store/index.js';
import { WorkerThread } from '../threads/index.js';
import type { Prediction } from './prediction.js';

/** What a pipeline thread needs besides its model (the 'init' message; shared memory is not copied). */
export interface PipelineConfig {
  readonly maxPixels?: number;
  readonly preset: Preset;
  /** per backbone layer, the snapshot's templates in shared memory */
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

/** workerData of ./pipeline-worker.ts: the model, loaded while the templates are being shared. */
export interface PipelineModel {
  readonly model: string;
  /** an embedded model's bytes (./store-backbone.ts) */
  readonly modelBytes?: Uint8Array;
  readonly description: BackboneDescription;
  /** the detector's model: a thread that loads another refuses to start */
  readonly modelSha256: string;
}

export type PipelineRequest = { readonly op: 'init'; readonly config: PipelineConfig } | { readonly op: 'predict'; readonly file: string };

/** A pipeline thread's answer: the prediction of a 'predict', nothing for 'init'. */
export interface PipelineReply {
  readonly prediction?: Prediction;
}

export interface PipelineOutcome {
  readonly source: string;
  readonly prediction?: Prediction;
  readonly error?: Error;
}

/** What a pool's pipelines were built from: a detector state that differs needs new ones. */
export interface PipelineSource {
  readonly backbone: Backbone;
  readonly backend: KernelBackend;
  readonly snapshot: StoreSnapshot;
  readonly preset: Preset;
  readonly threshold: number | undefined;
  readonly maxPixels: number | undefined;
  readonly selector?: TemplateSelector | undefined;
}

function sameSource(a: PipelineSource, b: PipelineSource): boolean {
  return (
    a.backbone === b.backbone &&
    a.backend === b.backend &&
    a.snapshot.count === b.snapshot.count &&
    a.snapshot.layers.every((stack, l) => stack.data.buffer === b.snapshot.layers[l]?.data.buffer) &&
    a.preset === b.preset &&
    a.threshold === b.threshold &&
    a.maxPixels === b.maxPixels &&
    a.selector === b.selector
  );
}

/**
 * The backend's shareLayer, or E_BACKEND saying why pipelines cannot use it.
 * Asked before any thread starts: a thread stopped while onnxruntime loads
 * its model can abort the process at exit.
 */
function sharingOf(backend: KernelBackend): NonNullable<KernelBackend['shareLayer']> {
  if (backend.shareLayer === undefined || backend.matchSharedLayer === undefined) {
    throw new HetmmError(
      'E_BACKEND',
      `the "${backend.name}" kernel backend has no shared-memory matching (shareLayer and matchSharedLayer), which pipelines need: use one pipeline, or a backend that has it`,
    );
  }
  return backend.shareLayer.bind(backend);
}

/** The pipelines' configuration: the snapshot's templates shared by the backend (`share`), at its precision. */
function pipelineConfig(source: PipelineSource, share: NonNullable<KernelBackend['shareLayer']>): PipelineConfig {
  const { backend, snapshot, preset } = source;
  return {
    ...(source.maxPixels === undefined ? {} : { maxPixels: source.maxPixels }),
    preset,
    layers: snapshot.layers.map((stack, l) => share(stack, preset.layers[l]!)),
    templates: snapshot.count,
    ...(source.threshold === undefined ? {} : { threshold: source.threshold }),
    backend: backend.name,
    precision: backend.precision ?? 'float',
    ...(source.selector === undefined ? {} : { selection: { settings: source.selector.selection, descriptors: source.selector.sharedDescriptors(snapshot.layers) } }),
  };
}

/** One pipeline thread (src/threads/: it keeps the process alive only while it has work). */
function pipelineThread(model: PipelineModel): WorkerThread<PipelineRequest, PipelineReply> {
  return new WorkerThread(new URL('./pipeline-worker.js', import.meta.url), { name: 'a pipeline thread', data: model, onnxruntime: true });
}

/** images handed to a pipeline thread at a time: the one it works on and the next */
const PIPELINE_DEPTH = 2;

interface Task {
  readonly file: string;
  readonly resolve: (p: Prediction) => void;
  readonly reject: (e: unknown) => void;
}

/**
 * `count` pipeline threads for one detector state (PipelineSource). Threads
 * take images from one queue, so concurrent runs share them fairly; idle
 * threads do not keep the process alive. close() stops them.
 */
export class PipelinePool {
  readonly count: number;
  readonly #source: PipelineSource;
  readonly #threads: WorkerThread<PipelineRequest, PipelineReply>[];
  readonly #ready: Promise<unknown>;
  readonly #queue: Task[] = [];

  constructor(count: number, source: PipelineSource) {
    this.count = count;
    this.#source = source;
    const { backbone } = source;
    const share = sharingOf(source.backend);
    // the threads load their model while this thread shares the templates
    const threads = Array.from(
      { length: count },
      () =>
        pipelineThread({
          model: backbone.modelPath,
          ...(backbone.modelBytes === undefined ? {} : { modelBytes: backbone.modelBytes }),
          description: backbone.description,
          modelSha256: backbone.identity.modelSha256,
        }),
    );
    this.#threads = threads;
    this.#ready = (async () => {
      const config = pipelineConfig(source, share);
      // every thread's init settles before a failure closes them: one stopped while onnxruntime
      // loads its model can abort the process at exit
      const inits = await Promise.allSettled(threads.map((t) => t.call({ op: 'init', config })));
      const failed = inits.find((r) => r.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    })();
    // reported to every run; the threads stop, so the detector's next run starts new ones
    this.#ready.catch(() => this.close());
  }

  /** Whether this pool's pipelines serve `count` pipelines of this detector state. */
  fits(count: number, source: PipelineSource): boolean {
    return count === this.count && sameSource(source, this.#source) && this.#threads.some((t) => t.failure === undefined);
  }

  /**
   * Predicts `sources` and yields the outcomes in input order; a failing image
   * yields an Error in its place. At most 3 images per pipeline are ahead of
   * the consumer. Started images finish even when the consumer stops early.
   */
  async *run(sources: readonly string[]): AsyncGenerator<PipelineOutcome> {
    await this.#ready;
    // outcomes[i] is dropped once yielded: a run of thousands of images must not keep every prediction
    const outcomes: (Promise<PipelineOutcome> | undefined)[] = [];
    let consumed = 0;
    const fill = (): void => {
      while (outcomes.length < sources.length && outcomes.length < consumed + (PIPELINE_DEPTH + 1) * this.count) {
        const source = sources[outcomes.length]!;
        outcomes.push(
          this.#submit(source).then(
            (prediction) => ({ source, prediction }),
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

  async close(): Promise<void> {
    await Promise.all(this.#threads.map((t) => t.close()));
    this.#drain();
  }

  #submit(file: string): Promise<Prediction> {
    return new Promise<Prediction>((resolve, reject) => {
      this.#queue.push({ file, resolve, reject });
      this.#drain();
    });
  }

  #drain(): void {
    // each thread gets its next image before it finishes the current one (PIPELINE_DEPTH), so it
    // never waits for this thread to be scheduled (on a loaded machine that wait was milliseconds)
    for (let depth = 1; depth <= PIPELINE_DEPTH; depth++) {
      for (const thread of this.#threads) {
        if (this.#queue.length === 0) return;
        if (thread.pending >= depth || thread.failure !== undefined) continue;
        const task = this.#queue.shift()!;
        thread
          .call({ op: 'predict', file: task.file })
          .then(
            (reply) => task.resolve(reply.prediction!),
            (e: unknown) => task.reject(e),
          )
          .finally(() => this.#drain());
      }
    }
    // every thread stopped (a crash, or closed): the images no thread will take are errors, not lost
    if (this.#threads.every((t) => t.failure !== undefined)) {
      const failure = this.#threads[0]!.failure!;
      for (const task of this.#queue.splice(0)) task.reject(failure);
    }
  }
}
