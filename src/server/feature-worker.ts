/**
 * Worker-thread side of ./feature-thread.ts: decodes uploads and runs the
 * backbone. onnxruntime-node runs a forward pass synchronously on the
 * calling thread (0.1-1.4 s measured on a loaded 2-core machine), and the
 * resize to the model's input is JavaScript, so both live here and the
 * server's event loop stays free.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Backbone } from '../backbone/index.js';
import { isHetmmError } from '../errors.js';
import { loadImage } from '../image/index.js';
import type { FeatureRequest, FeatureReply } from './feature-thread.js';

const options = workerData as { model?: string; threads?: number };
const ready = Backbone.load({ ...(options.model === undefined ? {} : { model: options.model }), ...(options.threads === undefined ? {} : { threads: options.threads }) });
ready.catch(() => undefined); // reported to the first request and to 'init'

async function handle(request: FeatureRequest): Promise<FeatureReply> {
  const backbone = await ready;
  if (request.op === 'init') return { id: request.id, ok: true, identity: { modelSha256: backbone.identity.modelSha256, inputSize: backbone.identity.inputSize } };
  const t0 = performance.now();
  const image = await loadImage(Buffer.from(request.bytes.buffer, request.bytes.byteOffset, request.bytes.byteLength), {
    size: backbone.identity.inputSize,
    maxPixels: request.maxPixels,
  });
  const t1 = performance.now();
  const features = await backbone.extract(image);
  const t2 = performance.now();
  return { id: request.id, ok: true, image, features, decodeMs: t1 - t0, backboneMs: t2 - t1 };
}

parentPort!.on('message', (request: FeatureRequest) => {
  handle(request).then(
    (reply) => {
      const transfer = reply.ok && reply.features !== undefined ? [reply.image!.data.buffer as ArrayBuffer, ...reply.features.map((f) => f.buffer as ArrayBuffer)] : [];
      parentPort!.postMessage(reply, transfer);
    },
    (e: unknown) => {
      parentPort!.postMessage({
        id: request.id,
        ok: false,
        code: isHetmmError(e) ? e.code : 'E_INTERNAL',
        message: e instanceof Error ? e.message : String(e),
      } satisfies FeatureReply);
    },
  );
});
