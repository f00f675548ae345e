/**
 * The seam between the HTTP layer and whatever runs inspections.
 *
 * Every prediction and every store change the routes make goes through an
 * InspectionExecutor. The in-process one (./in-process-executor.ts) holds one
 * Detector per line; a queue executor (BullMQ/Redis, its own issue) can run
 * the same calls on workers without touching the routes. Keep this file
 * free of fastify and of the Detector: it is a contract, not an
 * implementation.
 *
 * Versions: every line has a store version, an integer that grows by one
 * with every durable change (normals added, threshold set). A prediction
 * reports the one version it was computed against (templates, threshold
 * and version are read at one instant), and a change is answered only once
 * the store on disk holds it.
 */

import type { LineDescription, MapsOption, PredictionMaps } from '../fit/line-state.js';
import type { StoreNormal } from '../store/index.js';

export type { MapsOption, PredictionMaps };

export const MAPS_OPTIONS: readonly MapsOption[] = ['none', 'png', 'npy'];

export interface ImageUpload {
  /** the encoded image file (PNG, JPEG, ...) exactly as received */
  readonly bytes: Buffer;
  /** a display name (upload file name, else 'upload-<sha256 prefix>'); never used as a path */
  readonly name: string;
  /** a stable id for a hot update (`image:<sha256>` for a prediction marked as normal): an image the store holds by id is not added again */
  readonly id?: string;
}

/** What makes a hot update idempotent: the client's key (the Idempotency-Key header), hashed. */
export interface HotUpdateOptions {
  readonly signal?: AbortSignal;
  /** the same key again changes nothing and says so (duplicates) */
  readonly key?: string;
}

/** A line the server knows of but cannot serve, and why. */
export interface BrokenLine {
  readonly line: string;
  /** 'failed': its store does not load; 'refused': it loads but is not the cluster's (queue mode) */
  readonly state: 'failed' | 'refused';
  readonly reason: string;
  /** queue mode: the worker that reported it */
  readonly worker?: string;
}

export interface PredictRequest {
  readonly line: string;
  /** the HTTP layer's prediction id, echoed in the verdict event (for "mark as normal") */
  readonly id?: string;
  readonly image: ImageUpload;
  readonly maps: MapsOption;
  /**
   * Compute against a store of at least this version (read-your-writes
   * after a hot update, for executors whose workers may lag). The
   * in-process executor is always current, so it only checks the version
   * exists.
   */
  readonly minVersion?: number;
  /** aborts waiting in the queue (and the work between stages); the request timeout and client disconnects fire it */
  readonly signal?: AbortSignal;
}

export interface StageTimings {
  /** waiting for a slot in the line's queue */
  readonly queue: number;
  readonly decode: number;
  readonly backbone: number;
  readonly match: number;
  readonly score: number;
  /** rendering the requested maps */
  readonly maps: number;
}

export interface PredictOutcome {
  readonly line: string;
  readonly score: number;
  /** present when the line's store holds a threshold for its preset */
  readonly label?: 'ok' | 'defect';
  readonly threshold?: number;
  /** templates matched against */
  readonly templates: number;
  /** the store version the prediction was computed against */
  readonly version: number;
  readonly width: number;
  readonly height: number;
  /** milliseconds per stage */
  readonly timings: StageTimings;
  readonly maps: PredictionMaps;
}

export interface HotUpdateOutcome {
  readonly line: string;
  readonly added: number;
  /** images the store already held by id (a repeated update, a retry): not added again */
  readonly duplicates: number;
  /** queue mode: the answer of the earlier job with the same Idempotency-Key (it finished); this call changed nothing */
  readonly repeated?: boolean;
  /** template count after the update */
  readonly templates: number;
  /** store version after the update (durable: the file on disk holds it) */
  readonly version: number;
  /** per image, the id of the normal it is held as (DELETE /v1/lines/{line}/normals/{id} undoes it) */
  readonly ids?: readonly string[];
}

/** One normal of a line: id, position, file name, base or appended, when (the store's TemplateStore.normals()). */
export type NormalInfo = StoreNormal;

export interface NormalsList {
  readonly line: string;
  readonly version: number;
  readonly templates: number;
  /** normals removed so far */
  readonly removed: number;
  readonly normals: readonly NormalInfo[];
}

export interface RemoveNormalsOutcome {
  readonly line: string;
  /** ids removed by this call */
  readonly removed: readonly string[];
  /** ids removed before (a repeated removal): nothing changed for them */
  readonly alreadyRemoved: readonly string[];
  readonly templates: number;
  /** store version after the removal (durable: the file on disk holds it) */
  readonly version: number;
}

/** A line as /v1/lines/{line} shows it (the description both executors give, ../fit/line-state.ts). */
export interface LineInfo extends LineDescription {
  readonly name: string;
  readonly version: number;
}

export interface FitOptions {
  /** preset name; default 'default' */
  readonly preset?: string;
  /** cap on leave-one-out calibration samples (0: no threshold); default hetmm fit's (1000: all normals up to it) */
  readonly calibrate?: number;
  readonly dtype?: 'float32' | 'float16';
  /**
   * 'int8' (the default, as hetmm fit): quantise the backbone on the
   * uploads into `<line>.int8.onnx` beside the store, fit and calibrate with
   * it; 'float': the float model. A server run with precision 'float' fits float.
   */
  readonly precision?: 'float' | 'int8';
}

export interface FitProgress {
  readonly stage: 'quantize' | 'features' | 'calibrate' | 'save';
  readonly done: number;
  readonly total: number;
}

/** What the executor tells subscribers (the SSE feed, metrics). */
export type ExecutorEvent =
  | {
      readonly type: 'verdict';
      readonly line: string;
      /** the request's id (PredictRequest.id) */
      readonly id?: string;
      readonly name: string;
      readonly score: number;
      readonly label?: 'ok' | 'defect';
      readonly threshold?: number;
      readonly templates: number;
      readonly version: number;
      readonly at: string;
    }
  | {
      readonly type: 'store';
      readonly line: string;
      readonly change: 'normals' | 'threshold' | 'created' | 'deleted';
      readonly templates: number;
      readonly version: number;
      readonly threshold?: number;
      readonly at: string;
    };

export interface LineLoad {
  readonly line: string;
  /** predictions waiting for a slot */
  readonly queued: number;
  /** predictions being computed */
  readonly running: number;
  readonly queueLimit: number;
  /** seconds until a slot is likely free (the Retry-After of a 429) */
  readonly retryAfter?: number;
}

export interface InspectionExecutor {
  /** 'in-process', 'queue', ... (shown by /readyz and /metrics) */
  readonly kind: string;
  /** true when every line is loaded and the backend works */
  ready(): boolean;
  lineNames(): string[];
  /** throws E_NOT_FOUND (ServerError) for an unknown line */
  lineInfo(line: string): LineInfo;
  /** throws E_BUSY (429) when the line's queue is full, E_TIMEOUT when the signal aborts it */
  predict(request: PredictRequest): Promise<PredictOutcome>;
  /** hot update; all images are decoded first: one bad image adds nothing */
  addNormals(line: string, images: readonly ImageUpload[], options?: HotUpdateOptions): Promise<HotUpdateOutcome>;
  setThreshold(line: string, value: number): Promise<LineInfo>;
  /** the line's normals with their ids */
  listNormals(line: string): Promise<NormalsList>;
  /**
   * undo of hot updates: removes normals by id, durable before the answer;
   * an id removed before changes nothing (alreadyRemoved); an unknown id is
   * E_NOT_FOUND and removes nothing; removing every normal is E_ARGUMENT
   */
  removeNormals(line: string, ids: readonly string[], options?: HotUpdateOptions): Promise<RemoveNormalsOutcome>;
  /** fits a new line from normal images (the HTTP layer runs it as a job) */
  createLine(line: string, images: readonly ImageUpload[], options: FitOptions, onProgress?: (p: FitProgress) => void): Promise<LineInfo>;
  deleteLine(line: string): Promise<void>;
  /** returns the unsubscribe function */
  subscribe(listener: (event: ExecutorEvent) => void): () => void;
  load(): LineLoad[];
  /** refuses new work, finishes accepted work, flushes stores */
  close(): Promise<void>;
  /** lines that cannot be served, with the reason (a corrupt store, a store the cluster refuses) */
  brokenLines?(): BrokenLine[];
  /** why ready() is false, in words (queue mode: Redis down, a line no worker can serve) */
  notReadyReason?(): string;
  /** extra Prometheus text for /metrics (queue mode: queue depth, per-worker store versions) */
  metricsText?(): Promise<string>;
  /** enqueue a prediction and answer its job id at once (`?async=1`; queue mode) */
  submitPredict?(request: PredictRequest): Promise<string>;
  /** a submitted job's state and, once finished, its result (GET /v1/jobs/{id}); E_NOT_FOUND when unknown */
  jobStatus?(id: string): Promise<Record<string, unknown>>;
}

