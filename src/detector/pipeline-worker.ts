/**
 * Worker-thread side of ./pipelines.ts: one whole pipeline per thread,
 * one image at a time: decode, backbone (1 onnxruntime thread), matching on
 * this thread (the backend's matchSharedLayer) against the templates the
 * request brings, scoring; for the server also the maps (PNG encoding off
 * the event loop).
 */
import { HetmmError } from '../errors.js';
import { loadImage, type LoadedImage } from '../image/index.js';
import type { KernelBackend, MatchResult } from '../kernels/contract.js';
import { getBackend, matchSharedLayerAt } from '../kernels/index.js';
import { selectNearest } from '../selection/nearest-templates.js';
import { answerRequests, threadData, transferring, type Transferring } from '../threads/index.js';
import { renderMaps } from './maps.js';
import { layerInputs, scoreResults, toPrediction, type Prediction } from './prediction.js';
import type { PipelineModel, PipelineReply, PipelineRequest, PipelineState } from './pipelines.js';
import { loadThreadBackbone } from './thread-backbone.js';

const model = threadData<PipelineModel>();
const ready = loadThreadBackbone({ model: model.model, ...(model.modelBytes === undefined ? {} : { modelBytes: model.modelBytes }), description: model.description, threads: 1 }).then((backbone) => {
  if (backbone.identity.modelSha256 !== model.modelSha256) {
    throw new HetmmError('E_MODEL_INVALID', `a pipeline thread loaded another model than the detector's (${model.model} changed on disk?)`);
  }
  return backbone;
});
ready.catch(() => undefined); // reported to 'init' and to every request

/** backends loaded on this thread, by name and precision (a request names the one that shared its templates) */
const backends = new Map<string, Promise<KernelBackend>>();

/** The backend that shared the layers, by name and precision, loaded on this thread. */
function backendOf(name: string, precision: PipelineState['precision']): Promise<KernelBackend> {
  const key = `${name}/${precision}`;
  let loaded = backends.get(key);
  if (loaded === undefined) {
    loaded = loadBackend(name, precision);
    backends.set(key, loaded);
  }
  return loaded;
}

async function loadBackend(name: string, precision: PipelineState['precision']): Promise<KernelBackend> {
  let loaded: KernelBackend;
  try {
    loaded = await getBackend(name, { precision });
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new HetmmError(
      'E_BACKEND',
      `a pipeline thread cannot load the "${name}" kernel backend (${reason}); threads load backends by name, so one registered with registerBackend on another thread is not there: use one pipeline`,
      { cause: e },
    );
  }
  if (loaded.matchSharedLayer === undefined) throw new HetmmError('E_BACKEND', `the "${name}" kernel backend has no matchSharedLayer on a pipeline thread`);
  return loaded;
}

/** The templates the line's preselection matches these features against; undefined: all (exact ATMM). */
function chosenTemplates(features: readonly Float32Array[], state: PipelineState): Int32Array | undefined {
  const selection = state.selection;
  if (selection === undefined || selection.settings.k >= state.templates) return undefined;
  const layer = state.layers[selection.settings.layer]!;
  const shape = layer.kind === 'int8' ? layer.shape : layer.stack.shape;
  return selectNearest(selection.settings, selection.descriptors, state.templates, shape, features);
}

/** Decodes and predicts one image against `state`. */
async function predictImage(source: string | Uint8Array, state: PipelineState, maxPixels: number | undefined): Promise<Prediction> {
  const backbone = await ready;
  const backend = await backendOf(state.backend, state.precision);
  const t0 = performance.now();
  const image = await loadImage(source instanceof Uint8Array ? Buffer.from(source.buffer, source.byteOffset, source.byteLength) : source, {
    size: backbone.identity.inputSize,
    maxPixels,
  });
  const t1 = performance.now();
  const features = await backbone.extract(image);
  const t2 = performance.now();
  const layers = backbone.identity.layers;
  const results: MatchResult[] = [];
  const chosen = chosenTemplates(features, state);
  for (let l = 0; l < layers.length; l++) {
    const { query, match } = layerInputs(backbone.identity, state.preset, features, l);
    const layer = state.layers[l]!;
    results.push(chosen === undefined ? backend.matchSharedLayer!(layer, query, match) : matchSharedLayerAt(backend, layer, query, chosen, match));
  }
  const t3 = performance.now();
  const scored = scoreResults(backbone.identity, state.preset, results, image);
  const t4 = performance.now();
  return toPrediction(image, scored, state.threshold, chosen?.length ?? state.templates, { decode: t1 - t0, backbone: t2 - t1, match: t3 - t2, score: t4 - t3 });
}

/** Buffers of `arrays` that can move to the main thread instead of being copied. */
function ownBuffers(arrays: ReadonlyArray<ArrayBufferView | undefined>): ArrayBuffer[] {
  const transfer = new Set<ArrayBuffer>();
  for (const a of arrays) if (a !== undefined && a.buffer instanceof ArrayBuffer) transfer.add(a.buffer);
  return [...transfer];
}

async function handle(request: PipelineRequest): Promise<PipelineReply | Transferring<PipelineReply>> {
  switch (request.op) {
    case 'init':
      await ready;
      return {};
    case 'backend':
      await backendOf(request.backend, request.precision);
      return {};
    case 'predict': {
      const prediction = await predictImage(request.source, request.state, request.maxPixels);
      return transferring({ prediction }, ownBuffers([prediction.image.data, prediction.anomalyMap, prediction.pixelMap, prediction.proMap]));
    }
    case 'serve': {
      const p = await predictImage(request.source, request.state, request.maxPixels);
      const t0 = performance.now();
      // PNG and .npy buffers are copied back (small; an encoder's buffer may belong to Node's pool, which cannot move)
      const maps = await renderMaps(p, request.maps, request.mapThreshold);
      const mapsMs = performance.now() - t0;
      const image: LoadedImage = p.image;
      return {
        served: {
          score: p.score,
          ...(p.label === undefined ? {} : { label: p.label, threshold: p.threshold }),
          templates: p.templates,
          width: image.originalWidth,
          height: image.originalHeight,
          timings: { ...p.timings, maps: mapsMs },
          maps,
        },
      };
    }
    case 'features': {
      const backbone = await ready;
      const t0 = performance.now();
      const image = await loadImage(Buffer.from(request.source.buffer, request.source.byteOffset, request.source.byteLength), {
        size: backbone.identity.inputSize,
        maxPixels: request.maxPixels,
      });
      const t1 = performance.now();
      const features = await backbone.extract(image);
      const t2 = performance.now();
      return transferring({ features: { features, decodeMs: t1 - t0, backboneMs: t2 - t1 } }, ownBuffers(features));
    }
  }
}

// one request at a time, in order (the pool sends the next image before this one is done)
answerRequests<PipelineRequest, PipelineReply>(handle, { serial: true });
