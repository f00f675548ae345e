/**
 * quantizeBackboneFor on a worker thread, for the server: fitting a line
 * over HTTP quantises the backbone on the uploaded normals, and the
 * calibration forward passes (onnxruntime runs them synchronously on its
 * caller's thread) and the protobuf rewrite would otherwise hold the
 * server's event loop for seconds. The uploads are decoded there too.
 */
import { WorkerThread } from '../threads/index.js';

export interface QuantizeThreadOptions {
  /** encoded normal images (copied to the thread) */
  readonly images: readonly Uint8Array[];
  /** the float model to quantise (path) and its input size */
  readonly model: string;
  readonly inputSize: readonly [number, number];
  /** the int8 .onnx to write (its description beside it) */
  readonly output: string;
  readonly maxPixels?: number;
  readonly threads?: number;
}

export interface QuantizeThreadResult {
  readonly output: string;
  readonly descriptionPath: string;
  readonly calibrationImages: number;
  /** the store meta entry naming the int8 backbone */
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
