/**
 * The compute thread of a queue worker: holds the backbone, the kernels and
 * every line's template store, and runs predictions, feature extraction and
 * store reads/appends. onnxruntime-node runs the backbone synchronously on
 * its caller's thread (measured: the whole 0.1-1.4 s of a forward pass), so
 * this work lives here and the worker's main thread stays free for Redis
 * and BullMQ's lock renewal. Driven by ./compute.ts.
 */
import { Detector, type DetectorOptions } from '../detector/detector.js';
import { storedThreshold, type StoredThreshold } from '../detector/threshold.js';
import { HetmmError } from '../errors.js';
import { storeBackboneFiles } from '../detector/store-backbone.js';
import { openStoreDetector } from '../detector/store-detector.js';
import { describeLine, renderMaps, storeVersion } from '../server/in-process-executor.js';
import { loadImage, type LoadedImage } from '../image/index.js';
import { TemplateStore } from '../store/index.js';
import { answerRequests } from '../threads/index.js';
import type { ComputeRequest, LineDescription } from './compute.js';

let engine: Detector | undefined;
let engineOptions: DetectorOptions = {};
/** `own`: the line's detector has its own backbone (an int8 store's), disposed with the line */
const lines = new Map<string, { detector: Detector; path: string; own: boolean }>();

function line(name: string): { detector: Detector; path: string; own: boolean } {
  const l = lines.get(name);
  if (l === undefined) throw new HetmmError('E_INTERNAL', `line ${name} is not loaded in the compute thread`);
  return l;
}

/** What /v1/lines/{line} shows about a line, from this thread's copy of its store. */
function describe(detector: Detector): LineDescription {
  return describeLine(detector, detector.store.count, storedThreshold(detector.store.meta, detector.preset.name));
}

/** The reply of every operation that changes or reads a line's store: its count, version, description, chain and fencing token. */
function versioned(detector: Detector): { count: number; version: number; info: LineDescription; chain: unknown; fence: number } {
  const store = detector.store;
  return { count: store.count, version: storeVersion(store), info: describe(detector), chain: store.chain(), fence: store.fence };
}

/** Decodes an image under the job's pixel limit (the API node's --max-pixels; else the detector's own, the library default). */
function decode(detector: Detector, bytes: Uint8Array, maxPixels: number | undefined): Promise<LoadedImage> | Buffer {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (maxPixels === undefined) return buffer;
  return loadImage(buffer, { size: detector.backbone.identity.inputSize, maxPixels });
}

async function handle(request: ComputeRequest): Promise<unknown> {
  switch (request.op) {
    case 'init':
      engineOptions = { ...(request.detector as DetectorOptions) };
      engine = await Detector.open(engineOptions);
      return { layers: engine.backbone.identity.layers.length };
    case 'load': {
      // A store fitted int8 end to end (the default of hetmm fit) runs its own int8 backbone, beside the file
      // (features of jobs and hot updates alike); float stores share the engine's.
      const store = await TemplateStore.load(request.path);
      const int8 = engineOptions.precision !== 'float' ? storeBackboneFiles(request.path, store.meta) : undefined;
      const existing = lines.get(request.line);
      if (existing !== undefined && (int8 !== undefined || existing.own) && existing.detector.backbone.identity.modelSha256 !== store.identity.modelSha256) {
        // the file was refitted with another backbone: a new detector for it
        lines.delete(request.line);
        if (existing.own) existing.detector.dispose();
      }
      const current = lines.get(request.line);
      if (current !== undefined) current.detector.setStore(store);
      else if (int8 === undefined) lines.set(request.line, { detector: engine!.withStore(store), path: request.path, own: false });
      else lines.set(request.line, { detector: await openStoreDetector(request.path, engineOptions, store), path: request.path, own: true });
      return versioned(line(request.line).detector);
    }
    case 'refresh': {
      const l = line(request.line);
      await l.detector.store.refresh(l.path);
      return versioned(l.detector);
    }
    case 'setMeta': {
      const l = line(request.line);
      l.detector.store.meta = { ...request.meta };
      return versioned(l.detector);
    }
    case 'setThreshold': {
      // the in-process server's rule: keep the calibrated colour scale, record what it replaced
      const l = line(request.line);
      const store = l.detector.store;
      const old = storedThreshold(store.meta, l.detector.preset.name);
      const threshold: StoredThreshold = {
        value: request.value,
        method: `set over HTTP${old === undefined ? '' : ` (was ${old.value.toPrecision(6)}, ${old.method})`}`,
        preset: l.detector.preset.name,
        pixelMedian: old?.pixelMedian ?? 0,
        scores: old?.scores ?? [],
      };
      const before = store.meta;
      // a change that is not an append: one more revision (version = templates + revision)
      store.meta = { ...store.meta, threshold, revision: storeVersion(store) - store.count + 1 };
      try {
        await store.save(l.path, { lock: { purpose: request.purpose } });
      } catch (e) {
        store.meta = before;
        throw e;
      }
      return { ...versioned(l.detector), meta: store.meta };
    }
    case 'predict': {
      const l = line(request.line);
      // One instant: the snapshot and the threshold agree (the version is the worker's, read before).
      const threshold = storedThreshold(l.detector.store.meta, l.detector.preset.name);
      const snapshot = l.detector.store.snapshot();
      const version = snapshot.count + storeVersion(l.detector.store) - l.detector.store.count;
      const pinned = { snapshot, threshold: threshold?.value };
      const p = await l.detector.predict(await decode(l.detector, request.image, request.maxPixels), pinned);
      const t0 = performance.now();
      const maps = await renderMaps(p, request.maps, threshold);
      return {
        score: p.score,
        ...(p.label === undefined ? {} : { label: p.label, threshold: p.threshold }),
        templates: p.templates,
        version,
        height: p.image.originalHeight,
        width: p.image.originalWidth,
        timings: { ...p.timings, maps: performance.now() - t0 },
        maps,
      };
    }
    case 'append': {
      const l = line(request.line);
      const items = [];
      // every image is decoded and embedded before anything is written: one bad image adds nothing
      const { ids, update, fence, maxPixels } = request.append;
      for (let i = 0; i < request.images.length; i++) {
        const { features } = await l.detector.features(await decode(l.detector, request.images[i]!, maxPixels));
        items.push({ features, file: request.names[i] ?? `<normal ${i}>`, ...(ids[i] === undefined ? {} : { id: ids[i] }) });
      }
      const r = await l.detector.store.appendToFile(l.path, items, { lock: { purpose: request.purpose }, update, fence });
      return { ...versioned(l.detector), merged: r.merged, appended: r.appended, duplicates: r.duplicates };
    }
    case 'dispose':
      for (const l of lines.values()) if (l.own) l.detector.dispose();
      lines.clear();
      engine?.dispose();
      engine = undefined;
      return {};
  }
}

answerRequests(handle);
