/**
 * Decoding and the backbone on a worker thread (the detector's
 * BackboneThread, src/detector/backbone-thread.ts), so that neither blocks
 * the server's event loop: the main thread keeps HTTP, matching (native,
 * asynchronous) and scoring. One thread per server: the backbone uses every
 * core for one image at a time, and decoding of the next image overlaps it
 * inside the thread.
 */
import { BackboneThread, type ThreadFeatures } from '../detector/backbone-thread.js';
import { ServerError } from './errors.js';

/** An upload decoded and its features extracted on the thread. */
export type PreparedImage = ThreadFeatures;

export class FeatureThread {
  readonly #thread: BackboneThread;

  private constructor(thread: BackboneThread) {
    this.#thread = thread;
  }

  /** Starts the thread and checks it loaded the same model as the lines' detectors (`expect`, when there are lines). */
  static async start(options: { model?: string; threads?: number }, expect: { modelSha256: string } | undefined): Promise<FeatureThread> {
    return new FeatureThread(await BackboneThread.start(options, expect?.modelSha256));
  }

  /** the loaded model's sha256 */
  get modelSha256(): string {
    return this.#thread.modelSha256;
  }

  /** true while the thread runs */
  get alive(): boolean {
    return this.#thread.failure === undefined;
  }

  /** Decodes `bytes` (HetmmError E_IMAGE_* on bad input) and extracts its features. */
  async prepare(bytes: Buffer, maxPixels: number): Promise<PreparedImage> {
    const failure = this.#thread.failure;
    if (failure !== undefined) throw new ServerError('E_UNAVAILABLE', `the feature thread is not running (${failure.message})`);
    // a copy: the upload stays with its prediction for "mark as normal", the copy is moved to the thread
    return this.#thread.features(new Uint8Array(bytes), maxPixels);
  }

  async close(): Promise<void> {
    await this.#thread.close();
  }
}
