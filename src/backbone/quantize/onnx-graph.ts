/**
 * ONNX protobuf access for the quantiser, through onnx-proto (protobufjs
 * static code generated from ONNX's own onnx.proto). Only the few helpers the
 * graph rewrites need: tensors <-> typed arrays, attributes, node lookup.
 */
import onnxProto from 'onnx-proto';
import { HetmmError } from '../../errors.js';

export const { onnx } = onnxProto;
export type ModelProto = InstanceType<typeof onnx.ModelProto>;
export type GraphProto = InstanceType<typeof onnx.GraphProto>;
export type NodeProto = InstanceType<typeof onnx.NodeProto>;
export type TensorProto = InstanceType<typeof onnx.TensorProto>;
export type AttributeProto = InstanceType<typeof onnx.AttributeProto>;

export const DataType = onnx.TensorProto.DataType;

/** int64 fields decode as protobufjs Long objects (or numbers); all ours fit a double. */
export function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v !== null && typeof v === 'object' && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  return Number(v);
}

export function decodeModel(bytes: Uint8Array, where: string): ModelProto {
  try {
    const model = onnx.ModelProto.decode(bytes);
    if (!model.graph) throw new Error('no graph');
    return model;
  } catch (e) {
    throw new HetmmError('E_MODEL_INVALID', `'${where}' is not an ONNX model: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

export function graphOf(model: ModelProto): GraphProto {
  return model.graph as GraphProto;
}

export function dimsOf(t: TensorProto): number[] {
  return t.dims.map(toNumber);
}

function copyBytes(raw: Uint8Array): ArrayBuffer {
  const buf = new ArrayBuffer(raw.byteLength);
  new Uint8Array(buf).set(raw);
  return buf;
}

/** The values of a float32 tensor (raw_data or float_data). */
export function floatValues(t: TensorProto): Float32Array {
  if (t.dataType !== DataType.FLOAT) {
    throw new HetmmError('E_MODEL_INVALID', `initializer '${t.name}' has data type ${t.dataType}, expected float32`);
  }
  if (t.externalData.length > 0) {
    throw new HetmmError('E_MODEL_INVALID', `initializer '${t.name}' uses external data, which the quantiser does not read`);
  }
  if (t.rawData.length > 0) return new Float32Array(copyBytes(t.rawData));
  return Float32Array.from(t.floatData);
}

function rawTensor(name: string, dataType: number, dims: readonly number[], bytes: Uint8Array): TensorProto {
  return onnx.TensorProto.create({ name, dataType, dims: [...dims], rawData: bytes });
}

const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();

export function floatTensor(name: string, dims: readonly number[], values: Float32Array): TensorProto {
  return rawTensor(name, DataType.FLOAT, dims, bytesOf(values));
}

export function int8Tensor(name: string, dims: readonly number[], values: Int8Array): TensorProto {
  return rawTensor(name, DataType.INT8, dims, bytesOf(values));
}

export function uint8Tensor(name: string, dims: readonly number[], values: Uint8Array): TensorProto {
  return rawTensor(name, DataType.UINT8, dims, bytesOf(values));
}

export function int32Tensor(name: string, dims: readonly number[], values: Int32Array): TensorProto {
  return rawTensor(name, DataType.INT32, dims, bytesOf(values));
}

export function attribute(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute.find((a) => a.name === name) as AttributeProto | undefined;
}

export function floatAttribute(node: NodeProto, name: string, fallback: number): number {
  const a = attribute(node, name);
  return a === undefined ? fallback : a.f;
}

export function intAttribute(node: NodeProto, name: string, fallback: number): number {
  const a = attribute(node, name);
  return a === undefined ? fallback : toNumber(a.i);
}

export function intAttr(name: string, value: number): AttributeProto {
  return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i: value });
}

export function makeNode(opType: string, inputs: string[], outputs: string[], name: string, attributes: AttributeProto[] = []): NodeProto {
  return onnx.NodeProto.create({ opType, input: inputs, output: outputs, name, attribute: attributes });
}

/** Initializers by name. */
export function initializerMap(graph: GraphProto): Map<string, TensorProto> {
  return new Map((graph.initializer as TensorProto[]).map((t) => [t.name, t]));
}

/** For each tensor name, the nodes that read it (a node reading a tensor twice is listed twice). */
export function consumerMap(graph: GraphProto): Map<string, NodeProto[]> {
  const out = new Map<string, NodeProto[]>();
  for (const node of graph.node as NodeProto[]) {
    for (const input of node.input) {
      if (input === '') continue;
      const list = out.get(input);
      if (list) list.push(node);
      else out.set(input, [node]);
    }
  }
  return out;
}

export function producerMap(graph: GraphProto): Map<string, NodeProto> {
  const out = new Map<string, NodeProto>();
  for (const node of graph.node as NodeProto[]) for (const o of node.output) out.set(o, node);
  return out;
}

export function opsetVersion(model: ModelProto): number {
  const entry = model.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx' || o.domain == null);
  return entry ? toNumber(entry.version) : 0;
}

/** A float32 value_info with no shape, for exposing an intermediate tensor as a graph output. */
export function floatValueInfo(name: string): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType: DataType.FLOAT }) }),
  });
}
