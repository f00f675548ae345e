/** The worker's side of its compute thread (./compute-thread.ts): one promise per request. */
import type { DetectorOptions } from '../detector/detector.js';
import type { LineDescription } from '../fit/line-state.js';
import type { StoreChain } from '../store/template-store.js';
import { WorkerThread } from '../threads/index.js';
import type { ListNormalsJobResult, MapName, MapsOption, PredictionFigures } from './protocol.js';

type Op =
  | { op: 'init'; detector: Pick<DetectorOptions, 'model' | 'backend' | 'threads' | 'matchPrecision' | 'precision'> }
  | { op: 'load'; line: string; path: string }
  | { op: 'refresh'; line: string }
  | { op: 'setMeta'; line: string; meta: Record<string, unknown> }
  | { op: 'setThreshold'; line: string; value: number; purpose: string }
  | { op: 'predict'; line: string; image: Uint8Array; maps: MapsOption; maxPixels?: number }
  | { op: 'append'; line: string; images: Uint8Array[]; names: readonly string[]; append: AppendIdentity; purpose: string }
  | { op: 'remove'; line: string; ids: readonly string[]; update: string; fence: number; purpose: string }
  | { op: 'normals'; line: string }
  | { op: 'dispose' };

export type ComputeRequest = Op;

/** A line as /v1/lines/{line} shows it, less name and version (which the cluster owns). */
export type { LineDescription };

/** What makes a hot update idempotent and fenced (TemplateStore.appendToFile's item ids, update and fence). */
export interface AppendIdentity {
  readonly ids: readonly string[];
  readonly update: string;
  readonly fence: number;
  readonly maxPixels?: number;
}

/** A line's copy after an operation: templates, store version (templates + revision), description, place in its lineage, fencing token. */
export interface Versioned {
  readonly count: number;
  readonly version: number;
  readonly info: LineDescription;
  readonly chain: StoreChain;
  readonly fence: number;
}

export interface ComputedPrediction extends PredictionFigures {
  readonly maps: Partial<Record<MapName, Uint8Array>>;
}

export class ComputeThread {
  readonly #thread = new WorkerThread<ComputeRequest, unknown>(new URL('./compute-thread.js', import.meta.url), {
    name: 'the compute thread',
    onnxruntime: true,
  });

  #call<T>(op: Op, transfer: ArrayBuffer[] = []): Promise<T> {
    return this.#thread.call(op, transfer) as Promise<T>;
  }

  init(detector: Pick<DetectorOptions, 'model' | 'backend' | 'threads' | 'matchPrecision' | 'precision'>): Promise<unknown> {
    return this.#call({ op: 'init', detector });
  }
  /** Loads (or reloads) a line's store file; its template count and metadata. */
  load(line: string, path: string): Promise<Versioned> {
    return this.#call({ op: 'load', line, path });
  }
  /** Reads the records other writers appended to the line's file since it was last read. */
  refresh(line: string): Promise<Versioned> {
    return this.#call({ op: 'refresh', line });
  }
  setMeta(line: string, meta: Record<string, unknown>): Promise<Versioned> {
    return this.#call({ op: 'setMeta', line, meta });
  }
  /** Sets the line's threshold and rewrites its store file (under the file lock) with one more revision. */
  setThreshold(line: string, value: number, purpose: string): Promise<Versioned & { meta: Record<string, unknown> }> {
    return this.#call({ op: 'setThreshold', line, value, purpose });
  }
  predict(line: string, image: Buffer, maps: MapsOption, maxPixels?: number): Promise<ComputedPrediction> {
    const copy = new Uint8Array(image); // transferred, so the caller's buffer stays usable
    return this.#call({ op: 'predict', line, image: copy, maps, ...(maxPixels === undefined ? {} : { maxPixels }) }, [copy.buffer as ArrayBuffer]);
  }
  /** Embeds the images and appends those whose id the store does not hold to the line's store file, as one durable record. */
  append(line: string, images: readonly Buffer[], names: readonly string[], append: AppendIdentity, purpose: string): Promise<Versioned & { merged: number; appended: number; duplicates: number }> {
    const copies = images.map((b) => new Uint8Array(b));
    return this.#call({ op: 'append', line, images: copies, names, append, purpose }, copies.map((c) => c.buffer as ArrayBuffer));
  }
  /** Removes normals by id from the line's store file, durably (one removal record); ids removed before change nothing. */
  remove(line: string, ids: readonly string[], identity: { update: string; fence: number }, purpose: string): Promise<Versioned & { removed: string[]; alreadyRemoved: string[] }> {
    return this.#call({ op: 'remove', line, ids, ...identity, purpose });
  }
  /** The line's normals as this thread's copy holds them. */
  normals(line: string): Promise<Versioned & { removed: number; normals: ListNormalsJobResult['normals'] }> {
    return this.#call({ op: 'normals', line });
  }
  async close(): Promise<void> {
    await this.#call({ op: 'dispose' }).catch(() => undefined);
    await this.#thread.close();
  }
}
