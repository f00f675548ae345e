/**
 * What travels through Redis: job payloads, job results and store-update
 * announcements, with the binary codecs of the bytes that travel beside
 * them in the blob store (result maps, template features). Float arrays
 * are copied byte for byte (little-endian float32), so a result read back
 * is bit-identical to the worker's.
 */
import { HetmmError } from '../errors.js';

/** An image inside the job (base64) or in the blob store. */
export type ImageRef = { readonly inline: string } | { readonly blob: string };

export interface PredictJobData {
  readonly kind: 'predict';
  readonly line: string;
  /** the line's store version when the job was enqueued: the worker must have at least this one */
  readonly minVersion: number;
  readonly image: ImageRef;
  /** shown as the prediction's `file` */
  readonly name: string;
  /** which maps to render into the blob store: none, PNG heat map (+ mask), or the raw anomaly map as .npy */
  readonly maps: MapsOption;
}

export interface NormalsJobData {
  readonly kind: 'normals';
  readonly line: string;
  readonly images: readonly ImageRef[];
  readonly names: readonly string[];
}

export type JobData = PredictJobData | NormalsJobData;

export type MapsOption = 'none' | 'png' | 'npy';
export type MapName = 'heatmapPng' | 'maskPng' | 'anomalyNpy';

/** Maps rendered by the worker: one blob, the parts concatenated in this order. */
export interface MapsRef {
  readonly blob: string;
  readonly parts: ReadonlyArray<readonly [MapName, number]>;
}

export interface PredictJobResult {
  readonly kind: 'predict';
  readonly score: number;
  readonly label?: 'ok' | 'defect';
  readonly threshold?: number;
  readonly templates: number;
  /** the store version the worker answered from (>= the job's minVersion) */
  readonly version: number;
  readonly height: number;
  readonly width: number;
  readonly timings: { readonly decode: number; readonly backbone: number; readonly match: number; readonly score: number };
  readonly worker: string;
  readonly maps?: MapsRef;
}

export interface NormalsJobResult {
  readonly kind: 'normals';
  readonly added: number;
  readonly templates: number;
  readonly version: number;
  readonly worker: string;
}

/** One entry of a line's update stream. */
export interface StoreUpdate {
  readonly version: number;
  /** 'append': apply the features in `blob`; 'reload': load the store file (it changed in a way appends cannot express) */
  readonly kind: 'append' | 'reload';
  readonly blob?: string;
  readonly files: readonly string[];
  /** template count after the update */
  readonly templates: number;
}

export function updateToFields(u: StoreUpdate): string[] {
  return ['version', String(u.version), 'kind', u.kind, 'blob', u.blob ?? '', 'files', JSON.stringify(u.files), 'templates', String(u.templates)];
}

export function updateFromFields(fields: readonly string[]): StoreUpdate {
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) m.set(fields[i]!, fields[i + 1]!);
  const version = Number(m.get('version'));
  const kind = m.get('kind');
  const templates = Number(m.get('templates'));
  if (!Number.isInteger(version) || (kind !== 'append' && kind !== 'reload') || !Number.isInteger(templates)) {
    throw new HetmmError('E_INTERNAL', `malformed store update entry: ${JSON.stringify(fields)}`);
  }
  const blob = m.get('blob');
  return { version, kind, ...(blob ? { blob } : {}), files: JSON.parse(m.get('files') ?? '[]') as string[], templates };
}

function bytesOf(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Copies little-endian float32 bytes into a fresh, aligned Float32Array. */
function floatsAt(buffer: Buffer, offset: number, count: number): Float32Array {
  const out = new Float32Array(count);
  Buffer.from(out.buffer).set(buffer.subarray(offset, offset + count * 4));
  return out;
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

/** Features of several images (each: one Float32Array per layer) as one blob. */
export function encodeFeatures(images: readonly (readonly Float32Array[])[]): Buffer[] {
  return images.flatMap((layers) => layers.map(bytesOf));
}

export function decodeFeatures(buffer: Buffer, layerSizes: readonly number[], count: number): Float32Array[][] {
  const perImage = layerSizes.reduce((a, b) => a + b, 0) * 4;
  if (buffer.length !== perImage * count) {
    throw new HetmmError('E_STORE_FORMAT', `template features blob has ${buffer.length} bytes, expected ${perImage * count} for ${count} images`);
  }
  const images: Float32Array[][] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const layers: Float32Array[] = [];
    for (const size of layerSizes) {
      layers.push(floatsAt(buffer, offset, size));
      offset += size * 4;
    }
    images.push(layers);
  }
  return images;
}
