/**
 * What hetmm needs to know about a feature-extractor model, and the identity
 * of a loaded one (stored in template stores so that a store is never matched
 * against features of another network). No onnxruntime import here.
 */
import { readFile } from 'node:fs/promises';
import { HetmmError } from '../errors.js';

/**
 * The feature layers HETMM matches: a backbone description names this many
 * outputs (shallow to deep), and a preset has one setting per layer. The
 * one place the count is written; everything else asks for it.
 */
export const FEATURE_LAYERS = 3;

export interface BackboneDescription {
  readonly name: string;
  /** the model's image input, float32 [N, 3, H, W] */
  readonly inputName: string;
  /** the three feature outputs, shallow to deep */
  readonly outputNames: readonly [string, string, string];
  /** input pixels per feature pixel, per output */
  readonly strides: readonly [number, number, number];
  /** [height, width] the images are resized to */
  readonly inputSize: readonly [number, number];
  /** per-channel normalisation of RGB in [0, 1]: (x - mean) / std */
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
}

export interface BackboneLayerIdentity {
  readonly name: string;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly stride: number;
}

export interface BackboneIdentity {
  readonly name: string;
  /** sha256 (hex) of the .onnx file's bytes */
  readonly modelSha256: string;
  /** [height, width] */
  readonly inputSize: readonly [number, number];
  readonly layers: readonly BackboneLayerIdentity[];
}

export const DEFAULT_MODEL_FILE = 'resnet50v2-imagenet-l123.onnx';
/** Relative to the current directory or to hetmm's package root. */
export const DEFAULT_MODEL_RELATIVE_PATH = `../shared/models/${DEFAULT_MODEL_FILE}`;

/** The shipped ResNet-50 v2 (ImageNet) stem + stages 1-3; see ../shared/models/README.md. */
export const DEFAULT_BACKBONE: BackboneDescription = Object.freeze({
  name: 'resnet50v2-imagenet-l123',
  inputName: 'input',
  outputNames: ['layer1', 'layer2', 'layer3'] as const,
  strides: [4, 8, 16] as const,
  inputSize: [256, 256] as const,
  mean: [0.485, 0.456, 0.406] as const,
  std: [0.229, 0.224, 0.225] as const,
});

function fail(where: string, what: string, received: unknown): never {
  throw new HetmmError('E_ARGUMENT', `${where}: Expected ${what} but received ${JSON.stringify(received)}`);
}

function tupleOf(
  value: unknown,
  length: number,
  check: (v: unknown) => boolean,
  where: string,
  field: string,
  what: string,
): void {
  if (!Array.isArray(value) || value.length !== length || !value.every(check)) {
    fail(where, `${field} to be ${what}`, value);
  }
}

/** Validate an untrusted object (e.g. parsed JSON) as a BackboneDescription. */
export function validateBackboneDescription(value: unknown, where = 'backbone description'): BackboneDescription {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(where, 'a JSON object', value);
  const o = value as Record<string, unknown>;
  const isName = (v: unknown): boolean => typeof v === 'string' && v.length > 0;
  const isPosInt = (v: unknown): boolean => Number.isInteger(v) && (v as number) > 0;
  const isFinite = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
  const isPositive = (v: unknown): boolean => isFinite(v) && (v as number) > 0;
  if (!isName(o.name)) fail(where, 'name to be a non-empty string', o.name);
  if (!isName(o.inputName)) fail(where, 'inputName to be a non-empty string', o.inputName);
  tupleOf(o.outputNames, FEATURE_LAYERS, isName, where, 'outputNames', `${FEATURE_LAYERS} non-empty strings`);
  tupleOf(o.strides, FEATURE_LAYERS, isPosInt, where, 'strides', `${FEATURE_LAYERS} positive integers`);
  tupleOf(o.inputSize, 2, isPosInt, where, 'inputSize', '[height, width] positive integers');
  tupleOf(o.mean, 3, isFinite, where, 'mean', '3 finite numbers [r, g, b]');
  tupleOf(o.std, 3, isPositive, where, 'std', '3 positive numbers [r, g, b]');
  const outputs = o.outputNames as string[];
  if (new Set(outputs).size !== FEATURE_LAYERS) fail(where, `outputNames to be ${FEATURE_LAYERS} distinct names`, outputs);
  return Object.freeze({
    name: o.name as string,
    inputName: o.inputName as string,
    outputNames: [...outputs] as unknown as [string, string, string],
    strides: [...(o.strides as number[])] as unknown as [number, number, number],
    inputSize: [...(o.inputSize as number[])] as unknown as [number, number],
    mean: [...(o.mean as number[])] as unknown as [number, number, number],
    std: [...(o.std as number[])] as unknown as [number, number, number],
  });
}

/** Read and validate a backbone description JSON file (e.g. `<model>.json`). */
/** The description file beside a model: `<model without .onnx>.json`. */
export function descriptionPathFor(modelPath: string): string {
  return `${modelPath.replace(/\.onnx$/i, '')}.json`;
}

export async function loadBackboneDescription(path: string): Promise<BackboneDescription> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new HetmmError('E_ARGUMENT', `cannot read backbone description '${path}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`, {
      cause: e,
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new HetmmError('E_ARGUMENT', `backbone description '${path}' is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  return validateBackboneDescription(parsed, `backbone description '${path}'`);
}

/** True when two identities describe the same features (same model bytes, input size and layer shapes). */
export function sameIdentity(a: BackboneIdentity, b: BackboneIdentity): boolean {
  return identityDifference(a, b) === undefined;
}

/** A human-readable description of the first difference, or undefined when equal. */
export function identityDifference(a: BackboneIdentity, b: BackboneIdentity): string | undefined {
  if (a.modelSha256 !== b.modelSha256) return `model sha256 ${a.modelSha256} vs ${b.modelSha256}`;
  if (a.inputSize[0] !== b.inputSize[0] || a.inputSize[1] !== b.inputSize[1]) {
    return `input size ${a.inputSize.join('x')} vs ${b.inputSize.join('x')}`;
  }
  const shapes = (id: BackboneIdentity): string =>
    id.layers.map((l) => `${l.name}[${l.channels},${l.height},${l.width}]/${l.stride}`).join(' ');
  if (shapes(a) !== shapes(b)) return `layers ${shapes(a)} vs ${shapes(b)}`;
  return undefined;
}
