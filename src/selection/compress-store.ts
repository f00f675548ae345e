/**
 * PTS over a whole template store: the library call behind `hetmm compress`
 * and `hetmm fit --pts`. Produces a new store with the same backbone identity
 * and dtype whose K "images" are the PTS sheets (docs/PTS.md).
 */
import os from 'node:os';
import { HetmmError } from '../errors.js';
import { getBackend, type BackendPreference } from '../kernels/index.js';
import { TemplateStore, type EmbeddedModel } from '../store/index.js';
import { templateFeatures } from '../store/feature-stack.js';
import { ptsMinSamples, selectTemplates, type SelectOptions } from './pts.js';

/**
 * Which kernel backend computes the PTS Gram product: 'auto' (HETMM_BACKEND
 * applies) or a registered name. 'fast' = the native addon (float32,
 * refined); a backend without the pixelGram capability, such as 'reference',
 * leaves it to TypeScript in float64.
 */
export type PtsGramChoice = BackendPreference;

export interface CompressOptions {
  /** default 'auto': the registry's choice (the native kernel when it loads, else the reference with one warning) */
  readonly gram?: PtsGramChoice;
  /** worker threads for OPTICS (and the reference Gram); default: all cores */
  readonly workers?: number;
  /** pixels done / total over all layers */
  readonly onProgress?: (done: number, total: number) => void;
  /** per Gram buffer, see SelectOptions.gramBlockBytes */
  readonly gramBlockBytes?: number;
  /** the model to embed in the compressed store (default: the source's; an older store's sidecar model, read by the caller) */
  readonly model?: EmbeddedModel;
}

/** What meta.pts of a compressed store records. */
export interface PtsMeta {
  /** K requested (the store then holds min(K, N) sheets) */
  readonly sheets: number;
  /** N, the templates it was compressed from */
  readonly fromImages: number;
  /** OPTICS min_samples used (N // K, clamped to >= 2); null when all N were kept */
  readonly minSamples: number | null;
  /** wall time of the selection */
  readonly seconds: number;
  /** the Gram kernel used: a backend name ('fast'), 'reference' (TypeScript) or 'none' (all kept) */
  readonly gram: string;
  readonly notes: string[];
}

export interface CompressResult {
  readonly store: TemplateStore;
  readonly pts: PtsMeta;
  /** conditions worth telling the user (kept all, clamped min_samples, fallback to the reference) */
  readonly notes: string[];
}

/** File name of sheet `index` in a compressed store. */
export function sheetName(index: number): string {
  return `pts-sheet-${String(index).padStart(3, '0')}`;
}

/** The Gram product from the registry's backend when it has one (pixelGram), else PTS's TypeScript float64 Gram. */
async function chooseGram(choice: PtsGramChoice, notes: string[]): Promise<{ name: string; options: SelectOptions }> {
  // the Gram product is float32 whatever matching precision is configured
  const backend = await getBackend(choice, { precision: 'float' });
  if (backend.pixelGram === undefined) {
    if (choice !== 'reference') notes.push(`PTS: the "${backend.name}" kernel backend has no Gram kernel; using the slower TypeScript reference`);
    return { name: 'reference', options: {} };
  }
  const gram = backend.pixelGram.bind(backend);
  return { name: backend.name, options: { gramPrecision: 'float32', gram } };
}

/**
 * Compresses `source` to K PTS sheets per layer. The new store keeps the
 * source's identity, dtype, embedded model, preset and threshold (meta.preset,
 * meta.threshold: the threshold was calibrated on the full set, recalibrate
 * for the sheets) and records meta.pts.
 */
export async function compressStore(source: TemplateStore, k: number, options: CompressOptions = {}): Promise<CompressResult> {
  if (!Number.isInteger(k) || k < 1) throw new HetmmError('E_ARGUMENT', `Expected a positive integer for the PTS size K but received ${String(k)}`);
  const workers = options.workers ?? Math.max(1, os.availableParallelism());
  if (!Number.isInteger(workers) || workers < 1) {
    throw new HetmmError('E_ARGUMENT', `Expected a positive integer for workers but received ${String(workers)}`);
  }
  const snapshot = source.snapshot();
  const n = snapshot.count;
  if (n === 0) throw new HetmmError('E_ARGUMENT', 'the template store is empty: nothing to compress');
  const notes: string[] = [];
  const t0 = performance.now();
  const gram = n > k ? await chooseGram(options.gram ?? 'auto', notes) : { name: 'none' as const, options: {} };
  const selection = await selectTemplates(snapshot.layers, k, {
    ...gram.options,
    workers,
    onProgress: options.onProgress,
    gramBlockBytes: options.gramBlockBytes,
  });
  notes.push(...selection.notes);
  const seconds = (performance.now() - t0) / 1000;
  const pts: PtsMeta = {
    sheets: k,
    fromImages: n,
    minSamples: n > k ? ptsMinSamples(n, k).minSamples : null,
    seconds,
    gram: gram.name,
    notes: notes.slice(),
  };
  const meta: Record<string, unknown> = { pts };
  if (source.meta.preset !== undefined) meta.preset = source.meta.preset;
  if (source.meta.threshold !== undefined) meta.threshold = source.meta.threshold;
  // a store that embeds its int8 backbone: the sheets come from that model, so they carry it too (and say so, as fit's meta does)
  if (source.model !== undefined && source.meta.int8Backbone !== undefined) meta.int8Backbone = source.meta.int8Backbone;
  const model = options.model ?? source.model;
  const store = TemplateStore.create(source.identity, { dtype: source.dtype, meta, ...(model === undefined ? {} : { model }) });
  const sheets = selection.layers[0]!.shape[0];
  for (let s = 0; s < sheets; s++) {
    const features = templateFeatures(selection.layers, s);
    store.append(features, n > k ? sheetName(s) : (snapshot.files[s] ?? sheetName(s)));
  }
  return { store, pts, notes };
}
