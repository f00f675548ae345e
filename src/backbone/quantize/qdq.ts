/**
 * QDQ rewrite of a float graph's convolutions, in the form onnxruntime's CPU
 * provider fuses into QLinearConv (u8 activations x s8 weights, the VNNI
 * path): DequantizeLinear on the activation, the weight and the bias in front
 * of each Conv, and QuantizeLinear as the only reader of its output.
 *
 * - weights: int8, symmetric, one scale per output channel (axis 0);
 * - bias: int32 with scale = input scale x weight scale, zero point 0;
 * - activations: uint8, one scale and zero point per tensor, from the
 *   calibrated range widened to include 0 (so 0, e.g. padding, is exact);
 * - a Relu that is the only reader of a Conv output is removed: the conv
 *   output is quantised with the Relu output's range (minimum 0, so zero
 *   point 0), and the clamp at 0 of QuantizeLinear is exactly the Relu.
 *
 * Other operators (Add, BatchNormalization, MaxPool, ...) stay float32 and
 * read the dequantised tensors.
 */
import { HetmmError } from '../../errors.js';
import type { TensorRange } from './calibrate.js';
import {
  consumerMap,
  dimsOf,
  floatTensor,
  floatValues,
  graphOf,
  initializerMap,
  int32Tensor,
  int8Tensor,
  intAttr,
  makeNode,
  uint8Tensor,
  type ModelProto,
  type NodeProto,
} from './onnx-graph.js';

/** A tensor to quantise: `name` is what readers read; `source` what the Q node reads (differs for an absorbed Relu). */
export interface ActivationSite {
  readonly name: string;
  readonly source: string;
}

export interface QdqPlan {
  readonly convs: readonly NodeProto[];
  readonly activations: readonly ActivationSite[];
  /** Relu nodes whose effect moves into their conv's output quantisation */
  readonly absorbedRelus: readonly NodeProto[];
}

/** Conv steps from the image that stay float: the stem conv, then the convs that read its (pooled) output. */
export const FLOAT_STEM_DEPTH = 2;

/**
 * The stem: convolutions that read the image (no Conv between them and the
 * graph input), and, up to `depth` conv steps, the convolutions that read
 * their outputs. They stay float. On the shipped ResNet50-v2 (depth 2: the
 * stem conv, stage 1's first 1x1 conv and its shortcut) the stem conv's
 * int8 input (the normalised image, one scale for three channels) and int8
 * output (64 channels of very different ranges, each multiplied by a float
 * batch-norm gain next) caused 2/3 of the int8 backbone's feature error,
 * and stage 1's first input the largest share of the rest; a 3-channel
 * QLinearConv is no faster than the float Conv, and the two 64-channel 1x1
 * convs cost little CPU in float (figures: docs/PERFORMANCE.md).
 */
export function stemConvs(model: ModelProto, depth = FLOAT_STEM_DEPTH): Set<NodeProto> {
  const graph = graphOf(model);
  const inits = new Set(graph.initializer.map((t) => t.name));
  let derived = new Set(graph.input.map((i) => i.name as string).filter((n) => !inits.has(n)));
  const out = new Set<NodeProto>();
  for (let step = 0; step < depth; step++) {
    const next = new Set<string>();
    for (const node of graph.node as NodeProto[]) {
      if (!node.input.some((i) => derived.has(i))) continue;
      if (node.opType === 'Conv') out.add(node);
      for (const o of node.output) (node.opType === 'Conv' ? next : derived).add(o);
    }
    derived = next;
  }
  return out;
}

/**
 * Which tensors get quantised; the names whose ranges calibration must observe
 * are the `name`s. `floatStem` (default true) leaves stemConvs() float.
 */
export function planQdq(model: ModelProto, floatStem = true): QdqPlan {
  const graph = graphOf(model);
  const stem = floatStem ? stemConvs(model) : new Set<NodeProto>();
  const inits = initializerMap(graph);
  const consumers = consumerMap(graph);
  const graphOutputs = new Set(graph.output.map((o) => o.name));
  const convs: NodeProto[] = [];
  const sites = new Map<string, ActivationSite>();
  const absorbed: NodeProto[] = [];
  for (const node of graph.node as NodeProto[]) {
    if (node.opType !== 'Conv' || stem.has(node)) continue;
    const weight = inits.get(node.input[1]);
    if (weight === undefined || dimsOf(weight).length !== 4) continue;
    if (node.input[2] && !inits.has(node.input[2])) continue;
    const x = node.input[0];
    if (inits.has(x) || graphOutputs.has(x)) continue;
    convs.push(node);
    if (!sites.has(x)) sites.set(x, { name: x, source: x });
    const y = node.output[0];
    if (graphOutputs.has(y)) continue;
    const readers = consumers.get(y) ?? [];
    const relu = readers.length === 1 && readers[0].opType === 'Relu' ? readers[0] : undefined;
    if (relu && !graphOutputs.has(relu.output[0])) {
      absorbed.push(relu);
      sites.set(relu.output[0], { name: relu.output[0], source: y });
    } else if (!sites.has(y)) {
      sites.set(y, { name: y, source: y });
    }
  }
  return { convs, activations: [...sites.values()], absorbedRelus: absorbed };
}

interface ActivationParams {
  readonly scale: number;
  readonly zeroPoint: number;
}

/** uint8 asymmetric parameters for a range (widened to include 0). */
export function activationParams(range: TensorRange): ActivationParams {
  const lo = Math.min(range.min, 0);
  const hi = Math.max(range.max, 0);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new HetmmError('E_MODEL_INVALID', `calibration saw a non-finite value (${lo}, ${hi})`);
  const scale = hi - lo > 1e-12 ? (hi - lo) / 255 : 1;
  const zeroPoint = Math.min(255, Math.max(0, Math.round(-lo / scale)));
  return { scale, zeroPoint };
}

/** Symmetric int8 per output channel (axis 0). */
export function quantizeWeightsPerChannel(w: Float32Array, outChannels: number): { q: Int8Array; scales: Float32Array } {
  const per = w.length / outChannels;
  const q = new Int8Array(w.length);
  const scales = new Float32Array(outChannels);
  for (let o = 0; o < outChannels; o++) {
    let m = 0;
    for (let k = 0; k < per; k++) m = Math.max(m, Math.abs(w[o * per + k]));
    const s = m > 0 ? m / 127 : 1;
    scales[o] = s;
    for (let k = 0; k < per; k++) q[o * per + k] = Math.max(-127, Math.min(127, Math.round(w[o * per + k] / s)));
  }
  return { q, scales };
}

export interface QdqStats {
  readonly convs: number;
  readonly activations: number;
  readonly absorbedRelus: number;
  /** convolutions whose bias absorbed the mean weight-rounding error */
  readonly biasCorrected: number;
}

/**
 * Rewrite `model` in place. `ranges` must hold every `plan.activations[].name`.
 * `inputMeans` (per conv input tensor, the float mean of each channel on the
 * calibration images) enables bias correction: the rounding of the weights
 * shifts a conv's output by sum_c,k (Wq - W)[o, c, k] E[x_c] on average, and
 * a ReLU'd (all positive) input does not average that out; the shift is
 * subtracted from the bias (Nagel et al., "Data-free quantization", 2019).
 */
export function insertQdq(
  model: ModelProto,
  plan: QdqPlan,
  ranges: ReadonlyMap<string, TensorRange>,
  inputMeans: ReadonlyMap<string, Float32Array> = new Map(),
): QdqStats {
  const graph = graphOf(model);
  const inits = initializerMap(graph);
  const qParams = new Map<string, ActivationParams & { q: string; scaleName: string; zpName: string }>();
  for (const site of plan.activations) {
    const range = ranges.get(site.name);
    if (range === undefined) throw new HetmmError('E_INTERNAL', `no calibrated range for '${site.name}'`);
    const p = activationParams(range);
    const scaleName = `${site.name}_scale`;
    const zpName = `${site.name}_zero_point`;
    graph.initializer.push(floatTensor(scaleName, [], new Float32Array([p.scale])), uint8Tensor(zpName, [], new Uint8Array([p.zeroPoint])));
    qParams.set(site.name, { ...p, q: `${site.name}_quantized`, scaleName, zpName });
  }
  const bySource = new Map(plan.activations.map((s) => [s.source, s]));
  const dead = new Set<NodeProto>(plan.absorbedRelus);

  // Weights and biases of each conv: int8 / int32 initializers behind DequantizeLinear (axis 0).
  const before = new Map<NodeProto, NodeProto[]>();
  let biasCorrected = 0;
  plan.convs.forEach((conv, index) => {
    const tag = conv.name ? `${conv.name}` : `conv${index}`;
    const weight = inits.get(conv.input[1]);
    if (weight === undefined) return;
    const dims = dimsOf(weight);
    const { q, scales } = quantizeWeightsPerChannel(floatValues(weight), dims[0]);
    const wq = `${tag}_weight_quantized`;
    graph.initializer.push(
      int8Tensor(wq, dims, q),
      floatTensor(`${wq}_scale`, [dims[0]], scales),
      int8Tensor(`${wq}_zero_point`, [dims[0]], new Int8Array(dims[0])),
    );
    const extra: NodeProto[] = [
      makeNode('DequantizeLinear', [wq, `${wq}_scale`, `${wq}_zero_point`], [`${wq}_dq`], `${wq}_DequantizeLinear`, [intAttr('axis', 0)]),
    ];
    const inputs = [conv.input[0], `${wq}_dq`];
    const xParams = qParams.get(conv.input[0]);
    const b = conv.input[2] ? floatValues(inits.get(conv.input[2]) as NonNullable<ReturnType<typeof inits.get>>) : new Float32Array(dims[0]);
    const means = inputMeans.get(conv.input[0]);
    const corrected = means !== undefined && dims[1] === means.length;
    if (corrected) {
      const w = floatValues(weight);
      const per = w.length / dims[0];
      const k = per / dims[1];
      for (let o = 0; o < dims[0]; o++) {
        let shift = 0;
        for (let i = 0; i < per; i++) shift += (q[o * per + i] * scales[o] - w[o * per + i]) * means[Math.floor(i / k)];
        b[o] -= shift;
      }
      biasCorrected++;
    }
    if (xParams === undefined) {
      if (conv.input[2] && !corrected) inputs.push(conv.input[2]);
      else if (conv.input[2] || corrected) {
        graph.initializer.push(floatTensor(`${tag}_bias_corrected`, [dims[0]], b));
        inputs.push(`${tag}_bias_corrected`);
      }
    } else if (conv.input[2] || corrected) {
      const bq = `${tag}_bias_quantized`;
      const bScale = new Float32Array(dims[0]);
      const bInt = new Int32Array(dims[0]);
      for (let o = 0; o < dims[0]; o++) {
        bScale[o] = xParams.scale * scales[o];
        bInt[o] = Math.max(-2147483647, Math.min(2147483647, Math.round(b[o] / bScale[o])));
      }
      graph.initializer.push(int32Tensor(bq, [dims[0]], bInt), floatTensor(`${bq}_scale`, [dims[0]], bScale), int32Tensor(`${bq}_zero_point`, [dims[0]], new Int32Array(dims[0])));
      extra.push(makeNode('DequantizeLinear', [bq, `${bq}_scale`, `${bq}_zero_point`], [`${bq}_dq`], `${bq}_DequantizeLinear`, [intAttr('axis', 0)]));
      inputs.push(`${bq}_dq`);
    }
    conv.input = inputs;
    before.set(conv, extra);
  });

  // Activations: one QuantizeLinear after the producer, one DequantizeLinear per reader.
  const quantize = (site: ActivationSite): NodeProto => {
    const p = qParams.get(site.name) as NonNullable<ReturnType<typeof qParams.get>>;
    return makeNode('QuantizeLinear', [site.source, p.scaleName, p.zpName], [p.q], `${site.name}_QuantizeLinear`);
  };
  let dqCount = 0;
  const out: NodeProto[] = [];
  for (const site of plan.activations) {
    if (!(graph.node as NodeProto[]).some((n) => n.output.includes(site.source))) out.push(quantize(site));
  }
  for (const node of graph.node as NodeProto[]) {
    if (dead.has(node)) continue;
    out.push(...(before.get(node) ?? []));
    node.input = node.input.map((input) => {
      const p = qParams.get(input);
      if (p === undefined) return input;
      const dq = `${input}_dequantized_${dqCount++}`;
      out.push(makeNode('DequantizeLinear', [p.q, p.scaleName, p.zpName], [dq], `${dq}_DequantizeLinear`));
      return dq;
    });
    out.push(node);
    for (const o of node.output) {
      const site = bySource.get(o);
      if (site) out.push(quantize(site));
    }
  }
  graph.node = out;
  const used = new Set<string>();
  for (const n of graph.node as NodeProto[]) for (const i of n.input) used.add(i);
  graph.initializer = graph.initializer.filter((t) => used.has(t.name as string));
  return { convs: plan.convs.length, activations: plan.activations.length, absorbedRelus: plan.absorbedRelus.length, biasCorrected };
}
