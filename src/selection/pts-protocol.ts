/**
 * Messages between PTS (./pts.ts) and its worker threads (./pts-worker.ts).
 * Types only, in their own module so that neither side imports the other's
 * code for them (the worker imports ./pts.ts for the per-pixel selection).
 */
import type { FeatureStack } from '../kernels/contract.js';

interface TaskOutputs {
  readonly k: number;
  readonly minSamples: number;
  /** H*W of the layer */
  readonly hw: number;
  /** [K, H*W] Int32 */
  readonly selected: SharedArrayBuffer;
  /** [N, H*W] Int32, or null */
  readonly labels: SharedArrayBuffer | null;
  /** [K, C, H, W] output sheets, same element type as the input */
  readonly out: SharedArrayBuffer;
}

/** A layer (shared) and one pixel range of it; the worker computes the Gram. */
export interface GramAndSelectTask extends TaskOutputs {
  readonly kind: 'gram-and-select';
  readonly dtype: FeatureStack['dtype'];
  readonly shape: readonly [number, number, number, number];
  /** template data (Float32 or Uint16 elements per dtype) */
  readonly data: SharedArrayBuffer;
  readonly p0: number;
  readonly p1: number;
  readonly blockPixels: number;
}

/** Pixels [b0 + q0, b0 + q1) of a block [b0, b0 + count) whose Gram is given. */
export interface SelectTask extends TaskOutputs {
  readonly kind: 'select';
  readonly dtype: FeatureStack['dtype'];
  readonly n: number;
  readonly c: number;
  /** the block's vectors as a stack [N, C, 1, count] (Float32 or Uint16 elements) */
  readonly vectors: SharedArrayBuffer;
  /** [count, N, N] Gram of the block */
  readonly gram: SharedArrayBuffer;
  readonly gramPrecision: 'float32' | 'float64';
  readonly b0: number;
  readonly count: number;
  readonly q0: number;
  readonly q1: number;
}

export type PtsWorkerTask = GramAndSelectTask | SelectTask;

/** What a worker reports while it works (src/threads/ emitEvent); a task's end is its call's answer. */
export interface PtsWorkerEvent {
  readonly type: 'progress';
  readonly pixels: number;
}
