/** Worker-thread side of ./quantize-thread.ts: decode the uploads, quantise the backbone on them. */
import { DEFAULT_CALIBRATION_IMAGES } from '../backbone/index.js';
import { evenlySpaced } from '../backbone/quantize/index.js';
import { loadImage } from '../image/index.js';
import { quantizeBackboneFor } from './precision.js';
import { answerRequests } from '../threads/index.js';
import type { QuantizeThreadOptions, QuantizeThreadResult } from './quantize-thread.js';

async function run(options: QuantizeThreadOptions): Promise<QuantizeThreadResult> {
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
  const q = await quantizeBackboneFor(arrays, options.output, { model: options.model, ...(options.threads === undefined ? {} : { threads: options.threads }) });
  return { output: q.result.output, descriptionPath: q.result.descriptionPath, calibrationImages: q.result.calibrationImages, meta: q.meta };
}

answerRequests(run);
