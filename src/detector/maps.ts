/**
 * The maps a prediction returns to a serving door (PNG heat map and mask, or
 * the raw map as .npy), rendered where the prediction was made: on a
 * pipeline thread for the server (./pipeline-worker.ts), so that PNG
 * encoding stays off the event loop; the queue worker's compute thread.
 */
import { encodeMaskPng, npyHeader, renderHeatmapOverlay } from '../image/index.js';
import type { Prediction } from './prediction.js';
import { heatmapRange, type StoredThreshold } from './threshold.js';

/** Which maps a prediction returns: none, PNG images (heat-map overlay and mask), or the raw float map as .npy. */
export type MapsOption = 'none' | 'png' | 'npy';

export interface PredictionMaps {
  /** colour heat map blended over the (resized) image, RGB PNG */
  readonly heatmapPng?: Buffer;
  /** pixels over the threshold, 8-bit grey PNG (only when the line has a threshold) */
  readonly maskPng?: Buffer;
  /** raw ATMM anomaly map, float32 .npy [height, width] */
  readonly anomalyNpy?: Buffer;
}

/**
 * zlib level of the served PNGs: rendered per request, so encoding speed
 * counts more than bytes (the same pixels; docs/PERFORMANCE.md, "The server
 * on the pipelines").
 */
const SERVED_PNG_LEVEL = 1;

/** The maps a request asked for, on the calibrated colour scale. */
export async function renderMaps(p: Prediction, maps: MapsOption, threshold: StoredThreshold | undefined): Promise<PredictionMaps> {
  if (maps === 'none') return {};
  if (maps === 'npy') {
    const data = Buffer.from(p.anomalyMap.buffer, p.anomalyMap.byteOffset, p.anomalyMap.byteLength);
    return { anomalyNpy: Buffer.concat([npyHeader([p.height, p.width]), data]) };
  }
  const range = heatmapRange(p, threshold === undefined ? {} : { threshold }, threshold?.preset ?? '');
  const heatmapPng = await renderHeatmapOverlay(p.image, p.pixelMap, p.height, p.width, { range, alpha: 0.5, compressionLevel: SERVED_PNG_LEVEL });
  if (p.threshold === undefined) return { heatmapPng };
  const mask = new Uint8Array(p.height * p.width);
  for (let i = 0; i < mask.length; i++) mask[i] = p.pixelMap[i]! > p.threshold ? 1 : 0;
  return { heatmapPng, maskPng: await encodeMaskPng(mask, p.height, p.width, { compressionLevel: SERVED_PNG_LEVEL }) };
}

