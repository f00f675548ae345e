/**
 * Decoding and the backbone on a worker thread (./backbone-worker.ts), for
 * Detector.predictMany (option backboneThread) and the server's uploads
 * (src/server/feature-thread.ts). onnxruntime-node runs a forward pass
 * synchronously on the calling thread: on the main thread, the next image's
 * matching could not start, nor a finished match be scored, until it
 * returned, so the backbone and the matching pool took turns instead of
 * sharing the cores. The thread has its own onnxruntime session of the same
 * model (its memory cost is measured in docs/PERFORMANCE.md).
 */
import { Worker } from 'node:worker_threads';
import { loadedModel } from '../backbone/backbone.js';
import { disableOnnxruntimeTelemetry } from '../config.js';
import type { BackboneDescription } from '../backbone/description.js';
import { HetmmError, type HetmmErrorCode } from '../errors.js';
import type { LoadedImage } from '../image/index.js';

export interface BackboneThreadOptions {
  /** default: the model store's (as Backbone.load); a store's embedded model by its name (./store-backbone.ts loadBackbone) */
  readonly model?: string;
  /** the model's bytes (an embedded model; default: those this process holds under `model`, shared with the thread) */
  readonly modelBytes?: Uint8Array;
  /** default: the model's sidecar description (as Backbone.load) */
  readonly description?: BackboneDescription;
  /** onnxruntime intra-op threads */
  readonly threads?: number;
}

export type BackboneRequest =
  | { readonly id: number; readonly op: 'init' }
  | { readonly id: number; readonly op: 'features'; readonly source: string | Uint8Array; readonly maxPixels?: number };

export interface BackboneReply {
  readonly id: number;
  readonly ok: boolean;
  readonly modelSha256?: string;
  readonly inputSize?: readonly [number, number];
  readonly image?: LoadedImage;
  readonly features?: Float32Array[];
  readonly decodeMs?: number;
  readonly backboneMs?: number;
  readonly code?: HetmmErrorCode;
  readonly message?: string;
}

export interface ThreadFeatures {
  readonly image: LoadedImage;
  readonly features: Float32Array[];
  readonly decodeMs: number;
  readonly backboneMs: number;
}

export class BackboneThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (r: BackboneReply) => void; reject: (e: unknown) => void }>();
  #next = 0;
  #failure: Error | undefined;
  /** the loaded model's sha256 and input size (set by start) */
  modelSha256 = '';
  inputSize: readonly [number, number] = [0, 0];

  private constructor(options: BackboneThreadOptions) {
    disableOnnxruntimeTelemetry(); // before a thread that loads onnxruntime (see config.ts)
    this.#worker = new Worker(new URL('./backbone-worker.js', import.meta.url), { workerData: options });
    this.#worker.on('message', (reply: BackboneReply) => {
      const p = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      p?.resolve(reply);
    });
    const fail = (e: Error): void => {
      this.#failure ??= e;
      for (const p of this.#pending.values()) p.reject(new HetmmError('E_BACKEND', `the backbone thread stopped: ${e.message}`, { cause: e }));
      this.#pending.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
  }

  /** Starts the thread; when `expectSha256` is given (the detector's model), it must have loaded that model. */
  static async start(options: BackboneThreadOptions, expectSha256?: string): Promise<BackboneThread> {
    const held = options.modelBytes === undefined && options.model !== undefined ? await loadedModel(options.model) : undefined;
    const thread = new BackboneThread(held === undefined ? options : { description: held.description, ...options, modelBytes: held.bytes });
    try {
      const reply = await thread.#call({ id: thread.#next++, op: 'init' });
      thread.modelSha256 = reply.modelSha256!;
      thread.inputSize = reply.inputSize!;
      if (expectSha256 !== undefined && reply.modelSha256 !== expectSha256) {
        throw new HetmmError('E_MODEL_INVALID', `the backbone thread loaded another model than the detector's (${options.model ?? 'the default model'} changed on disk?)`);
      }
    } catch (e) {
      await thread.close();
      throw e;
    }
    return thread;
  }

  /** Why the thread stopped (undefined while it runs). */
  get failure(): Error | undefined {
    return this.#failure;
  }

  /**
   * Decodes `source`, a file or encoded bytes (HetmmError E_IMAGE_* on bad
   * input), and extracts its features. Bytes are moved to the thread: the
   * caller's array is detached.
   */
  async features(source: string | Uint8Array, maxPixels: number | undefined): Promise<ThreadFeatures> {
    const request: BackboneRequest = { id: this.#next++, op: 'features', source, ...(maxPixels === undefined ? {} : { maxPixels }) };
    const reply = await this.#call(request, typeof source === 'string' ? [] : [source.buffer as ArrayBuffer]);
    return { image: reply.image!, features: reply.features!, decodeMs: reply.decodeMs!, backboneMs: reply.backboneMs! };
  }

  async close(): Promise<void> {
    this.#failure ??= new Error('closed');
    await this.#worker.terminate();
  }

  #call(request: BackboneRequest, transfer: ArrayBuffer[] = []): Promise<BackboneReply> {
    if (this.#failure !== undefined) {
      return Promise.reject(new HetmmError('E_BACKEND', `the backbone thread is not running (${this.#failure.message})`));
    }
    return new Promise<BackboneReply>((resolve, reject) => {
      this.#pending.set(request.id, { resolve, reject });
      this.#worker.postMessage(request, transfer);
    }).then((reply) => {
      if (!reply.ok) throw new HetmmError(reply.code ?? 'E_INTERNAL', reply.message ?? 'backbone thread error');
      return reply;
    });
  }
}
