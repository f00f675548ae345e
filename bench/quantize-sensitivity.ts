/**
 * Which tensors make the int8 backbone's feature error:
 * `node dist/bench/quantize-sensitivity.js [--each]`. Calibrates once (mse,
 * 16 evenly spaced Magnetic Tile train/good images) on the model with every
 * convolution int8 (the quantiser before the float stem), then leaves groups
 * of activation tensors float (no QDQ there; weights still int8) and prints
 * 1 - mean cosine (x 1e-4) of the features of 12 test images (2 per class)
 * against float32, per layer. `--each`: also each tensor alone on top of the
 * stem's two. Last row: the current default (quantizeGraph). Source of the
 * table in docs/PERFORMANCE.md ("Where the int8 error came from").
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as ort from 'onnxruntime-node';
import { loadOrt } from '../src/backbone/backbone.js';
import { DEFAULT_BACKBONE } from '../src/backbone/description.js';
import { prepareFloatModel, quantizeGraph } from '../src/backbone/quantize/index.js';
import { observeRangesAndMeans, type TensorRange } from '../src/backbone/quantize/calibrate.js';
import { encodeModel, type ModelProto } from '../src/backbone/quantize/onnx-graph.js';
import { insertQdq, planQdq, type ActivationSite } from '../src/backbone/quantize/qdq.js';
import { loadImage, loadImagesFrom } from '../src/image/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tile = path.resolve(repoRoot, '../shared/datasets/magnetic-tile/magnetic_tile');
const modelPath = path.resolve(repoRoot, '../shared/models/resnet50v2-imagenet-l123.onnx');
const SIZE = DEFAULT_BACKBONE.inputSize;

const evenly = <T>(items: readonly T[], n: number): T[] => Array.from({ length: Math.min(n, items.length) }, (_, i) => items[Math.floor((i * items.length) / Math.min(n, items.length))]!);

async function main(): Promise<void> {
  const runtime = await loadOrt();
  const bytes = readFileSync(modelPath);
  const fresh = (): ModelProto => prepareFloatModel(bytes, DEFAULT_BACKBONE, modelPath).model;
  const load = async (files: string[]): Promise<Float32Array[]> => Promise.all(files.map(async (f) => (await loadImage(f, { size: SIZE })).data));
  const calibration = await load(evenly(await loadImagesFrom([path.join(tile, 'train', 'good')]), 16));
  const tests: string[] = [];
  for (const c of readdirSync(path.join(tile, 'test')).sort()) tests.push(...evenly(await loadImagesFrom([path.join(tile, 'test', c)]), 2));
  const images = await load(tests);

  const features = async (model: ModelProto): Promise<Float32Array[][]> => {
    const session: ort.InferenceSession = await runtime.InferenceSession.create(encodeModel(model), { intraOpNumThreads: 2, interOpNumThreads: 1 });
    const out: Float32Array[][] = [];
    for (const img of images) {
      const r = await session.run({ [DEFAULT_BACKBONE.inputName]: new runtime.Tensor('float32', img, [1, 3, SIZE[0], SIZE[1]]) });
      out.push(DEFAULT_BACKBONE.outputNames.map((n) => (r[n] as ort.Tensor).data as Float32Array));
    }
    await session.release();
    return out;
  };
  const base = fresh();
  const reference = await features(base);
  const channels = [256, 512, 1024];
  const error = (f: Float32Array[][]): string =>
    [0, 1, 2]
      .map((l) => {
        let sum = 0;
        let count = 0;
        f.forEach((img, n) => {
          const [a, b, C] = [reference[n]![l]!, img[l]!, channels[l]!];
          const plane = a.length / C;
          for (let p = 0; p < plane; p++) {
            let [dot, aa, bb] = [0, 0, 0];
            for (let c = 0; c < C; c++) [dot, aa, bb] = [dot + a[c * plane + p]! * b[c * plane + p]!, aa + a[c * plane + p]! ** 2, bb + b[c * plane + p]! ** 2];
            sum += 1 - dot / Math.sqrt(aa * bb + 1e-30);
            count++;
          }
        });
        return ((sum / count) * 1e4).toFixed(1);
      })
      .join(' | ');

  const plan0 = planQdq(base, false);
  const { ranges }: { ranges: Map<string, TensorRange> } = await observeRangesAndMeans(base, DEFAULT_BACKBONE.inputName, SIZE, plan0.activations.map((s) => s.name), calibration, 'mse', 2);
  const absorbed = new Set(plan0.absorbedRelus.map((r) => r.output[0]));
  const stem = new Set(plan0.convs.slice(0, 1).flatMap((c) => [c.input[0], ...plan0.activations.filter((s) => s.source === c.output[0]).map((s) => s.name)]));
  const row = async (label: string, keepFloat: (s: ActivationSite) => boolean): Promise<void> => {
    const m = fresh();
    const p = planQdq(m, false);
    const kept = p.activations.filter((s) => !keepFloat(s));
    const names = new Set(kept.map((s) => s.name));
    insertQdq(m, { convs: p.convs, activations: kept, absorbedRelus: p.absorbedRelus.filter((r) => names.has(r.output[0])) }, ranges);
    console.log(`| ${label} | ${error(await features(m))} |`);
  };
  console.log(`${images.length} test images, 16 calibration images; 1 - mean cosine x 1e-4`);
  console.log('| left float | layer1 | layer2 | layer3 |\n|---|---:|---:|---:|');
  await row('nothing (all convolutions int8)', () => false);
  await row('every activation (int8 weights only)', () => true);
  await row('signed conv outputs (feed the residual adds)', (s) => s.source === s.name && !s.name.startsWith('relu') && !stem.has(s.name));
  await row('pre-activation BN+ReLU outputs', (s) => s.source === s.name && s.name.startsWith('relu'));
  await row('conv outputs with an absorbed ReLU', (s) => absorbed.has(s.name));
  await row(`the image (${plan0.convs[0]!.input[0]})`, (s) => s.name === plan0.convs[0]!.input[0]);
  await row(`the stem conv's input and output (${[...stem].join(', ')})`, (s) => stem.has(s.name));
  if (process.argv.includes('--each')) {
    for (const site of plan0.activations.filter((s) => !stem.has(s.name))) await row(`stem + ${site.name}`, (s) => stem.has(s.name) || s.name === site.name);
  }
  const now = fresh();
  await quantizeGraph(now, DEFAULT_BACKBONE, calibration, 'mse', 2);
  console.log(`| now: the default quantiser (2-step float stem + bias correction) | ${error(await features(now))} |`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exitCode = 1;
});
