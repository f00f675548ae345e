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
 * The templates are put into shared memory once (shareLayer: int8-quantised
 * when matching in int8) and every pipeline reads the same copy; a pipeline
 * costs its own model session and scratch (measured in docs/PERFORMANCE.md).
 * A run matches against the store as it was when the run started.
 */
import { Worker } from 'node:worker_threads';
import { disableOnnxruntimeTelemetry } from '../config.js';
import type { Backbone } from '../backbone/backbone.js';
import type { BackboneDescription } from '../backbone/description.js';
import { HetmmError, type HetmmErrorCode } from '../errors.js';
import type { KernelBackend, MatchPrecision } from '../kernels/contract.js';
import { shareLayer, type NativeVariant, type SharedLayer } from '../kernels/fast/index.js';
import type { Preset } from '../matching/index.js';
import type { StoreSnapshot } from '../store/index.js';
import type { Prediction } from './prediction.js';

/** What a pipeline thread needs besides its model (the 'init' message; shared memory is not copied). */
export interface PipelineConfig {
  readonly maxPixels?: number;
  readonly preset: Preset;
  /** per backbone layer, the snapshot's templates in shared memory */
  readonly layers: readonly SharedLayer[];
  readonly templates: number;
  readonly threshold?: number;
  /** the native float kernels' variant; undefined: match with the reference backend (the addon did not load) */
  readonly variant?: NativeVariant;
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

export type PipelineRequest =
  | { readonly id: number; readonly op: 'init'; readonly config: PipelineConfig }
  | { readonly id: number; readonly op: 'predict'; readonly file: string };

export interface PipelineReply {
  readonly id: number;
  readonly ok: boolean;
  readonly prediction?: Prediction;
  readonly code?: HetmmErrorCode;
  readonly message?: string;
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
}

function sameSource(a: PipelineSource, b: PipelineSource): boolean {
  return (
    a.backbone === b.backbone &&
    a.backend === b.backend &&
    a.snapshot.count === b.snapshot.count &&
    a.snapshot.layers.every((stack, l) => stack.data.buffer === b.snapshot.layers[l]?.data.buffer) &&
    a.preset === b.preset &&
    a.threshold === b.threshold &&
    a.maxPixels === b.maxPixels
  );
}

/** The pipelines' configuration: the snapshot's templates shared at the backend's precision. */
function pipelineConfig(source: PipelineSource): PipelineConfig {
  const { backend, snapshot, preset } = source;
  const fast = backend.name === 'fast' ? (backend as KernelBackend & { variant: NativeVariant; precision: MatchPrecision }) : undefined;
  const precision = fast?.precision ?? 'float';
  return {
    ...(source.maxPixels === undefined ? {} : { maxPixels: source.maxPixels }),
    preset,
    layers: snapshot.layers.map((stack, l) => shareLayer(stack, preset.layers[l]!, precision)),
    templates: snapshot.count,
    ...(source.threshold === undefined ? {} : { threshold: source.threshold }),
    ...(fast === undefined ? {} : { variant: fast.variant }),
  };
}

/** One pipeline thread. It keeps the process alive only while it has work. */
class PipelineThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (r: PipelineReply) => void; reject: (e: unknown) => void }>();
  #next = 0;
  failure: Error | undefined;

  constructor(model: PipelineModel) {
    disableOnnxruntimeTelemetry(); // before a thread that loads onnxruntime (see config.ts)
    this.#worker = new Worker(new URL('./pipeline-worker.js', import.meta.url), { workerData: model });
    this.#worker.unref();
    this.#worker.on('message', (reply: PipelineReply) => {
      const p = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) this.#worker.unref();
      p?.resolve(reply);
    });
    const fail = (e: Error): void => {
      this.failure ??= e;
      for (const p of this.#pending.values()) p.reject(new HetmmError('E_BACKEND', `a pipeline thread stopped: ${e.message}`, { cause: e }));
      this.#pending.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
  }

  /** requests sent and not answered yet */
  get load(): number {
    return this.#pending.size;
  }

  call(request: { op: 'init'; config: PipelineConfig } | { op: 'predict'; file: string }): Promise<PipelineReply> {
    if (this.failure !== undefined) return Promise.reject(new HetmmError('E_BACKEND', `the pipeline thread is not running (${this.failure.message})`));
    const id = this.#next++;
    return new Promise<PipelineReply>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.ref();
      this.#worker.postMessage({ id, ...request } as PipelineRequest);
    }).then((reply) => {
      if (!reply.ok) throw new HetmmError(reply.code ?? 'E_INTERNAL', reply.message ?? 'pipeline thread error');
      return reply;
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error('closed');
    await this.#worker.terminate();
  }
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
  readonly #threads: PipelineThread[];
  readonly #ready: Promise<unknown>;
  readonly #queue: Task[] = [];

  constructor(count: number, source: PipelineSource) {
    this.count = count;
    this.#source = source;
    const { backbone } = source;
    // the threads load their model while this thread shares the templates
    const threads = Array.from(
      { length: count },
      () =>
        new PipelineThread({
          model: backbone.modelPath,
          ...(backbone.modelBytes === undefined ? {} : { modelBytes: backbone.modelBytes }),
          description: backbone.description,
          modelSha256: backbone.identity.modelSha256,
        }),
    );
    this.#threads = threads;
    this.#ready = (async () => {
      const config = pipelineConfig(source);
      await Promise.all(threads.map((t) => t.call({ op: 'init', config })));
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
        if (thread.load >= depth || thread.failure !== undefined) continue;
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
      const reason = this.#threads[0]!.failure!.message;
      for (const task of this.#queue.splice(0)) task.reject(new HetmmError('E_BACKEND', `no pipeline thread is running (${reason})`));
    }
  }
}
