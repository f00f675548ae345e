/**
 * worker_threads entry for PTS. Two kinds of task, both reading inputs and
 * writing results through SharedArrayBuffer views (no copies):
 *  - 'gram-and-select': the worker computes the reference Gram (float64) of
 *    its pixel range of a shared layer and selects there (reference path);
 *  - 'select': the parent already computed the Gram of a pixel block (e.g.
 *    with the native multi-threaded kernel) and copied the block's vectors;
 *    the worker runs OPTICS and the selection on its share of the block.
 * Protocol (./pts-protocol.ts, over src/threads/): the parent calls with a
 * PtsWorkerTask; the worker emits {type: 'progress', pixels} per block and
 * answers null when done (or the task's error). Tasks run in the order sent.
 */
import type { FeatureStack } from '../kernels/contract.js';
import { pixelGramReference } from '../kernels/reference/gram.js';
import { selfSimilarities } from './gram.js';
import { selectAtPixel, PtsPixelScratch } from './pts.js';
import { answerRequests, emitEvent } from '../threads/index.js';
import type { GramAndSelectTask, PtsWorkerEvent, PtsWorkerTask, SelectTask } from './pts-protocol.js';

const scratches = new Map<number, PtsPixelScratch>();
function scratchFor(n: number): PtsPixelScratch {
  let s = scratches.get(n);
  if (s === undefined) {
    scratches.clear();
    s = new PtsPixelScratch(n);
    scratches.set(n, s);
  }
  return s;
}

function elements(dtype: FeatureStack['dtype'], buffer: SharedArrayBuffer): Float32Array | Uint16Array {
  return dtype === 'float16' ? new Uint16Array(buffer) : new Float32Array(buffer);
}

function runGramAndSelect(task: GramAndSelectTask): void {
  const [n, c, h, w] = task.shape;
  const hw = h * w;
  const k = task.k;
  const data = elements(task.dtype, task.data);
  const stack: FeatureStack = { dtype: task.dtype, shape: task.shape, data };
  const out = elements(task.dtype, task.out);
  const selected = new Int32Array(task.selected);
  const labels = task.labels ? new Int32Array(task.labels) : null;
  const nn = n * n;
  const gram = new Float64Array(Math.min(task.blockPixels, task.p1 - task.p0) * nn);
  const scratch = scratchFor(n);
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
    emitEvent({ type: 'progress', pixels: b1 - b0 } satisfies PtsWorkerEvent);
  }
}

function runSelect(task: SelectTask): void {
  const { n, c, k, hw, count, b0 } = task;
  const vectors = elements(task.dtype, task.vectors);
  // the block's own stack: pixel q of the block is pixel b0 + q of the layer
  const block: FeatureStack = { dtype: task.dtype, shape: [n, c, 1, count], data: vectors };
  const gram = task.gramPrecision === 'float32' ? new Float32Array(task.gram) : new Float64Array(task.gram);
  const out = elements(task.dtype, task.out);
  const selected = new Int32Array(task.selected);
  const labels = task.labels ? new Int32Array(task.labels) : null;
  const nn = n * n;
  const scratch = scratchFor(n);
  const pixelLabels = new Int32Array(n);
  const pixelChosen = new Int32Array(k);
  // the diagonal refinement's self-similarities, for this task's pixels in one pass
  const self = gram instanceof Float32Array ? new Float64Array((task.q1 - task.q0) * n) : undefined;
  if (self) selfSimilarities(block, task.q0, task.q1, self);
  for (let q = task.q0; q < task.q1; q++) {
    const p = b0 + q;
    selectAtPixel(gram, q * nn, n, k, task.minSamples, scratch, pixelLabels, pixelChosen, block, q, self, (q - task.q0) * n);
    for (let s = 0; s < k; s++) {
      const src = pixelChosen[s]!;
      selected[s * hw + p] = src;
      for (let ch = 0; ch < c; ch++) out[(s * c + ch) * hw + p] = vectors[(src * c + ch) * count + q]!;
    }
    if (labels) for (let i = 0; i < n; i++) labels[i * hw + p] = pixelLabels[i]!;
  }
  emitEvent({ type: 'progress', pixels: task.q1 - task.q0 } satisfies PtsWorkerEvent);
}

answerRequests<PtsWorkerTask, null>(
  (task) => {
    if (task.kind === 'select') runSelect(task);
    else runGramAndSelect(task);
    return null;
  },
  { serial: true },
);
