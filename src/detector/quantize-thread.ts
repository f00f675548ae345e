/**
 * quantizeBackboneFor on a worker thread, for the server: fitting a line
 * over HTTP quantises the backbone on the uploaded normals, and the
 * calibration forward passes (onnxruntime runs them synchronously on its
 * caller's thread) and the protobuf rewrite would otherwise hold the
 * server's event loop for seconds. The uploads are decoded there too. The
 * int8 model comes back in memory, to embed in the line's store: nothing is
 * written until the store is saved.
 */
import { Worker } from 'node:worker_threads';
import { disableOnnxruntimeTelemetry } from '../config.js';
import { HetmmError, type HetmmErrorCode } from '../errors.js';
import type { EmbeddedModel } from '../store/index.js';

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

export type QuantizeThreadReply = ({ ok: true } & QuantizeThreadResult) | { ok: false; code?: HetmmErrorCode; message: string };

export function quantizeOnThread(options: QuantizeThreadOptions): Promise<QuantizeThreadResult> {
  disableOnnxruntimeTelemetry(); // before a thread that loads onnxruntime (see config.ts)
  const worker = new Worker(new URL('./quantize-worker.js', import.meta.url), { workerData: options });
  const done = new Promise<QuantizeThreadResult>((resolve, reject) => {
    worker.once('message', (reply: QuantizeThreadReply) => {
      if (reply.ok) resolve(reply);
      else reject(new HetmmError(reply.code ?? 'E_INTERNAL', reply.message));
    });
    worker.once('error', (e) => reject(new HetmmError('E_INTERNAL', `the quantisation thread failed: ${e.message}`, { cause: e })));
    worker.once('exit', (code) => reject(new HetmmError('E_INTERNAL', `the quantisation thread exited (code ${code})`)));
  });
  return done.finally(() => void worker.terminate());
}
