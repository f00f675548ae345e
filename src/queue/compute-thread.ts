/**
 * The compute thread of a queue worker: holds the backbone, the kernels and
 * every line's template store, and runs predictions, feature extraction and
 * store reads/appends. onnxruntime-node runs the backbone synchronously on
 * its caller's thread (measured: the whole 0.1-1.4 s of a forward pass), so
 * this work lives here and the worker's main thread stays free for Redis
 * and BullMQ's lock renewal. Driven by ./compute.ts.
 */
import { Detector, type DetectorOptions } from '../detector/detector.js';
import { servedLineOptions } from '../detector/line.js';
import { storedThreshold } from '../detector/threshold.js';
import { HetmmError } from '../errors.js';
import { describeLine, metaWithThreshold, normalsOf, renderMaps, storeVersion } from '../fit/line-state.js';
import { watchStoreFile } from '../store/file-watch.js';
import { TemplateStore, type StoreAppendItem } from '../store/index.js';
import { loadImage, type LoadedImage } from '../image/index.js';
import { answerRequests } from '../threads/index.js';
import type { ComputeRequest, LineDescription } from './compute.js';

let engine: Detector | undefined;
let engineOptions: DetectorOptions = {};
interface LoadedLine {
  detector: Detector;
  readonly path: string;
  /** the line's detector has its own backbone (an int8 store's), disposed with the line */
  readonly own: boolean;
  /** serialises the changes to the line's store (loads, refreshes, appends, thresholds) */
  changes: Promise<unknown>;
  /** stops watching the file for other writers */
  unwatch: () => void;
}

const lines = new Map<string, LoadedLine>();

function line(name: string): LoadedLine {
  const l = lines.get(name);
  if (l === undefined) throw new HetmmError('E_INTERNAL', `line ${name} is not loaded in the compute thread`);
  return l;
}

/** Runs a change to a line's store after the ones before it. */
function change<T>(l: LoadedLine, apply: () => Promise<T>): Promise<T> {
  const result = l.changes.then(apply);
  l.changes = result.catch(() => undefined);
  return result;
}

/**
 * A line from its store file: a store fitted int8 end to end (the default
 * of hetmm fit) runs its own int8 backbone, beside the file (the line
 * service's rule, src/detector/line.ts); float stores share the engine's.
 * Other writers' appends to the file (`hetmm add`) are read as they land
 * (src/store/file-watch.ts), serialised with this thread's own changes.
 */
async function openLine(name: string, path: string): Promise<LoadedLine> {
  const served = await servedLineOptions(path, engineOptions);
  const own = served.int8;
  const detector = own ? await Detector.open(served.options) : engine!.withStore(await TemplateStore.load(path, { expect: engine!.backbone.identity }));
  const l: LoadedLine = { detector, path, own, changes: Promise.resolve(), unwatch: () => {} };
  l.unwatch = watchStoreFile(
    path,
    () => change(l, async () => void (await l.detector.store.refresh(l.path))),
    (e) => process.emitWarning(`line ${name}: cannot read other writers' changes to ${path}: ${e instanceof Error ? e.message : String(e)}`),
  );
  return l;
}

function dropLine(name: string): void {
  const l = lines.get(name);
  if (l === undefined) return;
  lines.delete(name);
  l.unwatch();
  if (l.own) l.detector.dispose();
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
      const existing = lines.get(request.line);
      if (existing !== undefined) {
        const store = await change(existing, () => TemplateStore.load(request.path));
        // the same backbone: the new contents in place; refitted with another backbone: a new line
        if (store.identity.modelSha256 === existing.detector.backbone.identity.modelSha256) existing.detector.setStore(store, request.path);
        else dropLine(request.line);
      }
      if (!lines.has(request.line)) lines.set(request.line, await openLine(request.line, request.path));
      return versioned(line(request.line).detector);
    }
    case 'refresh': {
      const l = line(request.line);
      await change(l, () => l.detector.store.refresh(l.path));
      return versioned(l.detector);
    }
    case 'setMeta': {
      const l = line(request.line);
      await change(l, async () => {
        l.detector.store.meta = { ...request.meta };
      });
      return versioned(l.detector);
    }
    case 'setThreshold': {
      // the rule every serving process applies (../fit/line-state.ts)
      const l = line(request.line);
      const store = l.detector.store;
      await change(l, async () => {
        const before = store.meta;
        store.meta = metaWithThreshold(l.detector, request.value);
        try {
          await store.save(l.path, { lock: { purpose: request.purpose } });
        } catch (e) {
          store.meta = before;
          throw e;
        }
      });
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
      const items: StoreAppendItem[] = [];
      // every image is decoded and embedded before anything is written: one bad image adds nothing
      const { ids, update, fence, maxPixels } = request.append;
      for (let i = 0; i < request.images.length; i++) {
        const { features } = await l.detector.features(await decode(l.detector, request.images[i]!, maxPixels));
        items.push({ features, file: request.names[i] ?? `<normal ${i}>`, ...(ids[i] === undefined ? {} : { id: ids[i] }) });
      }
      const r = await change(l, () => l.detector.store.appendToFile(l.path, items, { lock: { purpose: request.purpose }, update, fence }));
      return { ...versioned(l.detector), merged: r.merged, appended: r.appended, duplicates: r.duplicates };
    }
    case 'remove': {
      const l = line(request.line);
      const r = await change(l, () => l.detector.store.removeFromFile(l.path, request.ids, { lock: { purpose: request.purpose }, update: request.update, fence: request.fence }));
      return { ...versioned(l.detector), removed: r.removed, alreadyRemoved: r.alreadyRemoved };
    }
    case 'normals': {
      const l = line(request.line);
      await l.changes;
      return { ...versioned(l.detector), ...normalsOf(l.detector.store) };
    }
    case 'dispose':
      for (const name of [...lines.keys()]) dropLine(name);
      engine?.dispose();
      engine = undefined;
      return {};
  }
}

answerRequests(handle);
