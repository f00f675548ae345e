/**
 * The compute thread of a queue worker: holds the backbone, the kernels and
 * every line's template store, and runs predictions, feature extraction and
 * store reads/appends. onnxruntime-node runs the backbone synchronously on
 * its caller's thread (measured: the whole 0.1-1.4 s of a forward pass), so
 * this work lives here and the worker's main thread stays free for Redis
 * and BullMQ's lock renewal. Driven by ./compute.ts.
 */
import { parentPort } from 'node:worker_threads';
import { Detector, type DetectorOptions, type Prediction } from '../detector/detector.js';
import { HetmmError, isHetmmError } from '../errors.js';
import { npyHeader } from '../image/index.js';
import { TemplateStore } from '../store/index.js';
import type { ComputeReply, ComputeRequest } from './compute.js';
import type { MapName, MapsOption } from './protocol.js';

let engine: Detector | undefined;
const lines = new Map<string, { detector: Detector; path: string }>();

function line(name: string): { detector: Detector; path: string } {
  const l = lines.get(name);
  if (l === undefined) throw new HetmmError('E_INTERNAL', `line ${name} is not loaded in the compute thread`);
  return l;
}

/** The maps a request asked for, rendered as the in-process server renders them. */
async function renderMaps(p: Prediction, maps: MapsOption): Promise<Partial<Record<MapName, Buffer>>> {
  if (maps === 'none') return {};
  if (maps === 'npy') {
    const data = Buffer.from(p.anomalyMap.buffer, p.anomalyMap.byteOffset, p.anomalyMap.byteLength);
    return { anomalyNpy: Buffer.concat([npyHeader([p.height, p.width]), data]) };
  }
  throw new HetmmError('E_ARGUMENT', 'maps=png is rendered by the server layer (not wired to queue mode yet): ask for npy or none');
}

async function handle(request: ComputeRequest): Promise<unknown> {
  switch (request.op) {
    case 'init':
      engine = await Detector.open({ ...(request.detector as DetectorOptions) });
      return { layers: engine.backbone.identity.layers.length };
    case 'load': {
      const store = await TemplateStore.load(request.path, { expect: engine!.backbone.identity });
      const existing = lines.get(request.line);
      if (existing === undefined) lines.set(request.line, { detector: engine!.withStore(store), path: request.path });
      else existing.detector.setStore(store);
      return { count: store.count, meta: store.meta };
    }
    case 'refresh': {
      const l = line(request.line);
      await l.detector.store.refresh(l.path);
      return { count: l.detector.store.count };
    }
    case 'setMeta': {
      line(request.line).detector.store.meta = { ...request.meta };
      return { count: line(request.line).detector.store.count };
    }
    case 'predict': {
      const p = await line(request.line).detector.predict(Buffer.from(request.image.buffer, request.image.byteOffset, request.image.byteLength));
      const maps = await renderMaps(p, request.maps);
      return {
        score: p.score,
        ...(p.label === undefined ? {} : { label: p.label, threshold: p.threshold }),
        templates: p.templates,
        height: p.height,
        width: p.width,
        timings: p.timings,
        maps,
      };
    }
    case 'append': {
      const l = line(request.line);
      const items = [];
      // every image is decoded and embedded before anything is written: one bad image adds nothing
      for (let i = 0; i < request.images.length; i++) {
        const image = request.images[i]!;
        const { features } = await l.detector.features(Buffer.from(image.buffer, image.byteOffset, image.byteLength));
        items.push({ features, file: request.names[i] ?? `<normal ${i}>` });
      }
      const before = l.detector.store.count;
      await l.detector.store.appendToFile(l.path, items, { lock: { purpose: request.purpose } });
      return { count: l.detector.store.count, merged: l.detector.store.count - before - items.length };
    }
    case 'dispose':
      engine?.dispose();
      engine = undefined;
      return {};
  }
}

parentPort!.on('message', (request: ComputeRequest) => {
  handle(request).then(
    (value) => parentPort!.postMessage({ id: request.id, value } satisfies ComputeReply),
    (e: unknown) =>
      parentPort!.postMessage({
        id: request.id,
        error: { code: isHetmmError(e) ? e.code : undefined, message: e instanceof Error ? e.message : String(e) },
      } satisfies ComputeReply),
  );
});
