/** Worker-thread side of ./quantize-thread.ts: decode the uploads, quantise the backbone on them. */
import { DEFAULT_CALIBRATION_IMAGES } from '../backbone/index.js';
import { evenlySpaced } from '../backbone/quantize/index.js';
import { loadImage } from '../image/index.js';
import { quantizeBackboneToEmbed } from './precision.js';
import { answerRequests, transferring, type Transferring } from '../threads/index.js';
import type { QuantizeThreadOptions, QuantizeThreadResult } from './quantize-thread.js';

async function run(options: QuantizeThreadOptions): Promise<Transferring<QuantizeThreadResult>> {
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
  // the model's bytes move to the caller (a 9 MB copy saved)
  return transferring({ model: q.model, calibrationImages: q.calibrationImages, meta: q.meta }, [q.model.bytes.buffer as ArrayBuffer]);
}

answerRequests(run);
