import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import {
  Backbone,
  identityDifference,
  parseCalibrationMethod,
  prepareFloatModel,
  quantizeModel,
  type BackboneDescription,
} from '../src/backbone/index.js';
import { onnx, toNumber, type ModelProto } from '../src/backbone/quantize/onnx-graph.js';
import { activationParams, quantizeWeightsPerChannel } from '../src/backbone/quantize/index.js';
import { stemConvs } from '../src/backbone/quantize/qdq.js';
import { datasetsDir, defaultModelPath, tempDir } from './helpers/io-paths.js';
import { expectHetmm } from './helpers/errors.js';
import { rng } from './helpers/random.js';
import { runCli } from './helpers/cli.js';
import sharp from 'sharp';
import { mkdirSync } from 'node:fs';

const tmp = tempDir('quantize');
const SIZE = 32;

const TINY: BackboneDescription = {
  name: 'tiny-convbn',
  inputName: 'input',
  outputNames: ['layer1', 'layer2', 'layer3'],
  strides: [4, 8, 16],
  inputSize: [SIZE, SIZE],
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
};

/**
 * A small pre-activation ResNet-like graph, written with the same protobuf
 * library as the quantiser: input BN, conv+BN+ReLU, conv+BN + residual Add
 * (layer1), BN+ReLU+conv (layer2, a conv output), ReLU+conv(+bias)+BN (layer3).
 */
function tinyModel(seed: number): Uint8Array {
  const r = rng(seed);
  const inits: InstanceType<typeof onnx.TensorProto>[] = [];
  const tensor = (name: string, dims: number[], make: () => number): string => {
    const n = dims.reduce((a, b) => a * b, 1);
    inits.push(onnx.TensorProto.create({ name, dataType: 1, dims, floatData: Array.from({ length: n }, make) }));
    return name;
  };
  const bn = (tag: string, c: number, x: string, y: string) => {
    const ins = [
      tensor(`${tag}_g`, [c], () => 0.5 + r()),
      tensor(`${tag}_b`, [c], () => r() - 0.5),
      tensor(`${tag}_m`, [c], () => (r() - 0.5) * 0.4),
      tensor(`${tag}_v`, [c], () => 0.5 + r()),
    ];
    return onnx.NodeProto.create({
      opType: 'BatchNormalization',
      input: [x, ...ins],
      output: [y],
      name: tag,
      attribute: [onnx.AttributeProto.create({ name: 'epsilon', type: 1, f: 1e-5 })],
    });
  };
  const ints = (name: string, v: number[]) => onnx.AttributeProto.create({ name, type: 7, ints: v });
  const conv = (tag: string, cin: number, cout: number, stride: number, x: string, y: string, bias: boolean) => {
    const w = tensor(`${tag}_w`, [cout, cin, 3, 3], () => (r() - 0.5) * (2 / Math.sqrt(cin * 9)));
    const input = bias ? [x, w, tensor(`${tag}_bias`, [cout], () => r() - 0.5)] : [x, w];
    return onnx.NodeProto.create({
      opType: 'Conv',
      input,
      output: [y],
      name: tag,
      attribute: [ints('kernel_shape', [3, 3]), ints('pads', [1, 1, 1, 1]), ints('strides', [stride, stride])],
    });
  };
  const relu = (x: string, y: string) => onnx.NodeProto.create({ opType: 'Relu', input: [x], output: [y], name: `relu_${y}` });
  const nodes = [
    bn('bn0', 3, 'input', 'n0'),
    conv('conv1', 3, 8, 4, 'n0', 'c1', false),
    bn('bn1', 8, 'c1', 'b1'),
    relu('b1', 'r1'),
    conv('conv2', 8, 8, 1, 'r1', 'c2', false),
    bn('bn2', 8, 'c2', 'b2'),
    onnx.NodeProto.create({ opType: 'Add', input: ['b2', 'r1'], output: ['layer1'], name: 'add1' }),
    bn('bn3', 8, 'layer1', 'b3'),
    relu('b3', 'r3'),
    conv('conv3', 8, 16, 2, 'r3', 'layer2', false),
    relu('layer2', 'r4'),
    conv('conv4', 16, 16, 2, 'r4', 'c4', true),
    bn('bn4', 16, 'c4', 'layer3'),
  ];
  const vi = (name: string, dims: Array<number | string>) =>
    onnx.ValueInfoProto.create({
      name,
      type: {
        tensorType: {
          elemType: 1,
          shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
        },
      },
    });
  const model = onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'hetmm-test',
    graph: {
      name: 'tiny',
      node: nodes,
      initializer: inits,
      input: [vi('input', [1, 3, 'H', 'W'])],
      output: [vi('layer1', [1, 8, 'h1', 'w1']), vi('layer2', [1, 16, 'h2', 'w2']), vi('layer3', [1, 16, 'h3', 'w3'])],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** Smooth random images in [0, 1], [3, SIZE, SIZE]. */
function images(count: number, seed: number): Float32Array[] {
  const r = rng(seed);
  return Array.from({ length: count }, () => {
    const a = new Float32Array(3 * SIZE * SIZE);
    const fx = 1 + r() * 3;
    const fy = 1 + r() * 3;
    for (let c = 0; c < 3; c++) {
      const phase = r() * 6;
      for (let y = 0; y < SIZE; y++) {
        for (let x = 0; x < SIZE; x++) {
          a[(c * SIZE + y) * SIZE + x] = Math.min(1, Math.max(0, 0.5 + 0.4 * Math.sin((fx * x + fy * y) / 5 + phase) + 0.1 * (r() - 0.5)));
        }
      }
    }
    return a;
  });
}

function normalised(img: Float32Array): Float32Array {
  const plane = SIZE * SIZE;
  return img.map((v, i) => (v - TINY.mean[Math.floor(i / plane)]) / TINY.std[Math.floor(i / plane)]);
}

async function runModel(bytes: Uint8Array, batch: Float32Array[], options: ort.InferenceSession.SessionOptions = {}) {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, ...options });
  const data = new Float32Array(batch.length * 3 * SIZE * SIZE);
  batch.forEach((b, i) => data.set(b, i * b.length));
  const out = await session.run({ input: new ort.Tensor('float32', data, [batch.length, 3, SIZE, SIZE]) });
  const result = Object.fromEntries(TINY.outputNames.map((n) => [n, { data: (out[n] as ort.Tensor).data as Float32Array, dims: (out[n] as ort.Tensor).dims }]));
  return { result, session };
}

function relativeError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += a[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** The float model (batch 1) on each image, outputs concatenated as for one batch. */
async function floatOutputs(batch: Float32Array[]): Promise<Record<string, Float32Array>> {
  const parts: Record<string, Float32Array[]> = {};
  for (const img of batch) {
    const { result, session } = await runModel(floatBytes, [normalised(img)]);
    for (const name of TINY.outputNames) (parts[name] ??= []).push(result[name].data);
    await session.release();
  }
  return Object.fromEntries(
    Object.entries(parts).map(([name, list]) => {
      const all = new Float32Array(list.reduce((a, l) => a + l.length, 0));
      list.reduce((at, l) => (all.set(l, at), at + l.length), 0);
      return [name, all];
    }),
  );
}

const floatBytes = tinyModel(7);
const floatPath = path.join(tmp, 'tiny.onnx');
writeFileSync(floatPath, floatBytes);
writeFileSync(path.join(tmp, 'tiny.json'), JSON.stringify(TINY));
const calibration = images(12, 11);
const heldOut = images(4, 99);

test('prepareFloatModel folds conv+BN, moves the ImageNet normalisation in, and makes the batch symbolic (outputs unchanged)', async () => {
  const { model, foldedBatchNorms } = prepareFloatModel(floatBytes, TINY, 'tiny');
  assert.equal(foldedBatchNorms, 3, 'bn1, bn2 and bn4 follow a conv; bn0 and bn3 do not');
  const ops = (model.graph?.node ?? []).map((n) => n.opType);
  assert.equal(ops.filter((o) => o === 'BatchNormalization').length, 2);
  const input = model.graph?.input?.[0].type?.tensorType?.shape?.dim?.[0];
  assert.equal(input?.dimParam, 'N');
  const folded = onnx.ModelProto.encode(model as ModelProto).finish();
  const reference = await runModel(floatBytes, [normalised(heldOut[0])]);
  // Batch of 2 through the folded model, raw [0, 1] input.
  const rewritten = await runModel(folded, [heldOut[0], heldOut[1]]);
  for (const name of TINY.outputNames) {
    const ref = reference.result[name].data;
    assert.equal(rewritten.result[name].dims[0], 2);
    const first = rewritten.result[name].data.subarray(0, ref.length);
    assert.ok(relativeError(ref, first) < 1e-5, `${name}: folded model differs (${relativeError(ref, first)})`);
  }
  await reference.session.release();
  await rewritten.session.release();
});

test('quantizeModel writes an int8 QDQ model: per-channel int8 weights, uint8 activations, outputs close to float32', async () => {
  const out = path.join(tmp, 'tiny-int8.onnx');
  const result = await quantizeModel({ model: floatPath, calibrate: calibration, output: out, method: 'minmax', threads: 1, rewrites: { floatStem: false } });
  assert.equal(result.quantizedConvs, 4);
  assert.equal(result.floatConvs, 0);
  assert.equal(result.biasCorrected, 4);
  assert.equal(result.foldedBatchNorms, 3);
  assert.equal(result.absorbedRelus, 1, 'conv1(+bn1) -> relu');
  assert.equal(result.calibrationImages, 12);
  assert.equal(result.description.name, 'tiny-convbn-int8');
  assert.deepEqual(result.description.mean, [0, 0, 0]);
  assert.deepEqual(JSON.parse(readFileSync(result.descriptionPath, 'utf8')), JSON.parse(JSON.stringify(result.description)));

  const model = onnx.ModelProto.decode(readFileSync(out));
  const nodes = model.graph?.node ?? [];
  const count = (op: string) => nodes.filter((n) => n.opType === op).length;
  assert.equal(count('Conv'), 4);
  assert.equal(count('Relu'), 2, 'one absorbed relu is gone');
  // n0 (conv1 input), r1 (conv1 output, relu absorbed), b2 (conv2 output), r3, r4; layer2/layer3 are graph outputs.
  assert.equal(count('QuantizeLinear'), 5);
  const weight = (model.graph?.initializer ?? []).find((t) => t.name === 'conv2_weight_quantized');
  assert.ok(weight, 'conv2 weights quantised');
  assert.equal(weight.dataType, onnx.TensorProto.DataType.INT8);
  const scale = (model.graph?.initializer ?? []).find((t) => t.name === 'conv2_weight_quantized_scale');
  assert.deepEqual((scale?.dims ?? []).map(toNumber), [8], 'one scale per output channel');
  const wdq = nodes.find((n) => (n.input ?? [])[0] === 'conv2_weight_quantized');
  assert.equal(toNumber((wdq?.attribute ?? []).find((a) => a.name === 'axis')?.i), 0);

  // Raw [0, 1] input, batch of 4, against the float model on normalised input.
  const floatOut = await runModel(floatBytes, [normalised(heldOut[0])]);
  const int8Out = await runModel(readFileSync(out), heldOut);
  for (const name of TINY.outputNames) {
    const ref = floatOut.result[name].data;
    const q = int8Out.result[name].data.subarray(0, ref.length);
    const err = relativeError(ref, q);
    assert.ok(err < 0.06, `${name}: int8 relative error ${err.toFixed(4)}`);
    assert.ok(err > 0, `${name}: int8 output identical to float, so nothing was quantised`);
  }
  await floatOut.session.release();
  await int8Out.session.release();
});

test('onnxruntime fuses the QDQ convolutions into QLinearConv (session profile)', async () => {
  const out = path.join(tmp, 'tiny-int8-prof.onnx');
  await quantizeModel({ model: floatPath, calibrate: calibration, output: out, threads: 1, rewrites: { floatStem: false } });
  const prefix = path.join(tmp, 'profile');
  const { session } = await runModel(readFileSync(out), [heldOut[0]], { enableProfiling: true, profileFilePrefix: prefix });
  session.endProfiling();
  await session.release();
  const file = readdirSync(tmp).find((f) => f.startsWith('profile') && f.endsWith('.json'));
  assert.ok(file, 'profile written');
  const events = JSON.parse(readFileSync(path.join(tmp, file), 'utf8')) as Array<{ cat: string; args?: { op_name?: string } }>;
  const ran = new Set(events.filter((e) => e.cat === 'Node').map((e) => e.args?.op_name));
  assert.ok(ran.has('QLinearConv'), `ops run: ${[...ran].join(', ')}`);
  // layer2 is a graph output, so conv3 has no QuantizeLinear after it and stays a float Conv.
  assert.ok(ran.has('Conv'), `ops run: ${[...ran].join(', ')}`);
});

test('the quantised model has its own identity: a store from the float model is refused', async () => {
  const out = path.join(tmp, 'tiny-int8-id.onnx');
  await quantizeModel({ model: floatPath, calibrate: calibration, output: out, threads: 1 });
  const f = await Backbone.load({ model: floatPath, threads: 1 });
  const q = await Backbone.load({ model: out, threads: 1 });
  assert.equal(q.description.name, 'tiny-convbn-int8', 'the sidecar description is picked up');
  assert.equal(q.dynamicBatch, true);
  const difference = identityDifference(f.identity, q.identity);
  assert.ok(difference !== undefined && /sha256/.test(difference), String(difference));
  const { TemplateStore } = await import('../src/store/index.js');
  const store = TemplateStore.create(f.identity);
  const features = await f.extract({ source: 'x', width: SIZE, height: SIZE, data: heldOut[0] } as never);
  store.append(features, 'x.png');
  const file = path.join(tmp, 'float.hetmm');
  await store.save(file);
  await assert.rejects(TemplateStore.load(file, { expect: q.identity }), expectHetmm('E_STORE_MISMATCH', 'tiny-convbn-int8'));
  await f.dispose();
  await q.dispose();
});

test('quantizeModel: bad calibration settings are clear errors', async () => {
  assert.throws(() => parseCalibrationMethod('entropy'), expectHetmm('E_ARGUMENT', 'minmax, mse or percentile'));
  assert.throws(() => parseCalibrationMethod('percentile:40'), expectHetmm('E_ARGUMENT', 'percentile'));
  assert.deepEqual(parseCalibrationMethod('percentile:99.99'), { percentile: 99.99 });
  await assert.rejects(
    quantizeModel({ model: floatPath, calibrate: [new Float32Array(5)], output: path.join(tmp, 'x.onnx') }),
    expectHetmm('E_ARGUMENT', 'calibration arrays'),
  );
  await assert.rejects(
    quantizeModel({ model: floatPath, calibrate: calibration, output: floatPath }),
    expectHetmm('E_ARGUMENT', 'overwrite'),
  );
  const notOnnx = path.join(tmp, 'not.onnx');
  writeFileSync(notOnnx, 'hello');
  await assert.rejects(quantizeModel({ model: notOnnx, calibrate: calibration, output: path.join(tmp, 'y.onnx') }), expectHetmm('E_MODEL_INVALID'));
});

test('quantisation arithmetic: symmetric per-channel weights, uint8 activations with exact zero', () => {
  const { q, scales } = quantizeWeightsPerChannel(new Float32Array([1, -0.25, 0.125, 0, 0, 0]), 2);
  assert.deepEqual([...q], [127, -32, 16, 0, 0, 0]);
  assert.equal(scales[0], Math.fround(1 / 127));
  const p = activationParams({ min: -1, max: 3 });
  assert.equal(p.scale, 4 / 255);
  assert.equal(p.zeroPoint, Math.round(255 / 4));
  assert.deepEqual(activationParams({ min: 0.5, max: 2 }), { scale: 2 / 255, zeroPoint: 0 }, 'range widened to include 0');
});

test('real model: the int8 ResNet50 features stay close to float32 (4 calibration images)', async () => {
  const good = path.join(datasetsDir, 'mvtec-bottle-xs/bottle/train/good');
  const out = path.join(tmp, 'resnet-int8.onnx');
  const r = await quantizeModel({ model: defaultModelPath, calibrate: [good], maxImages: 4, output: out, method: 'minmax' });
  assert.equal(r.foldedBatchNorms, 27);
  assert.equal(r.quantizedConvs, 40, 'the stem conv and the two convs that read its pooled output stay float');
  assert.equal(r.floatConvs, 3);
  assert.equal(r.biasCorrected, 40);
  const f = await Backbone.load({ model: defaultModelPath });
  const q = await Backbone.load({ model: out });
  const { loadImage } = await import('../src/image/index.js');
  const img = await loadImage(path.join(datasetsDir, 'mvtec-bottle-xs/bottle/test/broken_large/000.png'));
  const [a, b] = [await f.extract(img), await q.extract(img)];
  f.identity.layers.forEach((layer, l) => {
    const plane = layer.height * layer.width;
    let mean = 0;
    for (let p = 0; p < plane; p++) {
      let s = 0;
      for (let c = 0; c < layer.channels; c++) s += a[l][c * plane + p] * b[l][c * plane + p];
      mean += s / plane;
    }
    assert.ok(mean > 0.95 && mean < 0.99999, `${layer.name}: mean cosine ${mean}`);
  });
  await f.dispose();
  await q.dispose();
});

test('hetmm quantize-model: calibrates on a directory of images and writes the model and its description', async () => {
  const dir = path.join(tmp, 'good');
  mkdirSync(dir);
  for (const [i, img] of images(3, 5).entries()) {
    const rgb = Buffer.alloc(SIZE * SIZE * 3);
    for (let p = 0; p < SIZE * SIZE; p++) for (let c = 0; c < 3; c++) rgb[p * 3 + c] = Math.round(img[c * SIZE * SIZE + p] * 255);
    await sharp(rgb, { raw: { width: SIZE, height: SIZE, channels: 3 } }).png().toFile(path.join(dir, `${i}.png`));
  }
  const out = path.join(tmp, 'cli-int8.onnx');
  const run = await runCli('quantize-model', '--model', floatPath, '--calibrate', dir, '-o', out, '--calibration', 'percentile:99.9', '--json');
  assert.equal(run.code, 0, run.stderr);
  const report = JSON.parse(run.stdout) as { calibrationImages: number; quantizedConvs: number; method: unknown; descriptionPath: string };
  assert.equal(report.calibrationImages, 3);
  assert.equal(report.quantizedConvs, 1, 'conv1-conv3 are the stem: float');
  assert.deepEqual(report.method, { percentile: 99.9 });
  assert.equal(report.descriptionPath, path.join(tmp, 'cli-int8.json'));
  const missing = await runCli('quantize-model', '--model', floatPath, '-o', out);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--calibrate/);
  const empty = path.join(tmp, 'empty');
  mkdirSync(empty);
  const none = await runCli('quantize-model', '--model', floatPath, '--calibrate', empty, '-o', out);
  assert.equal(none.code, 3, none.stderr);
});

test('the stem stays float by default: the convs that read the image, and the convs that read theirs', async () => {
  const { model } = prepareFloatModel(floatBytes, TINY, 'tiny');
  assert.deepEqual([...stemConvs(model, 1)].map((n) => n.name), ['conv1'], 'conv1 reads the image through bn0');
  // conv2 reads r1 = relu(conv1); conv3 reads bn3(r1 + b2): both from conv1's output without another conv between
  assert.deepEqual([...stemConvs(model, 2)].map((n) => n.name), ['conv1', 'conv2', 'conv3']);
  const out = path.join(tmp, 'tiny-int8-stem.onnx');
  const result = await quantizeModel({ model: floatPath, calibrate: calibration, output: out, method: 'minmax', threads: 1 });
  assert.equal(result.floatConvs, 3);
  assert.equal(result.quantizedConvs, 1);
  assert.equal(result.absorbedRelus, 0, 'conv1 is float, so its relu stays');
  const nodes = onnx.ModelProto.decode(readFileSync(out)).graph?.node ?? [];
  const conv1 = nodes.find((n) => n.name === 'conv1');
  assert.ok(conv1, 'conv1 kept');
  const producers = new Map(nodes.flatMap((n) => (n.output ?? []).map((o) => [o, n.opType] as const)));
  assert.deepEqual((conv1.input ?? []).map((i) => producers.get(i) ?? 'initializer'), ['BatchNormalization', 'initializer', 'initializer'], 'float input, weights, bias');
  // r4 only (conv4's input; its output layer3 is a graph output)
  assert.equal(nodes.filter((n) => n.opType === 'QuantizeLinear').length, 1);
  const reference = await floatOutputs(heldOut);
  const int8Out = await runModel(readFileSync(out), heldOut);
  const errors = TINY.outputNames.map((name) => relativeError(reference[name], int8Out.result[name].data));
  assert.ok(errors.every((e) => e > 0 && e < 0.06), `relative errors ${errors.map((e) => e.toFixed(4)).join(', ')}`);
  await int8Out.session.release();
});

test('bias correction removes the mean output shift that weight rounding causes', async () => {
  const reference = await floatOutputs(heldOut);
  const meanShift = async (biasCorrection: boolean): Promise<number> => {
    const out = path.join(tmp, `tiny-int8-bc-${biasCorrection}.onnx`);
    const r = await quantizeModel({ model: floatPath, calibrate: calibration, output: out, method: 'minmax', threads: 1, rewrites: { biasCorrection, floatStem: false } });
    assert.equal(r.biasCorrected, biasCorrection ? 4 : 0);
    const q = await runModel(readFileSync(out), heldOut);
    // |mean over images and positions of (int8 - float)| per channel of layer1 (conv2's output + r1), summed over channels
    const { data, dims } = q.result.layer1;
    const ref = reference.layer1;
    const [n, c] = [dims[0], dims[1]];
    const plane = data.length / n / c;
    let total = 0;
    for (let ch = 0; ch < c; ch++) {
      let sum = 0;
      for (let i = 0; i < n; i++) for (let p = 0; p < plane; p++) sum += data[(i * c + ch) * plane + p] - ref[(i * c + ch) * plane + p];
      total += Math.abs(sum / n / plane);
    }
    await q.session.release();
    return total;
  };
  const [without, withCorrection] = [await meanShift(false), await meanShift(true)];
  assert.ok(withCorrection < without * 0.8, `mean shift ${withCorrection} with correction, ${without} without`);
});
