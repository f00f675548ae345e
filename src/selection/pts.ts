/**
 * PTS, pixel-level template selection (HETMM, Chen et al., IJCV 2024): from N
 * normal template feature maps keep K "sheets" per layer, chosen independently
 * at every pixel from the N vectors there:
 *  1. OPTICS (scikit-learn semantics, ./optics.ts) over the N unit vectors with
 *     distance 1 - <x_i, x_j> and min_samples = N // K.
 *  2. For each cluster, in order of first appearance over n (noise skipped),
 *     while fewer than K are chosen: the member maximising its summed
 *     similarity to the cluster (first index wins ties).
 *  3. If no cluster gave a sheet: the global centre argmax_i sum_j G_ij.
 *  4. While fewer than K: the hard normal, argmin over the not-chosen of the
 *     similarity summed over the chosen (first index wins ties).
 * Slot k at pixel p copies image sel[k][p]'s vector, so a sheet mixes images.
 *
 * Memory: pixels are processed in blocks whose Gram (block * N * N) stays
 * within GRAM_BLOCK_BYTES, plus one N x N similarity matrix and OPTICS scratch.
 */
import type { FeatureStack } from '../kernels/contract.js';
import { HetmmError } from '../errors.js';
import { opticsFromSimilarity, OpticsScratch } from './optics.js';
import { pixelGramReference } from '../kernels/reference/gram.js';
import {
  NEAR_DUPLICATE_DISTANCE,
  refinePairs,
  selfSimilarities,
  type Float32GramFunction,
  type Float64GramFunction,
} from './gram.js';
import { WorkerThread } from '../threads/index.js';
import type { PtsWorkerEvent, PtsWorkerTask } from './pts-protocol.js';

export type { Float32GramFunction, Float64GramFunction } from './gram.js';

/** Upper bound for one block of per-pixel Gram matrices. */
const GRAM_BLOCK_BYTES = 64 * 1024 * 1024;
/** Per buffer of the pipelined path (two buffers: one computed, one selected on). */
const PIPELINE_GRAM_BYTES = 128 * 1024 * 1024;
/** The native Gram kernel's vector lanes: it works on chunks of this many pixels (see native/gram_body.h). */
const GRAM_ITEM_PIXELS = 16;

interface SelectCommonOptions {
  /** called after each pixel block: pixels done and total, over all layers */
  readonly onProgress?: (done: number, total: number) => void;
  /** also return the per-pixel OPTICS labels and chosen image indices */
  readonly returnIndices?: boolean;
  /**
   * worker threads; default 1 = everything on this thread. Without a custom
   * `gram` each worker computes the reference Gram (float64) of its share of
   * the pixels and selects there. With a custom `gram` (e.g. the native
   * multi-threaded kernel) the Gram of each pixel block is computed on this
   * thread and the workers run OPTICS and the selection on it, while this
   * thread computes the next block's Gram (double buffering).
   */
  readonly workers?: number;
  /**
   * bytes of one buffer of per-pixel Gram matrices (how many pixels are
   * handled per block); default 64 MiB (128 MiB per buffer, two buffers, on
   * the pipelined path). At least one pixel per block.
   */
  readonly gramBlockBytes?: number;
}

/**
 * The Gram kernel (layout in ./gram.ts) and its output precision. Default:
 * the plain TypeScript reference in float64, the precision the OPTICS labels
 * are pinned in. With a float32 kernel (gramPrecision 'float32'), near-zero
 * distances (duplicates) and self-similarities are recomputed in float64 so
 * their rounding matches; other entries keep float32 error (~1e-7), which
 * can flip genuine near-ties.
 */
export type SelectOptions = SelectCommonOptions &
  (
    | { readonly gramPrecision?: 'float64'; readonly gram?: Float64GramFunction }
    | { readonly gramPrecision: 'float32'; readonly gram: Float32GramFunction }
  );

/** Per-layer selection detail, pixel index p = y * W + x. */
export interface LayerSelection {
  /** [N, H*W] OPTICS label of image n at pixel p (-1 noise); null when all N were kept */
  readonly labels: Int32Array | null;
  /** [K', H*W] image index copied into slot k at pixel p (K' = min(K, N)) */
  readonly selected: Int32Array;
}

export interface SelectResult {
  /** per input layer, the [K', C, H, W] selected sheets (same dtype) */
  readonly layers: FeatureStack[];
  /** conditions a user should know about (clamped min_samples, kept-all) */
  readonly notes: string[];
  readonly indices?: LayerSelection[];
}

/** Reusable working memory for {@link selectAtPixel}. */
export class PtsPixelScratch {
  /** this pixel's Gram in float64 (refined when it came from a float32 kernel); OPTICS reads 1 - similarity */
  similarity: Float64Array;
  readonly optics: OpticsScratch;
  score: Float64Array;
  chosenFlag: Uint8Array;
  seenCluster: Uint8Array;
  /** near-duplicate pairs (i, j) found while copying a float32 Gram, grown on demand */
  nearPairs = new Int32Array(64);
  constructor(n: number) {
    this.similarity = new Float64Array(n * n);
    this.optics = new OpticsScratch(n);
    this.score = new Float64Array(n);
    this.chosenFlag = new Uint8Array(n);
    this.seenCluster = new Uint8Array(n);
  }
}

/**
 * PTS at one pixel. `gram` holds G at `offset` (N*N, row-major); writes the
 * N OPTICS labels to `labelsOut` and the K chosen image indices, in the order
 * chosen, to `chosenOut`. Requires K < N and 2 <= minSamples <= N.
 * With `source` (the stack the Gram came from, pixel `pixel`) and a float32
 * Gram, near-zero distances and the diagonal are recomputed in float64
 * first (see refineNearDuplicates: exact duplicates otherwise change the
 * labels, and self-similarities pick two-member cluster centres); the
 * diagonal is read from `selfSimilarity` at `selfOffset` when given
 * (selfSimilarities of the block: much faster than per pixel).
 */
export function selectAtPixel(
  gram: Float32Array | Float64Array,
  offset: number,
  n: number,
  k: number,
  minSamples: number,
  scratch: PtsPixelScratch,
  labelsOut: Int32Array,
  chosenOut: Int32Array,
  source?: FeatureStack,
  pixel = 0,
  selfSimilarity?: Float64Array,
  selfOffset = 0,
): void {
  const { similarity: sim, score, chosenFlag, seenCluster } = scratch;
  const nn = n * n;
  if (source && gram instanceof Float32Array) {
    // the copy also collects the pairs refinePairs recomputes (one pass over the matrix, not two)
    let pairCount = 0;
    for (let i = 0; i < n; i++) {
      const row = i * n;
      for (let j = 0; j < n; j++) {
        const g = gram[offset + row + j]!;
        sim[row + j] = g;
        if (j > i && Math.abs(1 - g) < NEAR_DUPLICATE_DISTANCE) {
          if (2 * pairCount + 2 > scratch.nearPairs.length) {
            const grown = new Int32Array(2 * scratch.nearPairs.length);
            grown.set(scratch.nearPairs);
            scratch.nearPairs = grown;
          }
          scratch.nearPairs[2 * pairCount] = i;
          scratch.nearPairs[2 * pairCount + 1] = j;
          pairCount++;
        }
      }
    }
    refinePairs(sim, null, source, pixel, scratch.nearPairs, pairCount, selfSimilarity, selfOffset);
  } else {
    for (let e = 0; e < nn; e++) sim[e] = gram[offset + e]!;
  }
  // the distances are 1 - sim, formed inside OPTICS (same values as a distance matrix, one matrix fewer to write)
  const labels = opticsFromSimilarity(sim, n, minSamples, scratch.optics).labels;
  labelsOut.set(labels);

  chosenFlag.fill(0, 0, n);
  seenCluster.fill(0, 0, n);
  let chosen = 0;
  // 2. one centre per cluster, clusters in order of first appearance
  for (let first = 0; first < n && chosen < k; first++) {
    const id = labels[first]!;
    if (id < 0 || seenCluster[id] !== 0) continue;
    seenCluster[id] = 1;
    let best = -1;
    let bestScore = -Infinity;
    for (let j = first; j < n; j++) {
      if (labels[j] !== id) continue;
      const row = j * n;
      let s = 0;
      for (let m = first; m < n; m++) if (labels[m] === id) s += sim[row + m]!;
      if (best < 0 || s > bestScore) {
        best = j;
        bestScore = s;
      }
    }
    chosenOut[chosen++] = best;
    chosenFlag[best] = 1;
  }
  // 3. all noise: the global centre
  if (chosen === 0) {
    let best = 0;
    let bestScore = -Infinity;
    for (let i = 0; i < n; i++) {
      const row = i * n;
      let s = 0;
      for (let j = 0; j < n; j++) s += sim[row + j]!;
      if (i === 0 || s > bestScore) {
        best = i;
        bestScore = s;
      }
    }
    chosenOut[chosen++] = best;
    chosenFlag[best] = 1;
  }
  // 4. hard normals: least similar (summed over the chosen, in chosen order) first
  score.fill(0, 0, n);
  let added = 0;
  while (chosen < k) {
    for (; added < chosen; added++) {
      const s = chosenOut[added]!;
      for (let i = 0; i < n; i++) score[i] += sim[i * n + s]!;
    }
    let best = -1;
    let bestScore = Infinity;
    for (let i = 0; i < n; i++) {
      if (chosenFlag[i] !== 0) continue;
      if (best < 0 || score[i]! < bestScore) {
        best = i;
        bestScore = score[i]!;
      }
    }
    chosenOut[chosen++] = best;
    chosenFlag[best] = 1;
  }
}

/** min_samples = N // K, clamped to 2 (scikit-learn would read 1 as a fraction of N). */
export function ptsMinSamples(n: number, k: number): { minSamples: number; clamped: boolean } {
  const raw = Math.floor(n / k);
  return raw < 2 ? { minSamples: 2, clamped: true } : { minSamples: raw, clamped: false };
}

function checkStack(stack: FeatureStack, index: number, n: number): void {
  const [sn, c, h, w] = stack.shape;
  const dims = [sn, c, h, w];
  if (!dims.every((d) => Number.isInteger(d) && d > 0)) {
    throw new HetmmError('E_ARGUMENT', `selectTemplates: layer ${index} shape must be 4 positive integers [N, C, H, W], got [${dims.join(', ')}]`);
  }
  if (sn !== n) {
    throw new HetmmError('E_ARGUMENT', `selectTemplates: layer ${index} has N = ${sn} images, expected ${n} like layer 0`);
  }
  if (stack.data.length < sn * c * h * w) {
    throw new HetmmError('E_ARGUMENT', `selectTemplates: layer ${index} data has ${stack.data.length} elements, expected >= ${sn * c * h * w}`);
  }
  const wantHalf = stack.dtype === 'float16';
  if (wantHalf !== stack.data instanceof Uint16Array) {
    throw new HetmmError('E_ARGUMENT', `selectTemplates: layer ${index} dtype ${stack.dtype} does not match its ${stack.data.constructor.name} data`);
  }
}

/**
 * Copies, for every pixel of [p0, p1), image `selected[k * hw + p]`'s vector
 * into slot k of `out` ([K, C, H, W]).
 */
function gatherSheets(
  stack: FeatureStack,
  selected: Int32Array,
  k: number,
  p0: number,
  p1: number,
  out: Float32Array | Uint16Array,
): void {
  const [, c, h, w] = stack.shape;
  const hw = h * w;
  const data = stack.data;
  for (let slot = 0; slot < k; slot++) {
    for (let p = p0; p < p1; p++) {
      const src = selected[slot * hw + p]!;
      for (let ch = 0; ch < c; ch++) out[(slot * c + ch) * hw + p] = data[(src * c + ch) * hw + p]!;
    }
  }
}

/**
 * PTS over all layers of a template store. Each layer is [N, C, H, W] with the
 * same N; K is the number of sheets to keep. When N <= K all N images are kept
 * unchanged (noted in `notes`).
 */
export async function selectTemplates(
  layers: readonly FeatureStack[],
  k: number,
  options: SelectOptions = {},
): Promise<SelectResult> {
  if (layers.length === 0) throw new HetmmError('E_ARGUMENT', 'selectTemplates: expected at least one layer, got 0');
  if (!Number.isInteger(k) || k < 1) throw new HetmmError('E_ARGUMENT', `selectTemplates: expected a positive integer K, got ${k}`);
  const n = layers[0]!.shape[0];
  layers.forEach((l, i) => checkStack(l, i, n));
  const notes: string[] = [];
  const indices: LayerSelection[] = [];
  const outLayers: FeatureStack[] = [];

  if (n <= k) {
    notes.push(`PTS: N = ${n} templates <= K = ${k}: all ${n} are kept, no selection`);
    for (const l of layers) {
      const [, c, h, w] = l.shape;
      const hw = h * w;
      outLayers.push({ dtype: l.dtype, shape: [n, c, h, w], data: l.data.slice(0, n * c * hw) });
      if (options.returnIndices) {
        const selected = new Int32Array(n * hw);
        for (let s = 0; s < n; s++) selected.fill(s, s * hw, (s + 1) * hw);
        indices.push({ labels: null, selected });
      }
    }
    return options.returnIndices ? { layers: outLayers, notes, indices } : { layers: outLayers, notes };
  }

  const { minSamples, clamped } = ptsMinSamples(n, k);
  if (clamped) {
    notes.push(`PTS: min_samples = N // K = ${Math.floor(n / k)} is below 2 (N = ${n}, K = ${k}); OPTICS runs with min_samples = 2`);
  }
  const workers = options.workers ?? 1;
  const blockBytes = options.gramBlockBytes;
  if (blockBytes !== undefined && !(Number.isFinite(blockBytes) && blockBytes > 0)) {
    throw new HetmmError('E_ARGUMENT', `selectTemplates: expected a positive gramBlockBytes, got ${blockBytes}`);
  }
  if (!Number.isInteger(workers) || workers < 1) {
    throw new HetmmError('E_ARGUMENT', `selectTemplates: expected a positive integer workers count, got ${workers}`);
  }
  if (workers > 1) {
    const pool = new PtsWorkerPool(workers);
    try {
      const selectedLayers = options.gram
        ? await selectPipelined(layers, k, minSamples, pool, options)
        : await selectWithWorkers(layers, k, minSamples, pool, options);
      return options.returnIndices
        ? { layers: selectedLayers.map((l) => l.stack), notes, indices: selectedLayers.map((l) => l.indices) }
        : { layers: selectedLayers.map((l) => l.stack), notes };
    } finally {
      await pool.close();
    }
  }
  const bytes = options.gramPrecision === 'float32' ? 4 : 8;
  const nn = n * n;
  const totalPixels = layers.reduce((s, l) => s + l.shape[2] * l.shape[3], 0);
  const blockPixels = Math.max(1, Math.floor((options.gramBlockBytes ?? GRAM_BLOCK_BYTES) / (nn * bytes)));
  const blockLength = Math.min(blockPixels, totalPixels) * nn;
  let gramBuffer: Float32Array | Float64Array;
  let gram: (stack: FeatureStack, p0: number, p1: number) => Promise<void> | void;
  if (options.gramPrecision === 'float32') {
    const buffer = new Float32Array(blockLength);
    const kernel = options.gram;
    gramBuffer = buffer;
    gram = (stack, p0, p1) => kernel(stack, p0, p1, buffer);
  } else {
    const buffer = new Float64Array(blockLength);
    const kernel = options.gram ?? pixelGramReference;
    gramBuffer = buffer;
    gram = (stack, p0, p1) => kernel(stack, p0, p1, buffer);
  }
  const scratch = new PtsPixelScratch(n);
  const pixelLabels = new Int32Array(n);
  const pixelChosen = new Int32Array(k);
  // self-similarities of a block, for the float32 refinement (see selectAtPixel)
  const selfBuffer = options.gramPrecision === 'float32' ? new Float64Array(Math.min(blockPixels, totalPixels) * n) : undefined;
  let done = 0;

  for (const stack of layers) {
    const [, c, h, w] = stack.shape;
    const hw = h * w;
    const labels = options.returnIndices ? new Int32Array(n * hw) : null;
    const selected = new Int32Array(k * hw);
    const out = stack.dtype === 'float16' ? new Uint16Array(k * c * hw) : new Float32Array(k * c * hw);
    for (let p0 = 0; p0 < hw; p0 += blockPixels) {
      const p1 = Math.min(hw, p0 + blockPixels);
      await gram(stack, p0, p1);
      if (selfBuffer) selfSimilarities(stack, p0, p1, selfBuffer);
      for (let p = p0; p < p1; p++) {
        selectAtPixel(gramBuffer, (p - p0) * nn, n, k, minSamples, scratch, pixelLabels, pixelChosen, stack, p, selfBuffer, (p - p0) * n);
        for (let s = 0; s < k; s++) selected[s * hw + p] = pixelChosen[s]!;
        if (labels) for (let i = 0; i < n; i++) labels[i * hw + p] = pixelLabels[i]!;
      }
      gatherSheets(stack, selected, k, p0, p1, out);
      done += p1 - p0;
      options.onProgress?.(done, totalPixels);
    }
    outLayers.push({ dtype: stack.dtype, shape: [k, c, h, w], data: out });
    if (labels) indices.push({ labels, selected });
  }
  return options.returnIndices ? { layers: outLayers, notes, indices } : { layers: outLayers, notes };
}

/** SharedArrayBuffer holding the stack's first N*C*H*W elements (the store's own if already shared). */
function sharedData(stack: FeatureStack): SharedArrayBuffer {
  const [n, c, h, w] = stack.shape;
  const count = n * c * h * w;
  const src = stack.data;
  if (src.buffer instanceof SharedArrayBuffer && src.byteOffset === 0) return src.buffer;
  const sab = new SharedArrayBuffer(count * src.BYTES_PER_ELEMENT);
  (src instanceof Uint16Array ? new Uint16Array(sab) : new Float32Array(sab)).set(src.subarray(0, count));
  return sab;
}

/** A fixed set of PTS worker threads (src/threads/); each runs its tasks in the order sent. */
class PtsWorkerPool {
  readonly size: number;
  /** called with the pixels each worker reports done */
  onPixels: (pixels: number) => void = () => undefined;
  readonly #workers: WorkerThread<PtsWorkerTask, null, PtsWorkerEvent>[];

  constructor(size: number) {
    this.size = size;
    this.#workers = Array.from(
      { length: size },
      () =>
        new WorkerThread<PtsWorkerTask, null, PtsWorkerEvent>(new URL('./pts-worker.js', import.meta.url), {
          name: 'a PTS worker thread',
          onEvent: (event) => this.onPixels(event.pixels),
        }),
    );
  }

  async run(worker: number, task: PtsWorkerTask): Promise<void> {
    await this.#workers[worker]!.call(task);
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.close()));
  }
}

interface LayerOutput {
  stack: FeatureStack;
  indices: LayerSelection;
}

/** Shared output buffers of one layer: sheets, chosen indices, optional labels. */
function layerOutputs(stack: FeatureStack, k: number, withLabels: boolean): { selected: SharedArrayBuffer; labels: SharedArrayBuffer | null; out: SharedArrayBuffer } {
  const [n, c, h, w] = stack.shape;
  const hw = h * w;
  return {
    selected: new SharedArrayBuffer(k * hw * 4),
    labels: withLabels ? new SharedArrayBuffer(n * hw * 4) : null,
    out: new SharedArrayBuffer(k * c * hw * (stack.dtype === 'float16' ? 2 : 4)),
  };
}

function finishLayer(stack: FeatureStack, k: number, buffers: ReturnType<typeof layerOutputs>): LayerOutput {
  const [, c, h, w] = stack.shape;
  const half = stack.dtype === 'float16';
  return {
    stack: { dtype: stack.dtype, shape: [k, c, h, w], data: half ? new Uint16Array(buffers.out) : new Float32Array(buffers.out) },
    indices: { labels: buffers.labels ? new Int32Array(buffers.labels) : null, selected: new Int32Array(buffers.selected) },
  };
}

/** The reference worker path: each layer's pixels split into one contiguous range per worker. */
async function selectWithWorkers(
  layers: readonly FeatureStack[],
  k: number,
  minSamples: number,
  pool: PtsWorkerPool,
  options: SelectOptions,
): Promise<LayerOutput[]> {
  const n = layers[0]!.shape[0];
  const nn = n * n;
  const blockPixels = Math.max(1, Math.floor((options.gramBlockBytes ?? GRAM_BLOCK_BYTES) / pool.size / (nn * 8)));
  const totalPixels = layers.reduce((s, l) => s + l.shape[2] * l.shape[3], 0);
  let done = 0;
  pool.onPixels = (pixels) => {
    done += pixels;
    options.onProgress?.(done, totalPixels);
  };
  const results: LayerOutput[] = [];
  for (const stack of layers) {
    const [, , h, w] = stack.shape;
    const hw = h * w;
    const data = sharedData(stack);
    const buffers = layerOutputs(stack, k, options.returnIndices === true);
    const per = Math.ceil(hw / pool.size);
    const tasks: Promise<void>[] = [];
    for (let t = 0; t < pool.size && t * per < hw; t++) {
      tasks.push(
        pool.run(t, {
          kind: 'gram-and-select',
          dtype: stack.dtype,
          shape: stack.shape,
          data,
          k,
          minSamples,
          hw,
          p0: t * per,
          p1: Math.min(hw, (t + 1) * per),
          blockPixels,
          ...buffers,
        }),
      );
    }
    await Promise.all(tasks);
    results.push(finishLayer(stack, k, buffers));
  }
  return results;
}

/** Copies pixels [p0, p1) of every (image, channel) row into `out` as a [N, C, 1, p1 - p0] stack. */
function copyBlockVectors(stack: FeatureStack, p0: number, p1: number, out: Float32Array | Uint16Array): void {
  const [n, c, h, w] = stack.shape;
  const hw = h * w;
  const count = p1 - p0;
  const data = stack.data;
  // A plain loop rather than set(subarray()), which allocates a view per row:
  // N * C rows of only 48 pixels per block at N = 761, ~30 million views over
  // the Magnetic Tile store. Either way the copy costs about one cache and
  // TLB miss per row (rows are H * W elements apart; figures: docs/PERFORMANCE.md).
  if (data instanceof Float32Array && out instanceof Float32Array) copyRows(data, out, n * c, hw, p0, count);
  else if (data instanceof Uint16Array && out instanceof Uint16Array) copyRows(data, out, n * c, hw, p0, count);
  else throw new HetmmError('E_INTERNAL', `copyBlockVectors: element types differ (${data.constructor.name} -> ${out.constructor.name})`);
}

/** out[row * count + q] = data[row * hw + p0 + q] for every row and q < count (monomorphic per element type). */
function copyRows<T extends Float32Array | Uint16Array>(data: T, out: T, rows: number, hw: number, p0: number, count: number): void {
  for (let row = 0; row < rows; row++) {
    const src = row * hw + p0;
    const dst = row * count;
    for (let q = 0; q < count; q++) out[dst + q] = data[src + q]!;
  }
}

interface PipelineSlot {
  readonly gramBuffer: SharedArrayBuffer;
  readonly gram: Float32Array | Float64Array;
  readonly vectorBuffer: SharedArrayBuffer;
  /** the selection tasks still reading this slot's buffers */
  busy: Promise<void>;
}

/**
 * The pipelined path for a custom Gram kernel: this thread computes the Gram
 * of a pixel block (the native kernel uses all cores itself) and copies the
 * block's vectors; the workers select on it while this thread moves on to the
 * next block in the other slot.
 */
async function selectPipelined(
  layers: readonly FeatureStack[],
  k: number,
  minSamples: number,
  pool: PtsWorkerPool,
  options: SelectOptions,
): Promise<LayerOutput[]> {
  const n = layers[0]!.shape[0];
  const nn = n * n;
  const precision = options.gramPrecision === 'float32' ? 'float32' : 'float64';
  const gramBytes = precision === 'float32' ? 4 : 8;
  let blockPixels = Math.max(1, Math.floor((options.gramBlockBytes ?? PIPELINE_GRAM_BYTES) / (nn * gramBytes)));
  // whole kernel items, so every kernel thread gets full work
  if (blockPixels >= GRAM_ITEM_PIXELS) blockPixels -= blockPixels % GRAM_ITEM_PIXELS;
  const totalPixels = layers.reduce((s, l) => s + l.shape[2] * l.shape[3], 0);
  blockPixels = Math.min(blockPixels, Math.max(...layers.map((l) => l.shape[2] * l.shape[3])));
  const vectorElements = blockPixels * n * Math.max(...layers.map((l) => l.shape[1]));
  const slots: PipelineSlot[] = Array.from({ length: 2 }, () => {
    const gramBuffer = new SharedArrayBuffer(blockPixels * nn * gramBytes);
    return {
      gramBuffer,
      gram: precision === 'float32' ? new Float32Array(gramBuffer) : new Float64Array(gramBuffer),
      vectorBuffer: new SharedArrayBuffer(vectorElements * (layers[0]!.dtype === 'float16' ? 2 : 4)),
      busy: Promise.resolve(),
    };
  });
  let done = 0;
  pool.onPixels = (pixels) => {
    done += pixels;
    options.onProgress?.(done, totalPixels);
  };
  const gramKernel = options.gram!;
  const results: LayerOutput[] = [];
  let blockIndex = 0;
  for (const stack of layers) {
    const [, c, h, w] = stack.shape;
    const hw = h * w;
    const buffers = layerOutputs(stack, k, options.returnIndices === true);
    for (let p0 = 0; p0 < hw; p0 += blockPixels) {
      const p1 = Math.min(hw, p0 + blockPixels);
      const count = p1 - p0;
      const slot = slots[blockIndex++ % slots.length]!;
      await slot.busy;
      const vectors = stack.dtype === 'float16' ? new Uint16Array(slot.vectorBuffer, 0, n * c * count) : new Float32Array(slot.vectorBuffer, 0, n * c * count);
      copyBlockVectors(stack, p0, p1, vectors);
      // The Gram of the compact copy, not of the layer: the kernel then reads
      // contiguous rows instead of one scattered piece per (image, channel).
      const block: FeatureStack = { dtype: stack.dtype, shape: [n, c, 1, count], data: vectors };
      // The union type of (kernel, buffer) pairs is fixed by options.gramPrecision.
      if (slot.gram instanceof Float32Array) await (gramKernel as Float32GramFunction)(block, 0, count, slot.gram);
      else await (gramKernel as Float64GramFunction)(block, 0, count, slot.gram);
      const per = Math.ceil(count / pool.size);
      const tasks: Promise<void>[] = [];
      for (let t = 0; t < pool.size && t * per < count; t++) {
        tasks.push(
          pool.run(t, {
            kind: 'select',
            dtype: stack.dtype,
            n,
            c,
            k,
            minSamples,
            hw,
            vectors: slot.vectorBuffer,
            gram: slot.gramBuffer,
            gramPrecision: precision,
            b0: p0,
            count,
            q0: t * per,
            q1: Math.min(count, (t + 1) * per),
            ...buffers,
          }),
        );
      }
      slot.busy = Promise.all(tasks).then(() => undefined);
      // a failed task must not stay unobserved while this thread computes the next Gram
      slot.busy.catch(() => undefined);
    }
    await Promise.all(slots.map((s) => s.busy));
    results.push(finishLayer(stack, k, buffers));
  }
  return results;
}
