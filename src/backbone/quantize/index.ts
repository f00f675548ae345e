/**
 * Static post-training int8 quantisation of a float32 ONNX backbone
 * (`hetmm quantize-model`). Steps: fold batch-norms into convolutions, move
 * the ImageNet normalisation into the graph, make the batch symbolic,
 * calibrate activation ranges on normal images, insert QDQ around every
 * convolution. The result is a new model file with its own description
 * (`<out>.json`, name suffixed `-int8`), hence its own identity: a store
 * built with it never matches a float model's store.
 *
 * Sits in the backbone layer (it runs onnxruntime, reads images).
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { HetmmError } from '../../errors.js';
import { loadImage, loadImagesFrom } from '../../image/index.js';
import { DEFAULT_BACKBONE, DEFAULT_MODEL_FILE, descriptionPathFor, loadBackboneDescription, type BackboneDescription } from '../description.js';
import { resolveModelPath } from '../model-path.js';
import { observeRangesAndMeans, checkCalibrationMethod, type CalibrationMethod } from './calibrate.js';
import { checkSingleImageInput, foldBatchNorms, fuseInputNormalisation, makeBatchSymbolic } from './fold.js';
import { decodeModel, encodeModel, onnx, opsetVersion, type ModelProto } from './onnx-graph.js';
import { stemConvs, insertQdq, planQdq, type QdqStats } from './qdq.js';

import { evenlySpaced } from '../evenly-spaced.js';

export { evenlySpaced };
export type { CalibrationMethod } from './calibrate.js';
export { activationParams, quantizeWeightsPerChannel } from './qdq.js';

/** Per-channel DequantizeLinear (the `axis` attribute) needs opset 13. */
const MIN_OPSET = 13;
/** Default calibration: measured in docs/PERFORMANCE.md (int8 backbone). */
export const DEFAULT_CALIBRATION: CalibrationMethod = 'mse';
export const DEFAULT_CALIBRATION_IMAGES = 32;

export interface QuantizeModelOptions {
  /** float32 .onnx to quantise; default: the shipped model (resolveModelPath) */
  readonly model?: string;
  /** its description; default: `<model>.json` if present, else the shipped description */
  readonly description?: BackboneDescription;
  /** calibration images: a directory, image files, or already loaded [3, H, W] arrays in [0, 1] */
  readonly calibrate: readonly string[] | readonly Float32Array[];
  /** at most this many calibration images (evenly spaced); default 32 */
  readonly maxImages?: number;
  readonly method?: CalibrationMethod;
  /** output .onnx path; the description is written next to it as `<out>.json` */
  readonly output: string;
  readonly threads?: number;
  /** accuracy rewrites before calibration, both on by default (off only to measure them: bench/quantize-fidelity.ts) */
  readonly rewrites?: QuantizeRewrites;
}

export interface QuantizeRewrites {
  /** leave the stem float: the convolutions that read the image, and those that read their output (qdq.ts stemConvs) */
  readonly floatStem?: boolean;
  /** fold the mean weight-rounding error of each conv into its bias (qdq.ts insertQdq) */
  readonly biasCorrection?: boolean;
}

/** quantizeModelBytes' result: the model in memory, nothing written. */
export interface QuantizedModel {
  /** the quantised .onnx */
  readonly modelBytes: Uint8Array;
  readonly description: BackboneDescription;
  readonly sha256: string;
  readonly bytes: number;
  readonly foldedBatchNorms: number;
  readonly quantizedConvs: number;
  readonly quantizedActivations: number;
  readonly absorbedRelus: number;
  /** convolutions left float: the stem (qdq.ts stemConvs) */
  readonly floatConvs: number;
  /** convolutions whose bias absorbed the mean weight-rounding error */
  readonly biasCorrected: number;
  readonly calibrationImages: number;
  readonly method: CalibrationMethod;
}

export interface QuantizeModelResult extends QuantizedModel {
  readonly output: string;
  readonly descriptionPath: string;
}

/** The description of the quantised model: input taken in [0, 1] (normalisation is in the graph). */
export function quantizedDescription(d: BackboneDescription): BackboneDescription {
  return Object.freeze({ ...d, name: `${d.name}-int8`, mean: [0, 0, 0] as const, std: [1, 1, 1] as const });
}

export function methodText(m: CalibrationMethod): string {
  return typeof m === 'string' ? m : `percentile ${m.percentile}`;
}

/** Parse 'minmax' or 'percentile:99.99' (CLI spelling). */
export function parseCalibrationMethod(text: string): CalibrationMethod {
  const m = /^percentile[:=]?([0-9.]+)$/.exec(text);
  if (text === 'minmax' || text === 'mse') return text;
  const method: CalibrationMethod = m ? { percentile: Number(m[1]) } : ({ percentile: NaN } as const);
  if (!m) throw new HetmmError('E_ARGUMENT', `Expected --calibration minmax, mse or percentile:P but received '${text}'`);
  checkCalibrationMethod(method);
  return method;
}

async function resolveDescription(modelPath: string, given: BackboneDescription | undefined): Promise<BackboneDescription> {
  if (given) return given;
  const sidecar = descriptionPathFor(modelPath);
  try {
    return await loadBackboneDescription(sidecar);
  } catch (e) {
    if (e instanceof HetmmError && /cannot read/.test(e.message)) {
      if (path.basename(modelPath) === DEFAULT_MODEL_FILE) return DEFAULT_BACKBONE;
      return { ...DEFAULT_BACKBONE, name: path.basename(modelPath).replace(/\.onnx$/i, '') };
    }
    throw e;
  }
}


async function calibrationInputs(
  source: readonly string[] | readonly Float32Array[],
  description: BackboneDescription,
  maxImages: number,
): Promise<Float32Array[]> {
  const [H, W] = description.inputSize;
  if (source.length > 0 && source[0] instanceof Float32Array) {
    const arrays = evenlySpaced(source as readonly Float32Array[], maxImages);
    for (const a of arrays) {
      if (a.length !== 3 * H * W) throw new HetmmError('E_ARGUMENT', `calibration arrays must be [3, ${H}, ${W}] (${3 * H * W} values), got ${a.length}`);
    }
    return arrays;
  }
  const files = evenlySpaced(await loadImagesFrom(source as readonly string[]), maxImages);
  const out: Float32Array[] = [];
  for (const f of files) out.push((await loadImage(f, { size: [H, W] })).data);
  return out;
}

/** Decode the float model and apply the float rewrites (no calibration): exported for tests and the bench. */
export function prepareFloatModel(bytes: Uint8Array, description: BackboneDescription, where: string): { model: ModelProto; foldedBatchNorms: number } {
  const model = decodeModel(bytes, where);
  checkSingleImageInput(model, description);
  const opset = opsetVersion(model);
  if (opset < MIN_OPSET) {
    throw new HetmmError('E_MODEL_INVALID', `model '${where}' uses opset ${opset}; the quantiser needs opset >= ${MIN_OPSET} (convert it first)`);
  }
  const foldedBatchNorms = foldBatchNorms(model);
  fuseInputNormalisation(model, description);
  makeBatchSymbolic(model);
  return { model, foldedBatchNorms };
}

/**
 * Quantise a prepared float model in place: the accuracy rewrites, range
 * calibration on `inputs` ([3, H, W] in [0, 1]), then QDQ. Exported for the
 * fidelity bench.
 */
export async function quantizeGraph(
  model: ModelProto,
  description: BackboneDescription,
  inputs: readonly Float32Array[],
  method: CalibrationMethod,
  threads: number,
  rewrites: QuantizeRewrites = {},
): Promise<QdqStats & { floatConvs: number }> {
  const floatStem = rewrites.floatStem !== false;
  const plan = planQdq(model, floatStem);
  const floatConvs = floatStem ? stemConvs(model).size : 0;
  if (plan.convs.length === 0) return { convs: 0, activations: 0, absorbedRelus: 0, biasCorrected: 0, floatConvs };
  const meansOf = new Set(rewrites.biasCorrection === false ? [] : plan.convs.map((c) => c.input[0]));
  const tensors = plan.activations.map((s) => s.name);
  const observed = await observeRangesAndMeans(model, description.inputName, description.inputSize, tensors, inputs, method, threads, meansOf);
  return { ...insertQdq(model, plan, observed.ranges, observed.means), floatConvs };
}

async function writeModel(output: string, model: Uint8Array, description: BackboneDescription): Promise<{ output: string; descriptionPath: string }> {
  const descriptionPath = descriptionPathFor(output);
  try {
    await writeFile(output, model);
    await writeFile(descriptionPath, `${JSON.stringify(description, null, 2)}\n`);
  } catch (e) {
    throw new HetmmError('E_STORE_WRITE', `cannot write '${output}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
  return { output, descriptionPath };
}

/** Quantises the model and writes it (and its description, `<output>.json`) to options.output. */
export async function quantizeModel(options: QuantizeModelOptions): Promise<QuantizeModelResult> {
  const { path: modelPath } = resolveModelPath({ model: options.model });
  if (path.resolve(options.output) === path.resolve(modelPath)) throw new HetmmError('E_ARGUMENT', 'the output must not overwrite the input model');
  const q = await quantizeModelBytes(options);
  return { ...q, ...(await writeModel(options.output, q.modelBytes, q.description)) };
}

/**
 * Quantises the model into memory (nothing written): fitting a store int8 end
 * to end embeds the result in the store, so a failed or killed fit leaves no
 * model file behind and replaces none.
 */
export async function quantizeModelBytes(options: Omit<QuantizeModelOptions, 'output'>): Promise<QuantizedModel> {
  const { path: modelPath } = resolveModelPath({ model: options.model });
  const description = await resolveDescription(modelPath, options.description);
  const method = options.method ?? DEFAULT_CALIBRATION;
  checkCalibrationMethod(method);
  const maxImages = options.maxImages ?? DEFAULT_CALIBRATION_IMAGES;
  if (!Number.isInteger(maxImages) || maxImages <= 0) throw new HetmmError('E_ARGUMENT', `Expected a positive integer for maxImages but received ${maxImages}`);
  const threads = options.threads ?? os.availableParallelism();

  const bytes = await readFile(modelPath).catch((e: unknown) => {
    throw new HetmmError('E_MODEL_NOT_FOUND', `cannot read model '${modelPath}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  });
  const { model, foldedBatchNorms } = prepareFloatModel(bytes, description, modelPath);
  const inputs = await calibrationInputs(options.calibrate, description, maxImages);
  if (inputs.length === 0) throw new HetmmError('E_NO_IMAGES', 'no calibration images found');
  const stats = await quantizeGraph(model, description, inputs, method, threads, options.rewrites ?? {});
  if (stats.convs === 0) throw new HetmmError('E_MODEL_INVALID', `model '${modelPath}' has no convolution with constant weights to quantise`);
  const qDescription = quantizedDescription(description);
  model.producerName = 'hetmm quantize-model';
  model.docString = `int8 QDQ of ${path.basename(modelPath)} (${methodText(method)} calibration on ${inputs.length} images)`;
  model.metadataProps.push(onnx.StringStringEntryProto.create({ key: 'hetmm.description', value: JSON.stringify(qDescription) }));
  const out = encodeModel(model);
  return {
    description: qDescription,
    modelBytes: out,
    sha256: createHash('sha256').update(out).digest('hex'),
    bytes: out.byteLength,
    foldedBatchNorms,
    quantizedConvs: stats.convs,
    quantizedActivations: stats.activations,
    absorbedRelus: stats.absorbedRelus,
    floatConvs: stats.floatConvs,
    biasCorrected: stats.biasCorrected,
    calibrationImages: inputs.length,
    method,
  };
}
