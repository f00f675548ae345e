/**
 * Worker-thread side of ./pipelines.ts: one whole pipeline per thread,
 * one image at a time: decode, backbone (1 onnxruntime thread), matching on
 * this thread (matchSharedLayer), scoring.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { HetmmError } from '../errors.js';
import { loadImage } from '../image/index.js';
import type { MatchResult } from '../kernels/contract.js';
import { matchSharedLayer } from '../kernels/fast/index.js';
import { referenceBackend } from '../kernels/reference/index.js';
import { layerInputs, scoreResults, toPrediction } from './prediction.js';
import type { PipelineConfig, PipelineModel, PipelineReply, PipelineRequest } from './pipelines.js';
import { failureReply, loadThreadBackbone } from './thread-backbone.js';

const model = workerData as PipelineModel;
/** set by 'init' (the templates, shared, arrive after the model started loading) */
let config: PipelineConfig;
const ready = loadThreadBackbone({ model: model.model, ...(model.modelBytes === undefined ? {} : { modelBytes: model.modelBytes }), description: model.description, threads: 1 }).then((backbone) => {
  if (backbone.identity.modelSha256 !== model.modelSha256) {
    throw new HetmmError('E_MODEL_INVALID', `a pipeline thread loaded another model than the detector's (${model.model} changed on disk?)`);
  }
  return backbone;
});
ready.catch(() => undefined); // reported to 'init' and to every request

async function predict(file: string): Promise<PipelineReply['prediction']> {
  const backbone = await ready;
  const t0 = performance.now();
  const image = await loadImage(file, { size: backbone.identity.inputSize, maxPixels: config.maxPixels });
  const t1 = performance.now();
  const features = await backbone.extract(image);
  const t2 = performance.now();
  const layers = backbone.identity.layers;
  const results: MatchResult[] = [];
  for (let l = 0; l < layers.length; l++) {
    const { query, match } = layerInputs(backbone.identity, config.preset, features, l);
    const shared = config.layers[l]!;
    if (config.variant !== undefined) results.push(matchSharedLayer(shared, query, match, config.variant));
    else if (shared.kind === 'float') results.push(await referenceBackend.matchLayer(query, shared.stack, match));
    else throw new HetmmError('E_INTERNAL', 'int8 templates without the native backend');
  }
  const t3 = performance.now();
  const scored = scoreResults(backbone.identity, config.preset, results, image);
  const t4 = performance.now();
  return toPrediction(image, scored, config.threshold, config.templates, { decode: t1 - t0, backbone: t2 - t1, match: t3 - t2, score: t4 - t3 });
}

/** requests run one after the other (the pool sends the next image before this one is done) */
let previous: Promise<unknown> = Promise.resolve();

parentPort!.on('message', (request: PipelineRequest) => {
  if (request.op === 'init') config = request.config;
  const work = previous.then(() => (request.op === 'init' ? ready.then(() => undefined) : predict(request.file)));
  previous = work.catch(() => undefined);
  work.then(
    (prediction) => {
      const transfer = new Set<ArrayBuffer>();
      if (prediction !== undefined) {
        for (const a of [prediction.image.data, prediction.anomalyMap, prediction.pixelMap, prediction.proMap]) {
          if (a !== undefined && a.buffer instanceof ArrayBuffer) transfer.add(a.buffer);
        }
      }
      parentPort!.postMessage({ id: request.id, ok: true, ...(prediction === undefined ? {} : { prediction }) } satisfies PipelineReply, [...transfer]);
    },
    (e: unknown) => {
      parentPort!.postMessage(failureReply(request.id, e) satisfies PipelineReply);
    },
  );
});
