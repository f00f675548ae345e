/** The worker's side of its compute thread (./compute-thread.ts): one promise per request. */
import { Worker } from 'node:worker_threads';
import { disableOnnxruntimeTelemetry } from '../config.js';
import type { DetectorOptions } from '../detector/detector.js';
import type { LineInfo } from '../server/executor.js';
import { HetmmError, type HetmmErrorCode } from '../errors.js';
import type { StoreChain } from '../store/template-store.js';
import type { MapName, MapsOption, PredictionFigures } from './protocol.js';

type Op =
  | { op: 'init'; detector: Pick<DetectorOptions, 'model' | 'backend' | 'threads' | 'matchPrecision' | 'precision'> }
  | { op: 'load'; line: string; path: string }
  | { op: 'refresh'; line: string }
  | { op: 'setMeta'; line: string; meta: Record<string, unknown> }
  | { op: 'setThreshold'; line: string; value: number; purpose: string }
  | { op: 'predict'; line: string; image: Uint8Array; maps: MapsOption; maxPixels?: number }
  | { op: 'append'; line: string; images: Uint8Array[]; names: readonly string[]; append: AppendIdentity; purpose: string }
  | { op: 'dispose' };

export type ComputeRequest = Op & { id: number };
export interface ComputeReply {
  readonly id: number;
  readonly value?: unknown;
  readonly error?: { readonly code?: string; readonly message: string };
}

/** A line as /v1/lines/{line} shows it (LineInfo less name and version, which the cluster owns). */
export type LineDescription = Omit<LineInfo, 'name' | 'version'>;

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
  readonly #thread: Worker;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #next = 1;
  #dead: Error | undefined;

  constructor() {
    disableOnnxruntimeTelemetry(); // before a thread that loads onnxruntime (see config.ts)
    this.#thread = new Worker(new URL('./compute-thread.js', import.meta.url));
    this.#thread.on('message', (reply: ComputeReply) => {
      const p = this.#pending.get(reply.id);
      if (p === undefined) return;
      this.#pending.delete(reply.id);
      if (reply.error === undefined) p.resolve(reply.value);
      else p.reject(new HetmmError((reply.error.code ?? 'E_INTERNAL') as HetmmErrorCode, reply.error.message));
    });
    const fail = (e: Error): void => {
      this.#dead = e;
      for (const p of this.#pending.values()) p.reject(e);
      this.#pending.clear();
    };
    this.#thread.on('error', fail);
    this.#thread.on('exit', (code) => fail(new HetmmError('E_INTERNAL', `the compute thread exited (code ${code})`)));
  }

  #call<T>(op: Op, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.#dead !== undefined) return Promise.reject(this.#dead);
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#thread.postMessage({ ...op, id }, transfer);
    });
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
  async close(): Promise<void> {
    await this.#call({ op: 'dispose' }).catch(() => undefined);
    await this.#thread.terminate();
  }
}
