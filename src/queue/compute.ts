/** The worker's side of its compute thread (./compute-thread.ts): one promise per request. */
import { Worker } from 'node:worker_threads';
import { disableOnnxruntimeTelemetry } from '../config.js';
import type { DetectorOptions } from '../detector/detector.js';
import type { LineDescription } from '../fit/line-state.js';
import { HetmmError, type HetmmErrorCode } from '../errors.js';
import type { MapName, MapsOption, PredictionFigures } from './protocol.js';

type Op =
  | { op: 'init'; detector: Pick<DetectorOptions, 'model' | 'backend' | 'threads' | 'matchPrecision' | 'precision'> }
  | { op: 'load'; line: string; path: string }
  | { op: 'refresh'; line: string }
  | { op: 'setMeta'; line: string; meta: Record<string, unknown> }
  | { op: 'setThreshold'; line: string; value: number; purpose: string }
  | { op: 'predict'; line: string; image: Uint8Array; maps: MapsOption }
  | { op: 'append'; line: string; images: Uint8Array[]; names: readonly string[]; purpose: string }
  | { op: 'dispose' };

export type ComputeRequest = Op & { id: number };
export interface ComputeReply {
  readonly id: number;
  readonly value?: unknown;
  readonly error?: { readonly code?: string; readonly message: string };
}

/** A line as /v1/lines/{line} shows it, less name and version (which the cluster owns). */
export type { LineDescription };

/** A line's copy after an operation: templates, store version (templates + revision), description. */
export interface Versioned {
  readonly count: number;
  readonly version: number;
  readonly info: LineDescription;
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
  predict(line: string, image: Buffer, maps: MapsOption): Promise<ComputedPrediction> {
    const copy = new Uint8Array(image); // transferred, so the caller's buffer stays usable
    return this.#call({ op: 'predict', line, image: copy, maps }, [copy.buffer as ArrayBuffer]);
  }
  /** Embeds the images and appends them to the line's store file as one durable record. */
  append(line: string, images: readonly Buffer[], names: readonly string[], purpose: string): Promise<Versioned & { merged: number }> {
    const copies = images.map((b) => new Uint8Array(b));
    return this.#call({ op: 'append', line, images: copies, names, purpose }, copies.map((c) => c.buffer as ArrayBuffer));
  }
  async close(): Promise<void> {
    await this.#call({ op: 'dispose' }).catch(() => undefined);
    await this.#thread.terminate();
  }
}
