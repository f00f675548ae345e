/**
 * What a serving process (the in-process server, a queue worker) says about
 * a line and how it records a change made by hand, shared by both so the
 * queue never imports the server: the store version, the line description,
 * the rendered maps of a prediction and the record of a threshold set over
 * HTTP.
 *
 * Version = templates + 2 x removed normals + meta.revision (each removed
 * normal was one append and is one removal; revision counts the changes that
 * are neither, such as thresholds): it grows with every change, is the same
 * in every process that reads the file, and needs nothing written besides
 * the change itself.
 */
import type { Detector } from '../detector/detector.js';
import { HetmmError } from '../errors.js';
import { int8BackboneName } from '../detector/store-backbone.js';
import { calibratedHeatmapRange, storedThreshold, type StoredThreshold } from '../detector/threshold.js';
import type { StoreNormal, TemplateStore } from '../store/index.js';

export type { MapsOption, PredictionMaps } from '../detector/maps.js';
export { renderMaps } from '../detector/maps.js';

/** A line as /v1/lines/{line} shows it, less its name and version. */
export interface LineDescription {
  readonly templates: number;
  readonly preset: string;
  readonly threshold?: { readonly value: number; readonly method: string; readonly preset: string };
  /** the heat-map colour scale [median normal pixel, threshold] when calibrated */
  readonly heatmapRange?: readonly [number, number];
  readonly dtype: string;
  readonly bytesOnDisk: number;
  readonly backbone: string;
  readonly backend: string;
  /** 'int8': the store was fitted int8 end to end and runs its int8 backbone; 'float' otherwise */
  readonly precision: 'float' | 'int8';
  /** the matching precision in use */
  readonly matching: 'float' | 'int8';
}

/** Changes to the store that are not appends (meta.revision; 0 when never changed). */
export function revisionOf(store: TemplateStore): number {
  const v = store.meta.revision;
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : 0;
}

/** The store's version: templates + 2 x removed normals + revision (see the top of this file). */
export function storeVersion(store: TemplateStore): number {
  return store.count + 2 * store.removedCount + revisionOf(store);
}

/** A line's normals as GET /v1/lines/{line}/normals lists them (less name and version): both serving processes' answer. */
export function normalsOf(store: TemplateStore): { templates: number; removed: number; normals: StoreNormal[] } {
  return { templates: store.count, removed: store.removedCount, normals: store.normals() };
}

/** A line's description from its detector, `templates` of its published snapshot and threshold `t`. */
export function describeLine(detector: Detector, templates: number, t: StoredThreshold | undefined): LineDescription {
  const d = detector.store.describe();
  const range = calibratedHeatmapRange(t);
  return {
    templates,
    preset: detector.preset.name,
    ...(t === undefined ? {} : { threshold: { value: t.value, method: t.method, preset: t.preset } }),
    ...(range === undefined ? {} : { heatmapRange: range }),
    dtype: d.dtype,
    bytesOnDisk: d.bytesOnDisk,
    backbone: d.backbone.name,
    backend: detector.backend.name,
    precision: int8BackboneName(detector.store.meta) === undefined ? 'float' : 'int8',
    matching: detector.backend.precision ?? 'float',
  };
}

/**
 * A threshold set by hand (over HTTP) on `detector`'s line: it records the
 * one it replaces and keeps the calibrated colour scale's low end (0 when
 * the store was never calibrated). Returns the store meta to write: one
 * more revision (a change that is not an append).
 */
/**
 * A hand-set threshold, checked once for every door (both executors, the
 * queue worker): a score is above 0, so 0 (an empty box sent as a number),
 * a negative or a non-finite value is E_ARGUMENT.
 */
export function checkThresholdValue(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || !(value > 0)) {
    throw new HetmmError('E_ARGUMENT', `Expected the threshold as a finite number above 0 but received ${JSON.stringify(value)}`);
  }
  return value;
}

export function metaWithThreshold(detector: Detector, value: number): Record<string, unknown> {
  const store = detector.store;
  const old = storedThreshold(store.meta, detector.preset.name);
  const threshold: StoredThreshold = {
    value,
    method: `set over HTTP${old === undefined ? '' : ` (was ${old.value.toPrecision(6)}, ${old.method})`}`,
    preset: detector.preset.name,
    pixelMedian: old?.pixelMedian ?? 0,
    scores: old?.scores ?? [],
  };
  return { ...store.meta, threshold, revision: revisionOf(store) + 1 };
}
