/**
 * The producer side of queue mode (what an API node runs): enqueues
 * predictions and hot updates on the line's BullMQ queue, waits for results
 * (synchronously with a timeout, or later by job id), and reads the maps the
 * worker left in the blob store.
 *
 * Producers fail fast: with Redis away, every call rejects at once with
 * E_UNAVAILABLE (HTTP 503) and the next call after Redis returns succeeds;
 * nothing queues up in this process meanwhile.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { HetmmError, type HetmmErrorCode } from '../errors.js';
import type { BlobStore } from './blob-store.js';
import {
  decodeMaps,
  type ImageRef,
  type JobData,
  type MapName,
  type MapsOption,
  type NormalsJobData,
  type JobResult,
  type ListNormalsJobResult,
  type NormalsJobResult,
  type RemoveJobResult,
  type PredictJobData,
  type PredictJobResult,
  type ThresholdJobResult,
} from './protocol.js';
import { QueueKeys, assertLineName, bullConnection, connect, isConnectionError, unavailable } from './redis.js';
import { queueSettings, type QueueSettings } from './settings.js';

export interface QueueClientOptions {
  readonly redisUrl: string;
  readonly blobs: BlobStore;
  readonly settings?: Partial<QueueSettings>;
}

export interface QueuedImage {
  readonly bytes: Buffer;
  readonly name: string;
  /** a stable id for a hot update (NormalsJobData.ids) */
  readonly id?: string;
}

export interface QueuedUpdateOptions {
  readonly timeoutMs?: number;
  /**
   * The hot update's id (`key:...`, from hotUpdateId): its job id derives
   * from it, so a retry with the same id joins the job still running or
   * answers the finished one, and the worker records it with the images.
   */
  readonly update?: string;
  /** the decoder pixel limit the worker applies */
  readonly maxPixels?: number;
}

export interface QueuedPredictOptions {
  readonly maps?: MapsOption;
  /** the API node's prediction id, echoed in the verdict event */
  readonly requestId?: string;
  /** at least this store version (default: the line's version now: read-your-writes) */
  readonly minVersion?: number;
  readonly timeoutMs?: number;
  /** the decoder pixel limit the worker applies (the API node's --max-pixels) */
  readonly maxPixels?: number;
}

export interface QueuedPrediction extends Omit<PredictJobResult, 'maps' | 'kind' | 'enqueuedAt' | 'startedAt'> {
  readonly jobId: string;
  readonly line: string;
  readonly maps: Partial<Record<MapName, Buffer>>;
  /** ms from enqueue to the worker's start, and from the worker's finish to this client having the result */
  readonly queueTimings: { readonly wait: number; readonly total: number };
}

export type JobState = 'waiting' | 'active' | 'completed' | 'failed' | 'delayed' | 'prioritized' | 'waiting-children' | 'unknown';

export interface JobStatus {
  readonly id: string;
  readonly line: string;
  readonly state: JobState;
  readonly attempts: number;
  readonly result?: QueuedPrediction | Exclude<JobResult, PredictJobResult>;
  readonly error?: { readonly code: string; readonly message: string };
}

/** Job ids name their line (`line.uuid`), so a bare id finds its queue. */
export function lineOfJobId(id: string): string {
  const dot = id.indexOf('.');
  const line = dot > 0 ? id.slice(0, dot) : '';
  assertLineName(line);
  return line;
}

/** The library error a failed job carries ("E_CODE: message" as its failure reason). */
export function errorOfFailure(reason: string | undefined): HetmmError {
  const m = /^(E_[A-Z_]+): ([\s\S]*)$/.exec(reason ?? '');
  if (m) return new HetmmError(m[1] as HetmmErrorCode, m[2]!);
  return new HetmmError('E_INTERNAL', `the job failed: ${reason ?? 'no reason given'}`);
}

export class QueueClient {
  readonly settings: QueueSettings;
  readonly keys: QueueKeys;
  readonly blobs: BlobStore;
  readonly #url: string;
  readonly #redis: Redis;
  readonly #queues = new Map<string, Queue>();
  readonly #events = new Map<string, Promise<QueueEvents>>();
  readonly #waiters = new Map<string, { resolve: (value: unknown) => void; reject: (e: Error) => void }>();
  #closed = false;

  private constructor(options: QueueClientOptions, redis: Redis) {
    this.settings = queueSettings(options.settings);
    this.keys = new QueueKeys(this.settings.prefix);
    this.blobs = options.blobs;
    this.#url = options.redisUrl;
    this.#redis = redis;
  }

  static async open(options: QueueClientOptions): Promise<QueueClient> {
    return new QueueClient(options, await connect(options.redisUrl, 'producer'));
  }

  /** The producer connection (for status and metrics readers). */
  get redis(): Redis {
    return this.#redis;
  }

  /** Lines some worker has registered. */
  async lineNames(): Promise<string[]> {
    return (await this.#call(() => this.#redis.smembers(this.keys.lines()))).sort();
  }

  /** The line's current store version (the one a new job will require). */
  async version(line: string): Promise<number> {
    assertLineName(line);
    const v = await this.#call(() => this.#redis.get(this.keys.version(line)));
    if (v === null) throw new HetmmError('E_ARGUMENT', `no line named "${line}" is served by any worker (start a worker with its store)`);
    return Number(v);
  }

  /** Enqueues a prediction; returns its job id at once. */
  async submitPredict(line: string, image: QueuedImage, options: QueuedPredictOptions = {}): Promise<string> {
    const { id, data } = await this.#predictJob(line, image, options);
    await this.#add(line, id, data);
    return id;
  }

  /** Predicts through the queue and waits for the result (E_TIMEOUT after timeoutMs; the job may still finish). */
  async predict(line: string, image: QueuedImage, options: QueuedPredictOptions = {}): Promise<QueuedPrediction> {
    const { id, data } = await this.#predictJob(line, image, options);
    const value = (await this.#run(line, id, data, options.timeoutMs ?? this.settings.syncTimeoutMs)) as PredictJobResult;
    // A synchronous result is delivered to this caller only: its maps are read once and removed.
    const prediction = await this.#prediction(line, id, value);
    if (value.maps !== undefined) await this.blobs.delete(value.maps.blob).catch(() => undefined);
    return prediction;
  }

  /**
   * Hot update through the line's queue: a worker appends the images under
   * the line's cluster-wide lock, writes the store file and announces the
   * new version. Answers once the file holds it.
   */
  async addNormals(line: string, images: readonly QueuedImage[], options: QueuedUpdateOptions = {}): Promise<NormalsJobResult> {
    if (images.length === 0) throw new HetmmError('E_NO_IMAGES', 'no images to add: send one or more normal images');
    await this.version(line); // unknown lines fail here, not in a worker
    const keyed = options.update !== undefined;
    const id = keyed ? `${line}.u-${createHash('sha256').update(options.update!).digest('hex').slice(0, 40)}` : `${line}.${randomUUID()}`;
    const refs: ImageRef[] = [];
    for (const image of images) refs.push(await this.#imageRef(image.bytes));
    const data: NormalsJobData = {
      kind: 'normals',
      line,
      images: refs,
      names: images.map((i) => i.name),
      update: options.update ?? `job:${id}`,
      ...(images.some((i) => i.id !== undefined) ? { ids: images.map((image, i) => image.id ?? `${options.update ?? `job:${id}`}/${i}`) } : {}),
      ...(options.maxPixels === undefined ? {} : { maxPixels: options.maxPixels }),
    };
    if (keyed) {
      // A retry of a job that failed for good runs again (its ids make it harmless); a waiting, running or done one is joined.
      const previous = await this.#call(() => this.#queue(line).getJobState(id));
      if (previous === 'failed') await this.#call(() => this.#queue(line).remove(id));
    }
    return (await this.#run(line, id, data, options.timeoutMs, keyed)) as NormalsJobResult;
  }

  /**
   * Undo of hot updates: a worker removes the normals under the line's
   * cluster-wide lock and announces the new version. With `update` (an
   * idempotency key's id) a retry joins or answers the same job.
   */
  async removeNormals(line: string, ids: readonly string[], options: { update?: string; timeoutMs?: number } = {}): Promise<RemoveJobResult> {
    await this.version(line);
    const keyed = options.update !== undefined;
    const id = keyed ? `${line}.r-${createHash('sha256').update(options.update!).digest('hex').slice(0, 40)}` : `${line}.${randomUUID()}`;
    return (await this.#run(line, id, { kind: 'remove', line, ids: [...ids], update: options.update ?? `job:${id}` }, options.timeoutMs, keyed)) as RemoveJobResult;
  }

  /** The line's normals, from a worker at least at the cluster's current version. */
  async listNormals(line: string, options: { timeoutMs?: number } = {}): Promise<ListNormalsJobResult> {
    const minVersion = await this.version(line);
    return (await this.#run(line, `${line}.${randomUUID()}`, { kind: 'list-normals', line, minVersion }, options.timeoutMs)) as ListNormalsJobResult;
  }

  /** Sets the line's deployment threshold (a new store version, like a hot update). */
  async setThreshold(line: string, value: number, options: { timeoutMs?: number } = {}): Promise<ThresholdJobResult> {
    await this.version(line);
    const id = `${line}.${randomUUID()}`;
    return (await this.#run(line, id, { kind: 'threshold', line, value }, options.timeoutMs)) as ThresholdJobResult;
  }

  /** Calls `listener` with every finished job's result on these lines, from any API node (BullMQ's event stream). */
  async onCompleted(lines: readonly string[], listener: (line: string, result: JobResult) => void): Promise<void> {
    for (const line of lines) {
      const events = await this.#queueEvents(line);
      events.on('completed', ({ returnvalue }) => {
        try {
          listener(line, (typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue) as PredictJobResult);
        } catch {
          // a malformed event is not worth a crash
        }
      });
    }
  }

  /** State and, once finished, result or error of a job (kept for settings.keepResultsMs). */
  async job(id: string): Promise<JobStatus> {
    const line = lineOfJobId(id);
    // state first: a job read before it completes would carry no result
    const state = (await this.#call(() => this.#queue(line).getJobState(id))) as JobState;
    const job = await this.#call(() => Job.fromId(this.#queue(line), id));
    if (job === undefined || state === 'unknown') throw new HetmmError('E_ARGUMENT', `no job ${id} (unknown, or its result expired)`);
    const base = { id, line, state, attempts: job.attemptsStarted };
    if (state === 'completed') {
      const value = job.returnvalue as JobResult;
      return { ...base, result: value.kind === 'predict' ? await this.#prediction(line, id, value) : value };
    }
    if (state === 'failed') {
      const e = errorOfFailure(job.failedReason);
      return { ...base, error: { code: e.code, message: e.message } };
    }
    return base;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#queues.values()].map((q) => q.close().catch(() => undefined)));
    await Promise.all([...this.#events.values()].map(async (e) => (await e.catch(() => undefined))?.close().catch(() => undefined)));
    this.#redis.disconnect();
  }

  /** The BullMQ queue of a line (status and metrics read it). */
  queue(line: string): Queue {
    assertLineName(line);
    return this.#queue(line);
  }

  #queue(line: string): Queue {
    let queue = this.#queues.get(line);
    if (queue === undefined) {
      queue = new Queue(this.keys.queueName(line), {
        connection: bullConnection(this.#url, 'producer'),
        prefix: this.settings.prefix,
        // events are for live waiters and feeds, not history
        streams: { events: { maxLen: 10_000 } },
      });
      queue.on('error', () => undefined); // surfaced by the failing call
      this.#queues.set(line, queue);
    }
    return queue;
  }

  #queueEvents(line: string): Promise<QueueEvents> {
    let events = this.#events.get(line);
    if (events === undefined) {
      const e = new QueueEvents(this.keys.queueName(line), { connection: bullConnection(this.#url, 'worker'), prefix: this.settings.prefix });
      e.on('error', () => undefined);
      e.on('completed', ({ jobId, returnvalue }) => {
        const w = this.#waiters.get(jobId);
        if (w === undefined) return;
        this.#waiters.delete(jobId);
        w.resolve(typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue);
      });
      // emitted when a job fails for good (not for an attempt that will be retried)
      e.on('failed', ({ jobId, failedReason }) => {
        const w = this.#waiters.get(jobId);
        if (w === undefined) return;
        this.#waiters.delete(jobId);
        w.reject(errorOfFailure(failedReason));
      });
      events = e.waitUntilReady().then(() => e);
      this.#events.set(line, events);
    }
    return events;
  }

  async #imageRef(bytes: Buffer): Promise<ImageRef> {
    if (bytes.length <= this.settings.inlineImageBytes) return { inline: bytes.toString('base64') };
    const blob = `images/${randomUUID()}`;
    await this.blobs.put(blob, bytes);
    return { blob };
  }

  async #add(line: string, id: string, data: JobData): Promise<void> {
    const age = Math.ceil(this.settings.keepResultsMs / 1000);
    await this.#queueEvents(line); // subscribed before the job can finish
    await this.#call(() =>
      this.#queue(line).add(data.kind, data, {
        jobId: id,
        // input errors fail at once (UnrecoverableError); one retry for anything else
        attempts: 2,
        backoff: { type: 'fixed', delay: 500 },
        removeOnComplete: { age },
        removeOnFail: { age },
      }),
    );
  }

  /** A prediction job: the line's current version as its minimum (read-your-writes), the image inline or as a blob. */
  async #predictJob(line: string, image: QueuedImage, options: QueuedPredictOptions): Promise<{ id: string; data: PredictJobData }> {
    const minVersion = options.minVersion ?? (await this.version(line));
    const data: PredictJobData = {
      kind: 'predict',
      line,
      minVersion,
      image: await this.#imageRef(image.bytes),
      name: image.name,
      maps: options.maps ?? 'none',
      ...(options.requestId === undefined ? {} : { requestId: options.requestId }),
      ...(options.maxPixels === undefined ? {} : { maxPixels: options.maxPixels }),
    };
    return { id: `${line}.${randomUUID()}`, data };
  }

  /**
   * Adds a job and waits for its result, listening before the job exists so
   * its completion event cannot be missed (changes may wait for the line's
   * lock: at least a minute by default).
   */
  async #run(line: string, id: string, data: JobData, timeoutMs?: number, mayExist = false): Promise<unknown> {
    const result = this.#waitFor(line, id, timeoutMs ?? Math.max(this.settings.syncTimeoutMs, 60_000));
    try {
      await this.#add(line, id, data);
      if (mayExist) {
        // BullMQ keeps an existing job of that id (a retry): one already finished sends no event again
        const s = await this.job(id);
        const w = this.#waiters.get(id);
        if (w !== undefined && s.state === 'completed') {
          this.#waiters.delete(id);
          w.resolve({ ...s.result, repeated: true });
        } else if (w !== undefined && s.state === 'failed') {
          this.#waiters.delete(id);
          w.reject(new HetmmError(s.error!.code as HetmmErrorCode, s.error!.message));
        }
      }
    } catch (e) {
      this.#forget(id);
      throw e;
    }
    return result;
  }

  /**
   * The job's result from the line's event stream; on timeout the job is
   * read once (an event lost while Redis was away), else E_TIMEOUT.
   */
  #waitFor(line: string, id: string, timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timedOut = (): HetmmError => new HetmmError('E_TIMEOUT', `job ${id} did not finish within ${timeoutMs} ms (it may still finish: GET /v1/jobs/${id})`);
      const timer = setTimeout(() => {
        this.#waiters.delete(id);
        this.job(id).then(
          (s) => {
            if (s.state === 'completed') resolve(s.result);
            else if (s.state === 'failed') reject(new HetmmError(s.error!.code as HetmmErrorCode, s.error!.message));
            else reject(timedOut());
          },
          () => reject(timedOut()),
        );
      }, timeoutMs);
      this.#waiters.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  /** Drops a waiter whose job was never added. */
  #forget(id: string): void {
    const w = this.#waiters.get(id);
    this.#waiters.delete(id);
    w?.resolve(undefined);
  }

  async #prediction(line: string, id: string, value: PredictJobResult): Promise<QueuedPrediction> {
    const { maps: ref, kind: _kind, enqueuedAt, startedAt, ...rest } = value;
    const maps = ref === undefined ? {} : decodeMaps(await this.blobs.get(ref.blob), ref);
    return { ...rest, jobId: id, line, maps, queueTimings: { wait: startedAt - enqueuedAt, total: Date.now() - enqueuedAt } };
  }

  /** Runs a Redis call; connection failures become E_UNAVAILABLE (HTTP 503). */
  async #call<T>(f: () => Promise<T>): Promise<T> {
    if (this.#closed) throw unavailable('the queue client is closed');
    try {
      return await f();
    } catch (e) {
      if (isConnectionError(e)) throw unavailable(`Redis is not reachable: ${e instanceof Error ? e.message : String(e)}`, e);
      throw e;
    }
  }
}
