/**
 * Worker-thread side of ./backbone-thread.ts: decodes images and runs the
 * backbone. onnxruntime-node runs a forward pass synchronously on the
 * calling thread, so on the main thread it holds up everything else queued
 * there (the next matching call, scoring) until it returns; here it does not.
 */
import { loadImage } from '../image/index.js';
import { answerRequests, threadData, transferring, type Transferring } from '../threads/index.js';
import { loadThreadBackbone } from './thread-backbone.js';
import type { BackboneThreadOptions, BackboneReply, BackboneRequest } from './backbone-thread.js';

const options = threadData<BackboneThreadOptions>();
const ready = loadThreadBackbone(options);
ready.catch(() => undefined); // reported to 'init' and to every request

async function handle(request: BackboneRequest): Promise<BackboneReply | Transferring<BackboneReply>> {
  const backbone = await ready;
  if (request.op === 'init') return { modelSha256: backbone.identity.modelSha256, inputSize: backbone.identity.inputSize };
  const t0 = performance.now();
  const { source } = request;
  const input = typeof source === 'string' ? source : Buffer.from(source.buffer, source.byteOffset, source.byteLength);
  const image = await loadImage(input, { size: backbone.identity.inputSize, maxPixels: request.maxPixels });
  const t1 = performance.now();
  const features = await backbone.extract(image);
  const reply: BackboneReply = { image, features, decodeMs: t1 - t0, backboneMs: performance.now() - t1 };
  return transferring(reply, [image.data.buffer as ArrayBuffer, ...features.map((f) => f.buffer as ArrayBuffer)]);
}

answerRequests(handle);
