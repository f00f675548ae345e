/**
 * quantizeBackboneFor on a worker thread, for the server: fitting a line
 * over HTTP quantises the backbone on the uploaded normals, and the
 * calibration forward passes (onnxruntime runs them synchronously on its
 * caller's thread) and the protobuf rewrite would otherwise hold the
 * server's event loop for seconds. The uploads are decoded there too. The
 * int8 model comes back in memory, to embed in the line's store: nothing is
 * written until the store is saved.
 */
import type { EmbeddedModel } from '../store/index.js';
import { WorkerThread } from '../threads/index.js';

export interface QuantizeThreadOptions {
  /** encoded normal images (copied to the thread) */
  readonly images: readonly Uint8Array[];
  /** the float model to quantise (path) and its input size */
  readonly model: string;
  readonly inputSize: readonly [number, number];
  readonly maxPixels?: number;
  readonly threads?: number;
}

export interface QuantizeThreadResult {
  /** the int8 model to embed in the store */
  readonly model: EmbeddedModel;
  readonly calibrationImages: number;
  /** the store meta entry saying the int8 backbone is embedded */
  readonly meta: Record<string, string>;
}

/** One thread per quantisation: it runs once, answering its one request, and is closed. */
export function quantizeOnThread(options: QuantizeThreadOptions): Promise<QuantizeThreadResult> {
  const thread = new WorkerThread<QuantizeThreadOptions, QuantizeThreadResult>(new URL('./quantize-worker.js', import.meta.url), {
    name: 'the quantisation thread',
    onnxruntime: true,
  });
  return thread.call(options).finally(() => void thread.close());
}
