/** predict's --pipelines N|auto (Detector.predictMany's `pipelines`). */
import os from 'node:os';
import { HetmmError } from '../errors.js';

/**
 * Fewest images for which `auto` starts pipelines: below it, starting the
 * pipeline threads (a model session each, the templates shared) costs more
 * than they save (measured in docs/PERFORMANCE.md, "Pipelines").
 */
export const AUTO_PIPELINES_MIN_IMAGES = 24;
/** auto never starts more (each pipeline holds its own model session) */
const AUTO_PIPELINES_MAX = 8;

/**
 * The number of pipelines for `images` images: N as given, or for `auto`
 * (the default) one per core, at most 8, when there are at least
 * AUTO_PIPELINES_MIN_IMAGES images, else 1 (the multi-threaded pipeline).
 * `backboneThread` asks for the single pipeline: auto then gives 1.
 */
export function pipelinesOption(value: string | undefined, images: number, backboneThread: boolean): number {
  if (value === undefined || value === 'auto') {
    if (backboneThread || images < AUTO_PIPELINES_MIN_IMAGES) return 1;
    return Math.max(1, Math.min(os.availableParallelism(), AUTO_PIPELINES_MAX, images));
  }
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64) {
    throw new HetmmError('E_ARGUMENT', `Expected auto or an integer from 1 to 64 for --pipelines but received "${value}"`);
  }
  return n;
}
