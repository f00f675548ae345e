/**
 * Decoding and the backbone on a worker thread (./feature-worker.ts), so that
 * neither blocks the server's event loop: the main thread keeps HTTP,
 * matching (native, asynchronous) and scoring. One thread per server: the
 * backbone uses every core for one image at a time, and decoding of the next
 * image overlaps it inside the thread.
 */
import { Worker } from 'node:worker_threads';
import { HetmmError, type HetmmErrorCode } from '../errors.js';
import type { LoadedImage } from '../image/index.js';
import { ServerError } from './errors.js';

export type FeatureRequest =
  | { readonly id: number; readonly op: 'init' }
  | { readonly id: number; readonly op: 'features'; readonly bytes: Uint8Array; readonly maxPixels: number };

export interface FeatureReply {
  readonly id: number;
  readonly ok: boolean;
  readonly identity?: { modelSha256: string; inputSize: readonly [number, number] };
  readonly image?: LoadedImage;
  readonly features?: Float32Array[];
  readonly decodeMs?: number;
  readonly backboneMs?: number;
  readonly code?: HetmmErrorCode;
  readonly message?: string;
}

export interface PreparedImage {
  readonly image: LoadedImage;
  readonly features: Float32Array[];
  readonly decodeMs: number;
  readonly backboneMs: number;
}

export class FeatureThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (r: FeatureReply) => void; reject: (e: unknown) => void }>();
  #next = 0;
  #failure: Error | undefined;
  /** the loaded model's sha256 */
  modelSha256 = '';

  private constructor(options: { model?: string; threads?: number }) {
    this.#worker = new Worker(new URL('./feature-worker.js', import.meta.url), { workerData: options });
    this.#worker.on('message', (reply: FeatureReply) => {
      const p = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      p?.resolve(reply);
    });
    const fail = (e: Error): void => {
      this.#failure = e;
      for (const p of this.#pending.values()) p.reject(new HetmmError('E_BACKEND', `the feature thread stopped: ${e.message}`, { cause: e }));
      this.#pending.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
  }

  /** Starts the thread and checks it loaded the same model as the lines' detectors (`expect`, when there are lines). */
  static async start(options: { model?: string; threads?: number }, expect: { modelSha256: string } | undefined): Promise<FeatureThread> {
    const thread = new FeatureThread(options);
    try {
      const reply = await thread.#call({ id: thread.#next++, op: 'init' });
      thread.modelSha256 = reply.identity!.modelSha256;
      if (expect !== undefined && reply.identity?.modelSha256 !== expect.modelSha256) {
        throw new HetmmError('E_MODEL_INVALID', 'the feature thread loaded another model than the detectors (model path changed while starting?)');
      }
    } catch (e) {
      await thread.close();
      throw e;
    }
    return thread;
  }

  /** true while the thread runs */
  get alive(): boolean {
    return this.#failure === undefined;
  }

  /** Decodes `bytes` (HetmmError E_IMAGE_* on bad input) and extracts its features. */
  async prepare(bytes: Buffer, maxPixels: number): Promise<PreparedImage> {
    // a copy: the upload stays with its prediction for "mark as normal", the copy is moved to the thread
    const copy = new Uint8Array(bytes);
    const reply = await this.#call({ id: this.#next++, op: 'features', bytes: copy, maxPixels }, [copy.buffer]);
    return { image: reply.image!, features: reply.features!, decodeMs: reply.decodeMs!, backboneMs: reply.backboneMs! };
  }

  async close(): Promise<void> {
    this.#failure ??= new Error('closed');
    await this.#worker.terminate();
  }

  #call(request: FeatureRequest, transfer: ArrayBuffer[] = []): Promise<FeatureReply> {
    if (this.#failure !== undefined) {
      return Promise.reject(new ServerError('E_UNAVAILABLE', `the feature thread is not running (${this.#failure.message})`));
    }
    return new Promise<FeatureReply>((resolve, reject) => {
      this.#pending.set(request.id, { resolve, reject });
      this.#worker.postMessage(request, transfer);
    }).then((reply) => {
      if (!reply.ok) throw new HetmmError(reply.code ?? 'E_INTERNAL', reply.message ?? 'feature thread error');
      return reply;
    });
  }
}
