/**
 * Worker-thread side of ./pipelines.ts: one whole pipeline per thread,
 * one image at a time: decode, backbone (1 onnxruntime thread), matching on
 * this thread (the backend's matchSharedLayer), scoring.
 */
import { HetmmError } from '../errors.js';
import { loadImage } from '../image/index.js';
import type { KernelBackend, MatchResult } from '../kernels/contract.js';
import { getBackend, matchSharedLayerAt } from '../kernels/index.js';
import { selectNearest } from '../selection/nearest-templates.js';
import { answerRequests, threadData, transferring, type Transferring } from '../threads/index.js';
import { layerInputs, scoreResults, toPrediction } from './prediction.js';
import type { PipelineConfig, PipelineModel, PipelineReply, PipelineRequest } from './pipelines.js';
import { loadThreadBackbone } from './thread-backbone.js';

const model = threadData<PipelineModel>();
const ready = loadThreadBackbone({ model: model.model, ...(model.modelBytes === undefined ? {} : { modelBytes: model.modelBytes }), description: model.description, threads: 1 }).then((backbone) => {
  if (backbone.identity.modelSha256 !== model.modelSha256) {
    throw new HetmmError('E_MODEL_INVALID', `a pipeline thread loaded another model than the detector's (${model.model} changed on disk?)`);
  }
  return backbone;
});
ready.catch(() => undefined); // reported to 'init' and to every request

/** set by 'init' (the templates, shared, arrive after the model started loading) */
let config: PipelineConfig;
let backend: KernelBackend;

/** The backend that shared the layers, by name and precision, loaded on this thread. */
async function loadBackend(name: string, precision: PipelineConfig['precision']): Promise<KernelBackend> {
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

async function init(request: PipelineConfig): Promise<PipelineReply> {
  const backbone = await ready;
  backend = await loadBackend(request.backend, request.precision);
  if (backend.l2NormalisePixels !== undefined) backbone.usePixelNormaliser(backend.l2NormalisePixels);
  config = request;
  return {};
}

/** The templates the line's preselection matches these features against; undefined: all (exact ATMM). */
function chosenTemplates(features: readonly Float32Array[]): Int32Array | undefined {
  const selection = config.selection;
  if (selection === undefined || selection.settings.k >= config.templates) return undefined;
  const layer = config.layers[selection.settings.layer]!;
  const shape = layer.kind === 'int8' ? layer.shape : layer.stack.shape;
  return selectNearest(selection.settings, selection.descriptors, config.templates, shape, features);
}

async function predict(file: string): Promise<PipelineReply | Transferring<PipelineReply>> {
  const backbone = await ready;
  const t0 = performance.now();
  const image = await loadImage(file, { size: backbone.identity.inputSize, maxPixels: config.maxPixels });
  const t1 = performance.now();
  const features = await backbone.extract(image);
  const t2 = performance.now();
  const layers = backbone.identity.layers;
  const results: MatchResult[] = [];
  const chosen = chosenTemplates(features);
  for (let l = 0; l < layers.length; l++) {
    const { query, match } = layerInputs(backbone.identity, config.preset, features, l);
    const layer = config.layers[l]!;
    results.push(chosen === undefined ? backend.matchSharedLayer!(layer, query, match) : matchSharedLayerAt(backend, layer, query, chosen, match));
  }
  const t3 = performance.now();
  const scored = scoreResults(backbone.identity, config.preset, results, image);
  const t4 = performance.now();
  const prediction = toPrediction(image, scored, config.threshold, chosen?.length ?? config.templates, { decode: t1 - t0, backbone: t2 - t1, match: t3 - t2, score: t4 - t3 });
  const transfer = new Set<ArrayBuffer>();
  for (const a of [prediction.image.data, prediction.anomalyMap, prediction.pixelMap, prediction.proMap]) {
    if (a !== undefined && a.buffer instanceof ArrayBuffer) transfer.add(a.buffer);
  }
  return transferring({ prediction }, [...transfer]);
}

// one request at a time, in order (the pool sends the next image before this one is done)
answerRequests<PipelineRequest, PipelineReply>((request) => (request.op === 'init' ? init(request.config) : predict(request.file)), { serial: true });
