/**
 * The feature extractor: the only module that imports onnxruntime-node (loadOrt; quantize/calibrate.ts uses it too).
 * Image [3, H, W] in [0, 1] -> ImageNet-normalised [1, 3, H, W] -> three
 * feature maps, each pixel vector L2-normalised over channels (HETMM matches
 * by cosine similarity, so normalising once here makes every later
 * similarity a plain dot product).
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as ort from 'onnxruntime-node';
import { disableOnnxruntimeTelemetry, type Environment } from '../config.js';
import { HetmmError } from '../errors.js';
import type { LoadedImage } from '../image/types.js';
import {
  DEFAULT_BACKBONE,
  DEFAULT_MODEL_FILE,
  descriptionPathFor,
  loadBackboneDescription,
  type BackboneDescription,
  type BackboneIdentity,
  type BackboneLayerIdentity,
} from './description.js';
import { resolveModel } from '../models/resolve.js';

/** Pixel vectors with a smaller norm are divided by this instead (as F.normalize's eps). */
const NORM_EPSILON = 1e-12;

export interface BackboneLoadOptions {
  /**
   * path to the .onnx file; default: the model store (../models: HETMM_MODEL, cache, local, npm package, download).
   * With `modelBytes`: the name the model goes by (Backbone.modelPath, messages, the per-process session cache).
   */
  readonly model?: string;
  /**
   * the .onnx bytes themselves (an int8 backbone embedded in a template store): no file is read; `model`
   * names them and must then be given, and `description` too (there is no `<model>.json` beside them)
   */
  readonly modelBytes?: Uint8Array;
  /** default: `<model>.json` next to the model if it exists, else DEFAULT_BACKBONE */
  readonly description?: BackboneDescription;
  /** onnxruntime intra-op threads; default: all cores (os.availableParallelism()) */
  readonly threads?: number;
  /** environment for HETMM_MODEL lookup (default: the process environment, through ../config.ts) */
  readonly env?: Environment;
}

interface SharedSession {
  readonly session: ort.InferenceSession;
  readonly sha256: string;
  /** the model's bytes and description when it was loaded from memory (threads started later get them: loadedModel) */
  readonly loaded?: { readonly bytes: Uint8Array; readonly description: BackboneDescription };
  users: number;
}

/** onnxruntime-node, imported on the first Backbone.load (importing hetmm must not load it). */
let ortModule: Promise<typeof ort> | undefined;
let ortLoaded: typeof ort | undefined;
/** onnxruntime-node, imported on first use (importing hetmm must not load it); the quantiser's calibration shares it. */
export async function loadOrt(): Promise<typeof ort> {
  if (ortModule === undefined) disableOnnxruntimeTelemetry();
  ortModule ??= import('onnxruntime-node').then((m) => (ortLoaded = m));
  return ortModule;
}
/** The loaded onnxruntime (a Backbone exists only after loadOrt resolved). */
function ortRuntime(): typeof ort {
  if (ortLoaded === undefined) throw new Error('onnxruntime-node is used before Backbone.load');
  return ortLoaded;
}

/** One InferenceSession per model file per process: sessions hold the weights (~100 MB) and thread pools. */
const sessions = new Map<string, Promise<SharedSession>>();

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function openSession(modelPath: string, threads: number, loaded: SharedSession['loaded']): Promise<SharedSession> {
  const bytes = loaded?.bytes;
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Idle intra-op threads must not spin: they would take the cores from
    // the matching thread pool, which runs right after (or, pipelined,
    // during) each backbone run. Measured in docs/PERFORMANCE.md.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
  const { InferenceSession } = await loadOrt();
  const [sha256, session] = await Promise.all([
    bytes === undefined ? sha256File(modelPath) : createHash('sha256').update(bytes).digest('hex'),
    (bytes === undefined ? InferenceSession.create(modelPath, options) : InferenceSession.create(bytes, options)).catch((e: unknown) => {
      throw new HetmmError('E_MODEL_INVALID', `cannot load ONNX model '${modelPath}': ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }),
  ]);
  return { session, sha256, ...(loaded === undefined ? {} : { loaded }), users: 0 };
}

/**
 * The bytes and description of a model this process loaded from memory
 * (BackboneLoadOptions.modelBytes) and still holds, by its name: a worker
 * thread started for it gets them, not a path.
 */
export function loadedModel(modelPath: string): SharedSession['loaded'] {
  return loadedFromMemory.get(modelPath);
}

/** loadedModel's answers: set with the session of a model loaded from memory, removed with it (synchronous: a thread starts at once). */
const loadedFromMemory = new Map<string, NonNullable<SharedSession['loaded']>>();

function shapeText(dims: readonly number[]): string {
  return `[${dims.join(',')}]`;
}

/** L2-normalise each pixel vector of a [C, H, W] map over C, into a new array. */
export function l2NormalisePixels(src: ArrayLike<number>, channels: number, height: number, width: number, offset = 0): Float32Array {
  const plane = height * width;
  const out = new Float32Array(channels * plane);
  const sumSq = new Float64Array(plane);
  for (let c = 0; c < channels; c++) {
    const base = offset + c * plane;
    for (let p = 0; p < plane; p++) {
      const v = src[base + p];
      sumSq[p] += v * v;
    }
  }
  const inv = new Float64Array(plane);
  for (let p = 0; p < plane; p++) inv[p] = 1 / Math.max(Math.sqrt(sumSq[p]), NORM_EPSILON);
  for (let c = 0; c < channels; c++) {
    const base = offset + c * plane;
    const ob = c * plane;
    for (let p = 0; p < plane; p++) out[ob + p] = src[base + p] * inv[p];
  }
  return out;
}

/** l2NormalisePixels' signature: a native implementation may be plugged in (Backbone.usePixelNormaliser). */
export type PixelNormaliser = (src: Float32Array, channels: number, height: number, width: number, offset?: number) => Float32Array;

export class Backbone {
  readonly identity: BackboneIdentity;
  readonly description: BackboneDescription;
  readonly modelPath: string;
  /** true when the model's batch dimension is symbolic, so extractBatch runs one batch */
  readonly dynamicBatch: boolean;
  #shared: SharedSession | undefined;
  #normalise: PixelNormaliser = l2NormalisePixels;

  private constructor(
    shared: SharedSession,
    modelPath: string,
    description: BackboneDescription,
    identity: BackboneIdentity,
    dynamicBatch: boolean,
  ) {
    this.#shared = shared;
    this.modelPath = modelPath;
    this.description = description;
    this.identity = identity;
    this.dynamicBatch = dynamicBatch;
  }

  static async load(options: BackboneLoadOptions = {}): Promise<Backbone> {
    const threads = options.threads ?? os.availableParallelism();
    if (!Number.isInteger(threads) || threads <= 0) {
      throw new HetmmError('E_ARGUMENT', `Expected positive integer for threads but received ${String(threads)}`);
    }
    const bytes = options.modelBytes;
    if (bytes !== undefined && (options.model === undefined || options.description === undefined)) {
      throw new HetmmError('E_ARGUMENT', 'a model given as bytes (modelBytes) needs its name (model) and its description');
    }
    const modelPath = bytes === undefined ? (await resolveModel({ model: options.model, env: options.env })).path : options.model!;
    let description = options.description;
    if (description === undefined) {
      const sidecar = descriptionPathFor(modelPath);
      if (existsSync(sidecar)) description = await loadBackboneDescription(sidecar);
      else if (path.basename(modelPath) === DEFAULT_MODEL_FILE) description = DEFAULT_BACKBONE;
      else description = { ...DEFAULT_BACKBONE, name: path.basename(modelPath).replace(/\.onnx$/i, '') };
    }

    let pending = sessions.get(modelPath);
    if (pending === undefined) {
      const loaded = bytes === undefined ? undefined : { bytes, description };
      pending = openSession(modelPath, threads, loaded);
      sessions.set(modelPath, pending);
      if (loaded !== undefined) loadedFromMemory.set(modelPath, loaded);
      // A failed load must not poison the cache.
      pending.catch(() => {
        sessions.delete(modelPath);
        loadedFromMemory.delete(modelPath);
      });
    }
    const shared = await pending;
    const { identity, dynamicBatch } = await Backbone.#validate(shared, modelPath, description);
    shared.users++;
    return new Backbone(shared, modelPath, description, identity, dynamicBatch);
  }

  /** Check names, then run zeros and check each output's shape against the strides. */
  static async #validate(
    shared: SharedSession,
    modelPath: string,
    d: BackboneDescription,
  ): Promise<{ identity: BackboneIdentity; dynamicBatch: boolean }> {
    const s = shared.session;
    const invalid = (why: string): never => {
      throw new HetmmError('E_MODEL_INVALID', `model '${modelPath}' does not fit backbone '${d.name}': ${why}`);
    };
    if (!s.inputNames.includes(d.inputName)) {
      invalid(`expected input '${d.inputName}', found inputs [${s.inputNames.join(', ')}]`);
    }
    const missing = d.outputNames.filter((n) => !s.outputNames.includes(n));
    if (missing.length > 0) {
      invalid(`expected outputs [${d.outputNames.join(', ')}], found [${s.outputNames.join(', ')}] (missing ${missing.join(', ')})`);
    }
    // Batch dimension: a number (1) is fixed; a symbolic name or -1 is dynamic.
    const inputMeta = s.inputMetadata.find((m) => m.name === d.inputName);
    const batchDim = inputMeta && inputMeta.isTensor ? inputMeta.shape[0] : 1;
    const dynamicBatch = typeof batchDim === 'string' || (typeof batchDim === 'number' && batchDim < 0);

    const [H, W] = d.inputSize;
    const zeros = new (ortRuntime().Tensor)('float32', new Float32Array(3 * H * W), [1, 3, H, W]);
    let results: ort.InferenceSession.OnnxValueMapType;
    try {
      results = await s.run({ [d.inputName]: zeros }, [...d.outputNames]);
    } catch (e) {
      return invalid(`a test run on a [1,3,${H},${W}] zero image failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    const layers: BackboneLayerIdentity[] = [];
    d.outputNames.forEach((name, i) => {
      const t = results[name] as ort.Tensor | undefined;
      if (t === undefined) return invalid(`output '${name}' missing from the test run`);
      const dims = t.dims;
      const stride = d.strides[i];
      const eh = Math.ceil(H / stride);
      const ew = Math.ceil(W / stride);
      if (t.type !== 'float32') invalid(`output '${name}' has type ${t.type}, expected float32`);
      if (dims.length !== 4 || dims[0] !== 1 || dims[2] !== eh || dims[3] !== ew) {
        invalid(`output '${name}' has shape ${shapeText(dims)}, expected [1,C,${eh},${ew}] (stride ${stride} on ${H}x${W})`);
      }
      layers.push({ name, channels: dims[1], height: dims[2], width: dims[3], stride });
    });
    return {
      identity: Object.freeze({ name: d.name, modelSha256: shared.sha256, inputSize: [H, W] as const, layers: Object.freeze(layers) }),
      dynamicBatch,
    };
  }

  /** The model's bytes when it was loaded from memory (an embedded int8 backbone): worker threads start from them. */
  get modelBytes(): Uint8Array | undefined {
    return this.#shared?.loaded?.bytes;
  }

  /**
   * Use another implementation of l2NormalisePixels (the fast backend's
   * native one: the detector plugs it in; this layer cannot import kernels).
   */
  usePixelNormaliser(normalise: PixelNormaliser): void {
    this.#normalise = normalise;
  }

  get pixelNormaliser(): PixelNormaliser {
    return this.#normalise;
  }

  #session(): ort.InferenceSession {
    if (this.#shared === undefined) throw new HetmmError('E_ARGUMENT', 'this Backbone was disposed');
    return this.#shared.session;
  }

  /** ImageNet-normalise images into one [n, 3, H, W] input tensor. */
  #input(images: readonly LoadedImage[]): ort.Tensor {
    const [H, W] = this.description.inputSize;
    const plane = H * W;
    for (const img of images) {
      if (img.height !== H || img.width !== W || img.data.length !== 3 * plane) {
        throw new HetmmError(
          'E_ARGUMENT',
          `image '${img.source}' is ${img.height}x${img.width}, expected ${H}x${W} (load it with size [${H}, ${W}])`,
        );
      }
    }
    // A model that normalises inside its graph (hetmm quantize-model output) takes the pixels as they are.
    const identity = this.description.mean.every((m) => m === 0) && this.description.std.every((s) => s === 1);
    if (identity && images.length === 1) return new (ortRuntime().Tensor)('float32', images[0].data, [1, 3, H, W]);
    const data = new Float32Array(images.length * 3 * plane);
    images.forEach((img, n) => {
      for (let c = 0; c < 3; c++) {
        const mean = this.description.mean[c];
        const invStd = 1 / this.description.std[c];
        const src = c * plane;
        const dst = (n * 3 + c) * plane;
        for (let p = 0; p < plane; p++) data[dst + p] = (img.data[src + p] - mean) * invStd;
      }
    });
    return new (ortRuntime().Tensor)('float32', data, [images.length, 3, H, W]);
  }

  async #run(images: readonly LoadedImage[]): Promise<Float32Array[][]> {
    const session = this.#session();
    const input = this.#input(images);
    const results = await session.run({ [this.description.inputName]: input }, [...this.description.outputNames]);
    const perImage: Float32Array[][] = images.map(() => []);
    this.identity.layers.forEach((layer) => {
      const t = results[layer.name] as ort.Tensor;
      const data = t.data as Float32Array;
      const size = layer.channels * layer.height * layer.width;
      for (let n = 0; n < images.length; n++) {
        perImage[n].push(this.#normalise(data, layer.channels, layer.height, layer.width, n * size));
      }
    });
    return perImage;
  }

  /** Per layer, the [C, H, W] features, each pixel vector of unit L2 norm. */
  async extract(image: LoadedImage): Promise<Float32Array[]> {
    return (await this.#run([image]))[0];
  }

  /** extract() for several images: one batched run when the model allows it, else one run per image. */
  async extractBatch(images: readonly LoadedImage[]): Promise<Float32Array[][]> {
    if (images.length === 0) return [];
    if (this.dynamicBatch) return this.#run(images);
    const out: Float32Array[][] = [];
    for (const img of images) out.push(await this.extract(img));
    return out;
  }

  /** Release this handle; the shared session is released when its last user disposes. */
  async dispose(): Promise<void> {
    const shared = this.#shared;
    if (shared === undefined) return;
    this.#shared = undefined;
    shared.users--;
    if (shared.users === 0) {
      sessions.delete(this.modelPath);
      loadedFromMemory.delete(this.modelPath);
      await shared.session.release();
    }
  }
}
