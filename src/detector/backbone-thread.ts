/**
 * Decoding and the backbone on a worker thread (./backbone-worker.ts), for
 * Detector.predictMany (option backboneThread) and the server's uploads
 * (until the server ran on pipelines). onnxruntime-node runs a forward pass
 * synchronously on the calling thread: on the main thread, the next image's
 * matching could not start, nor a finished match be scored, until it
 * returned, so the backbone and the matching pool took turns instead of
 * sharing the cores. The thread has its own onnxruntime session of the same
 * model (its memory cost is measured in docs/PERFORMANCE.md).
 */
import { loadedModel } from '../backbone/backbone.js';
import type { BackboneDescription } from '../backbone/description.js';
import { HetmmError } from '../errors.js';
import type { LoadedImage } from '../image/index.js';
import { WorkerThread } from '../threads/index.js';

export interface BackboneThreadOptions {
  /** default: the model store's (as Backbone.load); a store's embedded model by its name (./store-backbone.ts loadBackbone) */
  readonly model?: string;
  /** the model's bytes (an embedded model; default: those this process holds under `model`, shared with the thread) */
  readonly modelBytes?: Uint8Array;
  /** default: the model's sidecar description (as Backbone.load) */
  readonly description?: BackboneDescription;
  /** onnxruntime intra-op threads */
  readonly threads?: number;
  /** the kernel backend whose L2 normalisation the thread uses (default: fast when it loads, else the reference) */
  readonly backend?: string;
}

export type BackboneRequest =
  | { readonly op: 'init' }
  | { readonly op: 'features'; readonly source: string | Uint8Array; readonly maxPixels?: number };

export interface BackboneReply {
  readonly modelSha256?: string;
  readonly inputSize?: readonly [number, number];
  readonly image?: LoadedImage;
  readonly features?: Float32Array[];
  readonly decodeMs?: number;
  readonly backboneMs?: number;
}

export interface ThreadFeatures {
  readonly image: LoadedImage;
  readonly features: Float32Array[];
  readonly decodeMs: number;
  readonly backboneMs: number;
}

export class BackboneThread {
  readonly #thread: WorkerThread<BackboneRequest, BackboneReply>;
  /** the loaded model's sha256 and input size (set by start) */
  modelSha256 = '';
  inputSize: readonly [number, number] = [0, 0];

  private constructor(options: BackboneThreadOptions) {
    this.#thread = new WorkerThread(new URL('./backbone-worker.js', import.meta.url), { name: 'the backbone thread', data: options, onnxruntime: true });
  }

  /** Starts the thread; when `expectSha256` is given (the detector's model), it must have loaded that model. */
  static async start(options: BackboneThreadOptions, expectSha256?: string): Promise<BackboneThread> {
    const held = options.modelBytes === undefined && options.model !== undefined ? loadedModel(options.model) : undefined;
    const thread = new BackboneThread(held === undefined ? options : { description: held.description, ...options, modelBytes: held.bytes });
    try {
      const reply = await thread.#thread.call({ op: 'init' });
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
    return this.#thread.failure;
  }

  /**
   * Decodes `source`, a file or encoded bytes (HetmmError E_IMAGE_* on bad
   * input), and extracts its features. Bytes are moved to the thread: the
   * caller's array is detached.
   */
  async features(source: string | Uint8Array, maxPixels: number | undefined): Promise<ThreadFeatures> {
    const request: BackboneRequest = { op: 'features', source, ...(maxPixels === undefined ? {} : { maxPixels }) };
    const reply = await this.#thread.call(request, typeof source === 'string' ? [] : [source.buffer as ArrayBuffer]);
    return { image: reply.image!, features: reply.features!, decodeMs: reply.decodeMs!, backboneMs: reply.backboneMs! };
  }

  async close(): Promise<void> {
    await this.#thread.close();
  }
}
