/**
 * The models hetmm knows by name: what a download or a cache entry must be
 * (size, sha256), what the model is (its backbone description) and where it
 * comes from. Shipped with the package, so a downloaded file is checked
 * against what this version of hetmm expects, never against the host's word.
 */
import { DEFAULT_BACKBONE, type BackboneDescription } from '../backbone/description.js';

export interface ModelEntry {
  /** the name `hetmm models pull NAME` takes */
  readonly name: string;
  /** file name in the cache, in a local models directory, in the model package and on the host */
  readonly file: string;
  readonly size: number;
  /** sha256 (hex) of the file's bytes */
  readonly sha256: string;
  readonly description: BackboneDescription;
  readonly summary: string;
  readonly licence: string;
  readonly source: string;
  /** the npm package that ships the file (its package root holds `file`) */
  readonly npmPackage: string;
}

export const MODELS: readonly ModelEntry[] = Object.freeze([
  Object.freeze({
    name: 'resnet50v2-imagenet-l123',
    file: 'resnet50v2-imagenet-l123.onnx',
    size: 34280173,
    sha256: 'a5cf6993e6443f99be82a1bdb8b0194cddabeb889240ec75e7064ca50d179452',
    description: DEFAULT_BACKBONE,
    summary: 'ResNet-50 v2 (ImageNet-1k), stem + stages 1-3, features at strides 4/8/16',
    licence: 'Apache-2.0',
    source: "ONNX model zoo resnet50-v2-7 (MXNet Gluon export), stages 1-3 re-assembled as an ONNX graph (opset 13)",
    npmPackage: '@hetmm/model-resnet50v2',
  }),
]);

/** The model used when none is named. */
export const DEFAULT_MODEL_NAME = 'resnet50v2-imagenet-l123';

export function findModelEntry(name: string): ModelEntry | undefined {
  return MODELS.find((m) => m.name === name || m.file === name);
}
