/**
 * Activation ranges for static quantisation: run the (folded) float model on
 * calibration images with every tensor to be quantised exposed as an output,
 * and keep per tensor the running min/max plus a bounded strided sample
 * (for percentile ranges, which ignore rare outliers).
 */
import type * as ort from 'onnxruntime-node';
import { loadOrt } from '../backbone.js';
import { HetmmError } from '../../errors.js';
import { encodeModel, floatValueInfo, graphOf, onnx, type ModelProto } from './onnx-graph.js';

/**
 * 'minmax': the observed extremes; `{ percentile: p }`, p in (50, 100]: the
 * p-th and (100 - p)-th percentiles; 'mse': of a grid of percentile clips
 * for each end, the pair whose uint8 round trip has the least squared error
 * on the sample.
 */
export type CalibrationMethod = 'minmax' | 'mse' | { readonly percentile: number };

/** Percentiles tried for each end of the range by 'mse'. */
const MSE_CLIP_PERCENTILES = [100, 99.999, 99.995, 99.99, 99.98, 99.95, 99.9, 99.8, 99.5, 99];
/** Values of the sample used to score a clip pair (strided). */
const MSE_SCORING_VALUES = 1 << 15;

function roundTripError(values: Float32Array, lo: number, hi: number): number {
  const a = Math.min(lo, 0);
  const b = Math.max(hi, 0);
  const scale = b - a > 1e-12 ? (b - a) / 255 : 1;
  const zp = Math.min(255, Math.max(0, Math.round(-a / scale)));
  let err = 0;
  for (let i = 0; i < values.length; i++) {
    const q = Math.min(255, Math.max(0, Math.round(values[i] / scale) + zp));
    const d = (q - zp) * scale - values[i];
    err += d * d;
  }
  return err;
}

export interface TensorRange {
  readonly min: number;
  readonly max: number;
}

/** Values kept per tensor, over all images, for percentiles. */
const SAMPLE_PER_TENSOR = 1 << 18;

class RangeObserver {
  min = Infinity;
  max = -Infinity;
  readonly sample: Float32Array;
  filled = 0;

  constructor(private readonly perImage: number) {
    this.sample = new Float32Array(SAMPLE_PER_TENSOR);
  }

  observe(data: Float32Array): void {
    let lo = this.min;
    let hi = this.max;
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    this.min = lo;
    this.max = hi;
    const take = Math.min(this.perImage, data.length, this.sample.length - this.filled);
    if (take <= 0) return;
    const step = data.length / take;
    for (let k = 0; k < take; k++) this.sample[this.filled + k] = data[Math.floor(k * step)];
    this.filled += take;
  }

  range(method: CalibrationMethod): TensorRange {
    if (method === 'minmax' || this.filled === 0) return { min: this.min, max: this.max };
    const sorted = this.sample.slice(0, this.filled).sort();
    const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))];
    if (method === 'mse') {
      const step = Math.max(1, Math.floor(this.filled / MSE_SCORING_VALUES));
      const scoring = new Float32Array(Math.floor(this.filled / step));
      for (let i = 0; i < scoring.length; i++) scoring[i] = this.sample[i * step];
      let best = { min: this.min, max: this.max };
      let bestErr = Infinity;
      for (const pLo of MSE_CLIP_PERCENTILES) {
        const lo = pLo === 100 ? this.min : at(1 - pLo / 100);
        for (const pHi of MSE_CLIP_PERCENTILES) {
          const hi = pHi === 100 ? this.max : at(pHi / 100);
          const err = roundTripError(scoring, lo, hi);
          if (err < bestErr) {
            bestErr = err;
            best = { min: lo, max: hi };
          }
        }
      }
      return best;
    }
    const p = method.percentile / 100;
    return { min: at(1 - p), max: at(p) };
  }
}

export function checkCalibrationMethod(method: CalibrationMethod): void {
  if (method === 'minmax' || method === 'mse') return;
  const p = typeof method === 'object' ? method.percentile : NaN;
  if (!(p > 50 && p <= 100)) {
    throw new HetmmError('E_ARGUMENT', `Expected calibration 'minmax', 'mse' or a percentile in (50, 100] but received ${JSON.stringify(method)}`);
  }
}

/** A session over `model` (not modified) with `tensors` exposed as outputs. */
async function probeSession(model: ModelProto, tensors: readonly string[], threads: number): Promise<{ runtime: typeof ort; session: ort.InferenceSession }> {
  const probe = onnx.ModelProto.decode(encodeModel(model));
  const graph = graphOf(probe);
  const already = new Set(graph.output.map((o) => o.name));
  for (const name of tensors) if (!already.has(name)) graph.output.push(floatValueInfo(name));
  const runtime = await loadOrt();
  try {
    const session = await runtime.InferenceSession.create(encodeModel(probe), {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'basic',
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    });
    return { runtime, session };
  } catch (e) {
    throw new HetmmError('E_MODEL_INVALID', `cannot run the model for calibration: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/** Run the model on every input and hand each named [N, C, ...] float32 tensor to `visit`. */
async function visitTensors(
  model: ModelProto,
  inputName: string,
  inputSize: readonly [number, number],
  tensors: readonly string[],
  inputs: readonly Float32Array[],
  threads: number,
  visit: (name: string, t: ort.Tensor) => void,
): Promise<void> {
  if (inputs.length === 0) throw new HetmmError('E_NO_IMAGES', 'calibration needs at least one image');
  const { runtime, session } = await probeSession(model, tensors, threads);
  const [H, W] = inputSize;
  try {
    for (const input of inputs) {
      const feeds = { [inputName]: new runtime.Tensor('float32', input, [1, 3, H, W]) };
      const results = await session.run(feeds, [...tensors]);
      for (const name of tensors) {
        const t = results[name] as ort.Tensor;
        if (t.type !== 'float32') throw new HetmmError('E_MODEL_INVALID', `tensor '${name}' is ${t.type}, the quantiser handles float32 only`);
        visit(name, t);
        t.dispose();
      }
    }
  } finally {
    await session.release();
  }
}

/**
 * Run `model` (not modified) on each input and return the range of each named
 * tensor and, for those in `meansOf`, the mean of each channel (axis 1).
 * `inputs` are [3, H, W] float32 arrays in the model's input units.
 */
export async function observeRangesAndMeans(
  model: ModelProto,
  inputName: string,
  inputSize: readonly [number, number],
  tensors: readonly string[],
  inputs: readonly Float32Array[],
  method: CalibrationMethod,
  threads: number,
  meansOf: ReadonlySet<string> = new Set(),
): Promise<{ ranges: Map<string, TensorRange>; means: Map<string, Float32Array> }> {
  checkCalibrationMethod(method);
  const perImage = Math.max(1, Math.floor(SAMPLE_PER_TENSOR / Math.max(1, inputs.length)));
  const observers = new Map(tensors.map((t) => [t, new RangeObserver(perImage)]));
  const sums = new Map<string, Float64Array>();
  const wanted = [...new Set([...tensors, ...meansOf])];
  await visitTensors(model, inputName, inputSize, wanted, inputs, threads, (name, t) => {
    const data = t.data as Float32Array;
    observers.get(name)?.observe(data);
    if (!meansOf.has(name)) return;
    const channels = t.dims[1] ?? 1;
    const plane = data.length / channels;
    const sum = sums.get(name) ?? new Float64Array(channels);
    for (let c = 0; c < channels; c++) {
      let s = 0;
      for (let i = c * plane; i < (c + 1) * plane; i++) s += data[i];
      sum[c] += s / plane / inputs.length;
    }
    sums.set(name, sum);
  });
  return {
    ranges: new Map([...observers].map(([name, o]) => [name, o.range(method)])),
    means: new Map([...sums].map(([name, s]) => [name, Float32Array.from(s)])),
  };
}
