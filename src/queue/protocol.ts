/**
 * What travels through Redis: job payloads, job results and store-update
 * announcements, with the binary codecs of the bytes that travel beside
 * them in the blob store (large images, rendered result maps). Maps are
 * copied byte for byte, so a result read back is bit-identical to the
 * worker's.
 */
import { HetmmError } from '../errors.js';
import type { StoreNormal } from '../store/index.js';

/** An image inside the job (base64) or in the blob store. */
export type ImageRef = { readonly inline: string } | { readonly blob: string };

export interface PredictJobData {
  readonly kind: 'predict';
  readonly line: string;
  /** the line's store version when the job was enqueued: the worker must have at least this one */
  readonly minVersion: number;
  readonly image: ImageRef;
  /** the image's display name (upload name) */
  readonly name: string;
  /** the API node's prediction id, echoed in the verdict event */
  readonly requestId?: string;
  /** which maps to render into the blob store: none, PNG heat map (+ mask), or the raw anomaly map as .npy */
  readonly maps: MapsOption;
  /** the API node's decoder pixel limit (`serve --max-pixels`), applied by the worker */
  readonly maxPixels?: number;
}

export interface NormalsJobData {
  readonly kind: 'normals';
  readonly line: string;
  readonly images: readonly ImageRef[];
  readonly names: readonly string[];
  /** the update's id, recorded in the append record: the client's idempotency key (`key:...`), else `job:<job id>` */
  readonly update?: string;
  /** one id per image (`image:<sha256>` for a prediction marked as normal); default `<update>/<index>` */
  readonly ids?: readonly string[];
  readonly maxPixels?: number;
}

export interface ThresholdJobData {
  readonly kind: 'threshold';
  readonly line: string;
  readonly value: number;
}

/** Undo of hot updates: remove normals by id (issue 21), under the line's lock like a hot update. */
export interface RemoveJobData {
  readonly kind: 'remove';
  readonly line: string;
  readonly ids: readonly string[];
  /** the removal's id, recorded in its removal record (the client's idempotency key `key:...`, else `job:<job id>`) */
  readonly update?: string;
}

/** The line's normals, from a worker at least at `minVersion`. */
export interface ListNormalsJobData {
  readonly kind: 'list-normals';
  readonly line: string;
  readonly minVersion: number;
}

export type JobData = PredictJobData | NormalsJobData | ThresholdJobData | RemoveJobData | ListNormalsJobData;

export type MapsOption = 'none' | 'png' | 'npy';
export type MapName = 'heatmapPng' | 'maskPng' | 'anomalyNpy';

/** Maps rendered by the worker: one blob, the parts concatenated in this order. */
export interface MapsRef {
  readonly blob: string;
  readonly parts: ReadonlyArray<readonly [MapName, number]>;
}

/** What one prediction computed, as the compute thread answers it and a job result carries it. */
export interface PredictionFigures {
  readonly score: number;
  readonly label?: 'ok' | 'defect';
  readonly threshold?: number;
  readonly templates: number;
  /** the store version of the snapshot matched against (for a job: >= its minVersion) */
  readonly version: number;
  readonly height: number;
  readonly width: number;
  readonly timings: { readonly decode: number; readonly backbone: number; readonly match: number; readonly score: number; readonly maps: number };
}

export interface PredictJobResult extends PredictionFigures {
  readonly kind: 'predict';
  readonly worker: string;
  readonly maps?: MapsRef;
  readonly name: string;
  readonly requestId?: string;
  /** ms since the epoch: when the job was added, and when this attempt started */
  readonly enqueuedAt: number;
  readonly startedAt: number;
}

export interface ThresholdJobResult {
  readonly kind: 'threshold';
  readonly value: number;
  readonly templates: number;
  readonly version: number;
  readonly worker: string;
}

export interface NormalsJobResult {
  readonly kind: 'normals';
  readonly added: number;
  /** images the store already held (a repeated update): not added again */
  readonly duplicates: number;
  /** set by the client: this answer is the earlier job's of the same update id (a retry); this call changed nothing */
  readonly repeated?: boolean;
  readonly templates: number;
  readonly version: number;
  readonly worker: string;
  /** per image, the id of the normal it is held as */
  readonly ids?: readonly string[];
}

export interface RemoveJobResult {
  readonly kind: 'remove';
  readonly removed: readonly string[];
  readonly alreadyRemoved: readonly string[];
  readonly templates: number;
  readonly version: number;
  readonly worker: string;
  /** set by the client: the earlier job's answer for the same update id */
  readonly repeated?: boolean;
}

export interface ListNormalsJobResult {
  readonly kind: 'list-normals';
  readonly templates: number;
  readonly removed: number;
  readonly normals: readonly StoreNormal[];
  readonly version: number;
  readonly worker: string;
}

/** What a job answers, by kind. */
export type JobResult = PredictJobResult | NormalsJobResult | ThresholdJobResult | RemoveJobResult | ListNormalsJobResult;

/** One entry of a line's update stream. */
export interface StoreUpdate {
  readonly version: number;
  /** 'append': templates were appended to the store file; 'meta': the store's metadata (threshold) changed; 'reload': load the file again */
  readonly kind: 'append' | 'meta' | 'reload';
  /** the new metadata, for 'meta' */
  readonly meta?: Record<string, unknown>;
  readonly files: readonly string[];
  /** template count after the update */
  readonly templates: number;
}

export function updateToFields(u: StoreUpdate): string[] {
  return ['version', String(u.version), 'kind', u.kind, 'files', JSON.stringify(u.files), 'templates', String(u.templates), ...(u.meta === undefined ? [] : ['meta', JSON.stringify(u.meta)])];
}

export function updateFromFields(fields: readonly string[]): StoreUpdate {
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) m.set(fields[i]!, fields[i + 1]!);
  const version = Number(m.get('version'));
  const kind = m.get('kind');
  const templates = Number(m.get('templates'));
  if (!Number.isInteger(version) || (kind !== 'append' && kind !== 'meta' && kind !== 'reload') || !Number.isInteger(templates)) {
    throw new HetmmError('E_INTERNAL', `malformed store update entry: ${JSON.stringify(fields)}`);
  }
  const meta = m.get('meta');
  return { version, kind, files: JSON.parse(m.get('files') ?? '[]') as string[], templates, ...(meta === undefined ? {} : { meta: JSON.parse(meta) as Record<string, unknown> }) };
}

export function encodeMaps(maps: Partial<Record<MapName, Buffer>>, blob: string): { ref: MapsRef; data: Buffer[] } {
  const parts = (Object.entries(maps) as [MapName, Buffer | undefined][]).filter((e): e is [MapName, Buffer] => e[1] !== undefined);
  return { ref: { blob, parts: parts.map(([name, b]) => [name, b.length] as const) }, data: parts.map(([, b]) => b) };
}

export function decodeMaps(buffer: Buffer, ref: MapsRef): Partial<Record<MapName, Buffer>> {
  const expected = ref.parts.reduce((sum, [, n]) => sum + n, 0);
  if (buffer.length !== expected) throw new HetmmError('E_INTERNAL', `result maps blob ${ref.blob} has ${buffer.length} bytes, expected ${expected}`);
  const maps: Partial<Record<MapName, Buffer>> = {};
  let offset = 0;
  for (const [name, n] of ref.parts) {
    maps[name] = buffer.subarray(offset, offset + n);
    offset += n;
  }
  return maps;
}
