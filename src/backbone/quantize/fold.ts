/**
 * Float32 graph rewrites that come before quantisation, each exact up to
 * float rounding:
 * - batch-norms that directly follow a convolution are folded into its
 *   weights and bias (so the int8 conv quantises the weights it really uses);
 * - the ImageNet normalisation (x - mean) / std moves into the graph, merged
 *   into the model's input batch-norm when it has one (the shipped ResNet50-v2
 *   starts with one), so the quantised model takes RGB in [0, 1] as it is;
 * - the batch dimension of the input and outputs becomes symbolic.
 */
import { HetmmError } from '../../errors.js';
import type { BackboneDescription } from '../description.js';
import {
  consumerMap,
  DataType,
  dimsOf,
  floatAttribute,
  floatTensor,
  floatValues,
  graphOf,
  initializerMap,
  makeNode,
  onnx,
  producerMap,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from './onnx-graph.js';

const BN_DEFAULT_EPSILON = 1e-5;

interface BatchNormAffine {
  /** y = a * x + b per channel */
  readonly a: Float64Array;
  readonly b: Float64Array;
}

function batchNormAffine(node: NodeProto, inits: Map<string, TensorProto>): BatchNormAffine | undefined {
  const params = node.input.slice(1, 5).map((n) => inits.get(n));
  if (params.length !== 4 || params.some((p) => p === undefined)) return undefined;
  const [gamma, beta, mean, variance] = params.map((p) => floatValues(p as TensorProto));
  const eps = floatAttribute(node, 'epsilon', BN_DEFAULT_EPSILON);
  const a = new Float64Array(gamma.length);
  const b = new Float64Array(gamma.length);
  for (let c = 0; c < gamma.length; c++) {
    a[c] = gamma[c] / Math.sqrt(variance[c] + eps);
    b[c] = beta[c] - mean[c] * a[c];
  }
  return { a, b };
}

function removeNodes(graph: GraphProto, dead: Set<NodeProto>): void {
  graph.node = graph.node.filter((n) => !dead.has(n as NodeProto));
}

function dropUnusedInitializers(graph: GraphProto): void {
  const used = new Set<string>();
  for (const n of graph.node as NodeProto[]) for (const i of n.input) used.add(i);
  for (const o of graph.output) used.add(o.name as string);
  graph.initializer = (graph.initializer as TensorProto[]).filter((t) => used.has(t.name));
}

/** Fold every BatchNormalization whose input is the sole output use of a Conv. Returns how many were folded. */
export function foldBatchNorms(model: ModelProto): number {
  const graph = graphOf(model);
  const inits = initializerMap(graph);
  const producers = producerMap(graph);
  const consumers = consumerMap(graph);
  const graphOutputs = new Set(graph.output.map((o) => o.name));
  const dead = new Set<NodeProto>();
  let folded = 0;
  for (const bn of graph.node as NodeProto[]) {
    if (bn.opType !== 'BatchNormalization' || bn.output.length !== 1) continue;
    const conv = producers.get(bn.input[0]);
    if (conv === undefined || conv.opType !== 'Conv') continue;
    if ((consumers.get(conv.output[0]) ?? []).length !== 1 || graphOutputs.has(conv.output[0])) continue;
    const weight = inits.get(conv.input[1]);
    const affine = batchNormAffine(bn, inits);
    if (weight === undefined || affine === undefined) continue;
    // A weight shared by two convs must not be scaled twice.
    const weightUsers = consumers.get(weight.name) ?? [];
    if (weightUsers.length !== 1) continue;
    const w = floatValues(weight);
    const outChannels = dimsOf(weight)[0];
    if (affine.a.length !== outChannels) continue;
    const perOut = w.length / outChannels;
    for (let o = 0; o < outChannels; o++) {
      for (let k = 0; k < perOut; k++) w[o * perOut + k] *= affine.a[o];
    }
    const oldBias = conv.input[2] ? inits.get(conv.input[2]) : undefined;
    const bias = new Float32Array(outChannels);
    const biasValues = oldBias ? floatValues(oldBias) : undefined;
    for (let o = 0; o < outChannels; o++) bias[o] = affine.a[o] * (biasValues ? biasValues[o] : 0) + affine.b[o];
    const weightName = `${weight.name}_bnfolded`;
    const biasName = `${conv.output[0]}_bnfolded_bias`;
    graph.initializer.push(floatTensor(weightName, dimsOf(weight), w), floatTensor(biasName, [outChannels], bias));
    conv.input = [conv.input[0], weightName, biasName];
    conv.output = [bn.output[0]];
    dead.add(bn);
    folded++;
  }
  removeNodes(graph, dead);
  dropUnusedInitializers(graph);
  return folded;
}

/**
 * Move (x - mean) / std into the graph. When the input's only reader is a
 * BatchNormalization, its parameters absorb the normalisation; otherwise a
 * new BatchNormalization node (mean 0, variance 1) does it.
 */
export function fuseInputNormalisation(model: ModelProto, description: BackboneDescription): void {
  const graph = graphOf(model);
  const inits = initializerMap(graph);
  const readers = consumerMap(graph).get(description.inputName) ?? [];
  const mean = description.mean;
  const std = description.std;
  const first = readers.length === 1 && readers[0].opType === 'BatchNormalization' ? readers[0] : undefined;
  const inner = first ? batchNormAffine(first, inits) : undefined;
  const eps = first ? floatAttribute(first, 'epsilon', BN_DEFAULT_EPSILON) : BN_DEFAULT_EPSILON;
  // Composite y = A x + B with x the raw [0, 1] input; as BN(mean 0, var 1): gamma = A * sqrt(1 + eps).
  const gamma = new Float32Array(3);
  const beta = new Float32Array(3);
  for (let c = 0; c < 3; c++) {
    const a = inner ? inner.a[c] : 1;
    const b = inner ? inner.b[c] : 0;
    gamma[c] = (a / std[c]) * Math.sqrt(1 + eps);
    beta[c] = b - (a * mean[c]) / std[c];
  }
  const tag = `${description.inputName}_imagenet_norm`;
  const params = [
    floatTensor(`${tag}_gamma`, [3], gamma),
    floatTensor(`${tag}_beta`, [3], beta),
    floatTensor(`${tag}_mean`, [3], new Float32Array(3)),
    floatTensor(`${tag}_var`, [3], new Float32Array([1, 1, 1])),
  ];
  graph.initializer.push(...params);
  const paramNames = params.map((p) => p.name);
  if (first) {
    first.input = [description.inputName, ...paramNames];
  } else {
    const normalised = `${tag}_out`;
    for (const node of readers) node.input = node.input.map((i) => (i === description.inputName ? normalised : i));
    const bn = makeNode('BatchNormalization', [description.inputName, ...paramNames], [normalised], tag, [
      onnx.AttributeProto.create({ name: 'epsilon', type: onnx.AttributeProto.AttributeType.FLOAT, f: eps }),
    ]);
    graph.node.unshift(bn);
  }
  dropUnusedInitializers(graph);
}

/** Make dimension 0 of the input and of every output symbolic ('N'), and drop stale intermediate shapes. */
export function makeBatchSymbolic(model: ModelProto): void {
  const graph = graphOf(model);
  for (const vi of [...graph.input, ...graph.output]) {
    const shape = vi.type?.tensorType?.shape;
    if (!shape?.dim || shape.dim.length === 0) continue;
    shape.dim[0] = onnx.TensorShapeProto.Dimension.create({ dimParam: 'N' });
  }
  graph.valueInfo = [];
}

/** Initializers are also listed as graph inputs in old exporters; such inputs are not model inputs. */
export function checkSingleImageInput(model: ModelProto, description: BackboneDescription): void {
  const graph = graphOf(model);
  const inits = new Set(graph.initializer.map((t) => t.name));
  const inputs = graph.input.filter((i) => !inits.has(i.name));
  if (inputs.length !== 1 || inputs[0].name !== description.inputName) {
    throw new HetmmError(
      'E_MODEL_INVALID',
      `the quantiser needs one image input '${description.inputName}', found [${inputs.map((i) => i.name).join(', ')}]`,
    );
  }
  const elem = inputs[0].type?.tensorType?.elemType;
  if (elem !== DataType.FLOAT) throw new HetmmError('E_MODEL_INVALID', `input '${description.inputName}' must be float32`);
}
