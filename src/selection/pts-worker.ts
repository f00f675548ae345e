/**
 * worker_threads entry for PTS: runs the reference Gram and the per-pixel
 * selection over one pixel range of one layer, reading the templates and
 * writing the results through SharedArrayBuffer views (no copies).
 * Protocol: the parent posts PtsWorkerTask; the worker answers
 * {type: 'progress', pixels} per block and {type: 'done'} or {type: 'error', message}.
 */
import { parentPort } from 'node:worker_threads';
import type { FeatureStack } from '../kernels/contract.js';
import { pixelGramReference } from './gram.js';
import { selectAtPixel, PtsPixelScratch } from './pts.js';

export interface PtsWorkerTask {
  readonly dtype: FeatureStack['dtype'];
  readonly shape: readonly [number, number, number, number];
  /** template data (Float32 or Uint16 elements per dtype) */
  readonly data: SharedArrayBuffer;
  readonly k: number;
  readonly minSamples: number;
  readonly p0: number;
  readonly p1: number;
  readonly blockPixels: number;
  /** [K, H*W] Int32 */
  readonly selected: SharedArrayBuffer;
  /** [N, H*W] Int32, or null */
  readonly labels: SharedArrayBuffer | null;
  /** [K, C, H, W] output sheets, same element type as data */
  readonly out: SharedArrayBuffer;
}

export type PtsWorkerMessage = { type: 'progress'; pixels: number } | { type: 'done' } | { type: 'error'; message: string };

function run(task: PtsWorkerTask): void {
  const [n, c, h, w] = task.shape;
  const hw = h * w;
  const k = task.k;
  const data = task.dtype === 'float16' ? new Uint16Array(task.data) : new Float32Array(task.data);
  const stack: FeatureStack = { dtype: task.dtype, shape: task.shape, data };
  const out = task.dtype === 'float16' ? new Uint16Array(task.out) : new Float32Array(task.out);
  const selected = new Int32Array(task.selected);
  const labels = task.labels ? new Int32Array(task.labels) : null;
  const nn = n * n;
  const gram = new Float64Array(Math.min(task.blockPixels, task.p1 - task.p0) * nn);
  const scratch = new PtsPixelScratch(n);
  const pixelLabels = new Int32Array(n);
  const pixelChosen = new Int32Array(k);
  for (let b0 = task.p0; b0 < task.p1; b0 += task.blockPixels) {
    const b1 = Math.min(task.p1, b0 + task.blockPixels);
    pixelGramReference(stack, b0, b1, gram);
    for (let p = b0; p < b1; p++) {
      selectAtPixel(gram, (p - b0) * nn, n, k, task.minSamples, scratch, pixelLabels, pixelChosen);
      for (let s = 0; s < k; s++) {
        const src = pixelChosen[s]!;
        selected[s * hw + p] = src;
        for (let ch = 0; ch < c; ch++) out[(s * c + ch) * hw + p] = data[(src * c + ch) * hw + p]!;
      }
      if (labels) for (let i = 0; i < n; i++) labels[i * hw + p] = pixelLabels[i]!;
    }
    parentPort!.postMessage({ type: 'progress', pixels: b1 - b0 } satisfies PtsWorkerMessage);
  }
}

parentPort?.on('message', (task: PtsWorkerTask) => {
  try {
    run(task);
    parentPort!.postMessage({ type: 'done' } satisfies PtsWorkerMessage);
  } catch (e) {
    parentPort!.postMessage({ type: 'error', message: e instanceof Error ? e.message : String(e) } satisfies PtsWorkerMessage);
  }
});
