/** Worker-thread side of ./quantize-thread.ts: decode the uploads, quantise the backbone on them. */
import { parentPort, workerData } from 'node:worker_threads';
import { DEFAULT_CALIBRATION_IMAGES } from '../backbone/index.js';
import { evenlySpaced } from '../backbone/quantize/index.js';
import { isHetmmError } from '../errors.js';
import { loadImage } from '../image/index.js';
import { quantizeBackboneToEmbed } from './precision.js';
import type { QuantizeThreadOptions, QuantizeThreadReply } from './quantize-thread.js';

const options = workerData as QuantizeThreadOptions;

async function run(): Promise<QuantizeThreadReply> {
  // only the images the quantiser keeps are decoded (evenly spaced, at most DEFAULT_CALIBRATION_IMAGES)
  const picked = evenlySpaced(options.images, DEFAULT_CALIBRATION_IMAGES);
  const arrays: Float32Array[] = [];
  for (const bytes of picked) {
    const image = await loadImage(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
      size: options.inputSize,
      ...(options.maxPixels === undefined ? {} : { maxPixels: options.maxPixels }),
    });
    arrays.push(image.data);
  }
  const q = await quantizeBackboneToEmbed(arrays, { model: options.model, ...(options.threads === undefined ? {} : { threads: options.threads }) });
  return { ok: true, model: q.model, calibrationImages: q.calibrationImages, meta: q.meta };
}

run().then(
  (reply) => parentPort!.postMessage(reply, reply.ok ? [reply.model.bytes.buffer as ArrayBuffer] : []),
  (e: unknown) =>
    parentPort!.postMessage({ ok: false, ...(isHetmmError(e) ? { code: e.code } : {}), message: e instanceof Error ? e.message : String(e) } satisfies QuantizeThreadReply),
);
