/**
 * A queue worker: loads its lines' template stores once, consumes their
 * BullMQ queues, and keeps every store at the cluster's version by applying
 * the updates announced on each line's Redis stream: it reads only the
 * new templates' records from the shared store file (TemplateStore.refresh),
 * never the whole store again unless the file was replaced.
 *
 * The heavy work runs in a compute thread (./compute-thread.ts): the
 * backbone blocks its caller's thread for a whole forward pass, and on the
 * main thread that stalled BullMQ's lock renewal on a loaded machine
 * (docs/PERFORMANCE.md). The main thread only talks to Redis; it publishes its measured
 * event-loop delay (docs/SCALING.md).
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { DetectorOptions } from '../detector/detector.js';
import { HetmmError, isHetmmError } from '../errors.js';
import { checkThresholdValue } from '../fit/line-state.js';
import type { BlobStore } from './blob-store.js';
import type { StoreChain } from '../store/template-store.js';
import { ComputeThread, type LineDescription, type Versioned } from './compute.js';
import { acquireLock, type HeldLock } from './lock.js';
import {
  encodeMaps,
  updateFromFields,
  updateToFields,
  type ImageRef,
  type JobData,
  type JobResult,
  type ListNormalsJobData,
  type ListNormalsJobResult,
  type NormalsJobData,
  type RemoveJobData,
  type RemoveJobResult,
  type NormalsJobResult,
  type PredictJobData,
  type PredictJobResult,
  type ThresholdJobData,
  type ThresholdJobResult,
  type StoreUpdate,
} from './protocol.js';
import { QueueKeys, assertLineName, bullConnection, connect } from './redis.js';
import { queueSettings, type QueueSettings } from './settings.js';

export interface WorkerLine {
  readonly name: string;
  readonly storePath: string;
}

export interface QueueWorkerOptions {
  readonly redisUrl: string;
  readonly lines: readonly WorkerLine[];
  readonly blobs: BlobStore;
  /** jobs processed at once per line (default 1: one image's backbone overlaps nothing else on a busy machine) */
  readonly concurrency?: number;
  readonly settings?: Partial<QueueSettings>;
  readonly detector?: Pick<DetectorOptions, 'model' | 'backend' | 'threads' | 'matchPrecision' | 'precision'>;
  readonly id?: string;
  /** one line per event (job start/end, store updates, errors) */
  readonly log?: (line: string) => void;
}

/** Library error codes that mean "this input is bad": the job fails at once, no retry. */
const INPUT_ERRORS = new Set(['E_ARGUMENT', 'E_IMAGE_READ', 'E_IMAGE_DECODE', 'E_IMAGE_TOO_LARGE', 'E_IMAGE_TOO_SMALL', 'E_NO_IMAGES', 'E_STORE_MISMATCH']);

export interface LineStatus {
  /** 'refused': the store loaded but is not the cluster's (another lineage or base, or off the version chain) */
  readonly state: 'loading' | 'ready' | 'failed' | 'refused';
  readonly version: number;
  readonly templates: number;
  readonly error?: string;
  /** what /v1/lines/{line} shows (preset, threshold, dtype, ...) */
  readonly info?: LineDescription;
}

export interface WorkerStatus {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly startedAt: number;
  readonly concurrency: number;
  readonly lines: Record<string, LineStatus>;
  readonly processed: number;
  readonly failed: number;
  /** jobs started again after an earlier attempt (a dead worker's, or a transient error) */
  readonly retried: number;
  readonly active: number;
  /** event-loop delay since start: max and p99 in ms (lock renewal runs on this loop) */
  readonly eventLoop: { readonly maxMs: number; readonly p99Ms: number };
  /** ms from enqueue to start, and of processing, summed over processed jobs */
  readonly waitMsTotal: number;
  readonly processMsTotal: number;
  readonly updatedAt: number;
}

/** The line's lineage as Redis records it (QueueKeys.lineage): a StoreChain's identity and its latest head. */
interface LineageRecord {
  readonly lineage: string;
  readonly base: string;
  readonly baseCount: number;
  readonly tip: readonly [number, string];
}

function lineageRecord(chain: StoreChain): LineageRecord {
  const [count, head] = chain.heads[chain.heads.length - 1]!;
  return { lineage: chain.lineage, base: chain.base, baseCount: chain.baseCount, tip: [count, head] };
}

/** #announce: version, lineage and stream entry, only while the lock is the caller's (KEYS: lock, version, updates, lineage). */
const ANNOUNCE = `if redis.call('get', KEYS[1]) ~= ARGV[1] then return false end
redis.call('set', KEYS[2], ARGV[2])
redis.call('set', KEYS[4], ARGV[4])
return redis.call('xadd', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 5))`;

function lostLock(line: string, lock: HeldLock): HetmmError {
  return new HetmmError('E_STORE_LOCKED', `line ${line}: this worker lost the line's lock (fencing token ${lock.fence}; paused past the lock's time to live?): nothing announced, the job is retried`);
}

class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task, task);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

class LineRuntime {
  state: LineStatus['state'] = 'loading';
  error?: string;
  /** template count of the compute thread's copy */
  templates = 0;
  info?: LineDescription;
  version = 0;
  /** last stream entry applied (or skipped as already contained) */
  lastId = '0';
  /** the highest fencing token the compute thread's store records */
  fence = 0;
  /** why the cluster refuses this worker's store, when it does */
  refusal?: string;
  bull?: Worker;
  readonly serial = new SerialQueue();
  constructor(readonly name: string, readonly storePath: string) {}
}

export class QueueWorker {
  readonly id: string;
  readonly settings: QueueSettings;
  readonly keys: QueueKeys;
  readonly #options: QueueWorkerOptions;
  readonly #lines = new Map<string, LineRuntime>();
  readonly #log: (line: string) => void;
  readonly #loop = monitorEventLoopDelay({ resolution: 10 });
  #redis?: Redis;
  #follower?: Redis;
  #compute?: ComputeThread;
  #heartbeat?: NodeJS.Timeout;
  #stopping = false;
  #followerDone?: Promise<void>;
  #counters = { processed: 0, failed: 0, retried: 0, active: 0, waitMsTotal: 0, processMsTotal: 0 };
  readonly #startedAt = Date.now();

  constructor(options: QueueWorkerOptions) {
    this.#options = options;
    this.settings = queueSettings(options.settings);
    this.keys = new QueueKeys(this.settings.prefix);
    this.id = options.id ?? `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.#log = options.log ?? (() => undefined);
    if (options.lines.length === 0) throw new HetmmError('E_ARGUMENT', 'a worker needs at least one line (a store to serve)');
    for (const line of options.lines) {
      assertLineName(line.name);
      if (this.#lines.has(line.name)) throw new HetmmError('E_ARGUMENT', `line "${line.name}" is given twice`);
      this.#lines.set(line.name, new LineRuntime(line.name, line.storePath));
    }
  }

  /** Connects, loads every line's store and starts consuming the lines that loaded. */
  async start(): Promise<void> {
    this.#loop.enable();
    this.#redis = await connect(this.#options.redisUrl, 'worker');
    this.#follower = await connect(this.#options.redisUrl, 'worker');
    this.#compute = new ComputeThread();
    await this.#compute.init({ ...this.#options.detector });
    await this.#publish();
    this.#heartbeat = setInterval(() => void this.#publish().catch(() => undefined), this.settings.heartbeatMs);
    for (const line of this.#lines.values()) {
      try {
        await this.#load(line);
        await this.#catchUp(line);
        line.state = 'ready';
        await this.#redis.sadd(this.keys.lines(), line.name);
        this.#log(`line ${line.name}: ${line.templates} templates, version ${line.version}`);
      } catch (e) {
        // Take no jobs for a line we cannot serve; say why in status/readiness.
        line.state = line.refusal === undefined ? 'failed' : 'refused';
        line.error = e instanceof Error ? e.message : String(e);
        this.#log(`line ${line.name}: cannot load: ${line.error}`);
        continue;
      }
      line.bull = this.#consume(line);
    }
    this.#loop.reset(); // measure serving, not the model load
    await this.#publish();
    this.#followerDone = this.#follow();
  }

  get lines(): ReadonlyMap<string, LineStatus> {
    return new Map([...this.#lines.values()].map((l) => [l.name, this.#lineStatus(l)]));
  }

  status(): WorkerStatus {
    const p99 = this.#loop.percentile(99) / 1e6;
    return {
      id: this.id,
      host: os.hostname(),
      pid: process.pid,
      startedAt: this.#startedAt,
      concurrency: this.#options.concurrency ?? 1,
      lines: Object.fromEntries([...this.#lines.values()].map((l) => [l.name, this.#lineStatus(l)])),
      ...this.#counters,
      eventLoop: { maxMs: Number.isFinite(this.#loop.max) ? this.#loop.max / 1e6 : 0, p99Ms: Number.isFinite(p99) ? p99 : 0 },
      updatedAt: Date.now(),
    };
  }

  /**
   * Graceful shutdown: stops taking jobs, lets the active ones finish (BullMQ
   * returns nothing half-done: a job either completes or, if this process dies
   * first, its lock expires and another worker takes it), then deregisters.
   */
  async close(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    await Promise.all([...this.#lines.values()].map((l) => l.bull?.close()));
    this.#follower?.disconnect();
    await this.#followerDone?.catch(() => undefined);
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    if (this.#redis) {
      await this.#redis.multi().del(this.keys.worker(this.id)).srem(this.keys.workers(), this.id).exec().catch(() => undefined);
      this.#redis.disconnect();
    }
    this.#loop.disable();
    await this.#compute?.close();
  }

  #lineStatus(l: LineRuntime): LineStatus {
    return { state: l.state, version: l.version, templates: l.templates, ...(l.info === undefined ? {} : { info: l.info }), ...(l.error === undefined ? {} : { error: l.error }) };
  }

  async #publish(): Promise<void> {
    const redis = this.#redis;
    if (redis === undefined || this.#stopping) return;
    await redis
      .multi()
      .set(this.keys.worker(this.id), JSON.stringify(this.status()), 'PX', this.settings.heartbeatMs * 3)
      .sadd(this.keys.workers(), this.id)
      .exec();
  }

  /**
   * Loads the line's store file. Its version is the file's (templates +
   * revision, as the in-process server counts): the same in every process
   * that reads the file. Writers append to the file before they announce,
   * so a file behind the announced version was replaced or rolled back:
   * the line is refused rather than served from it.
   */
  async #load(line: LineRuntime): Promise<void> {
    const loaded = await this.#compute!.load(line.name, line.storePath);
    const { version } = loaded;
    this.#noteCopy(line, loaded);
    line.version = version;
    await this.#checkLineage(line, loaded.chain);
    const redis = this.#redis!;
    // The first worker to see the line (or a Redis that lost its data) publishes the file's version.
    await redis.set(this.keys.version(line.name), String(version), 'NX');
    const announced = Number(await redis.get(this.keys.version(line.name)));
    if (version < announced) {
      throw new HetmmError(
        'E_STORE_READ',
        `line ${line.name}: the store file is at version ${version}, the cluster announced ${announced}: was the file replaced or rolled back? ` +
          `(after a deliberate replacement: redis-cli DEL ${this.keys.version(line.name)}, then restart the workers)`,
      );
    }
  }

  /**
   * Store identity (docs/SCALING.md): the first worker to load a line
   * records its lineage in Redis (lineage, base checksum, and the chain head
   * at the latest announced template count); writers move the head with
   * every announcement. A store of another lineage or base, or whose head
   * at that count differs (a private copy that took other appends), or
   * with records beyond it that no cluster writer made (no fencing token
   * Redis issued), is refused: serving it would answer from other
   * templates, and its hot updates would go to a file the cluster does not
   * read. Records beyond the tip with cluster tokens are a writer's that
   * died before announcing: accepted (the next writer announces them).
   */
  async #checkLineage(line: LineRuntime, chain: StoreChain): Promise<void> {
    const redis = this.#redis!;
    const key = this.keys.lineage(line.name);
    await redis.set(key, JSON.stringify(lineageRecord(chain)), 'NX');
    const raw = await redis.get(key);
    const recorded = raw === null ? undefined : (JSON.parse(raw) as LineageRecord);
    if (recorded === undefined) return;
    const reset = `(after a deliberate replacement of the line's store: redis-cli DEL ${key} ${this.keys.version(line.name)}, then restart the workers)`;
    let refusal: string | undefined;
    if (recorded.lineage !== chain.lineage) refusal = `the store's lineage ${chain.lineage} is not the cluster's ${recorded.lineage} (another fit)`;
    else if (recorded.base !== chain.base) refusal = `the store's base section (sha256 ${chain.base.slice(0, 12)}) is not the cluster's (${recorded.base.slice(0, 12)})`;
    else {
      const [count, head] = recorded.tip;
      const at = chain.heads.findIndex(([n]) => n === count);
      const last = chain.heads[chain.heads.length - 1]![0];
      if (at < 0 || chain.heads[at]![1] !== head) {
        refusal = last < count ? `the store holds ${last} templates, the cluster's ${count}: behind it` : `the store's templates differ from the cluster's at ${count} templates (a copy that took other appends)`;
      } else if (at < chain.heads.length - 1) {
        // Ahead of the announced tip: fine when a cluster writer made those records (it died before announcing), not otherwise.
        const issued = Number((await redis.get(this.keys.fence(line.name))) ?? 0);
        const foreign = chain.heads.slice(at + 1).filter(([, , fence]) => fence === 0 || fence > issued);
        if (foreign.length > 0) {
          refusal = `the store holds ${last - count} templates beyond the cluster's ${count}, appended outside the cluster (a copy that took \`hetmm add\`?; hot updates go through the API)`;
        }
      }
    }
    if (refusal === undefined) {
      line.refusal = undefined;
      return;
    }
    line.refusal = `refused: ${refusal} ${reset}`;
    throw new HetmmError('E_STORE_MISMATCH', `line ${line.name}: ${line.refusal}`);
  }

  /** What the compute thread's copy of the line holds now (templates, description, fencing token). */
  #noteCopy(line: LineRuntime, r: Versioned): void {
    [line.templates, line.info, line.fence] = [r.count, r.info, r.fence];
  }

  #consume(line: LineRuntime): Worker {
    const worker = new Worker(this.keys.queueName(line.name), (job: Job<JobData>) => this.#process(line, job), {
      connection: bullConnection(this.#options.redisUrl, 'worker'),
      prefix: this.settings.prefix,
      concurrency: this.#options.concurrency ?? 1,
      lockDuration: this.settings.lockDurationMs,
      stalledInterval: this.settings.stalledIntervalMs,
      maxStalledCount: this.settings.maxStalledCount,
      removeOnComplete: { age: Math.ceil(this.settings.keepResultsMs / 1000) },
      removeOnFail: { age: Math.ceil(this.settings.keepResultsMs / 1000) },
    });
    worker.on('error', (e) => this.#log(`line ${line.name}: queue error: ${e.message}`));
    return worker;
  }

  async #process(line: LineRuntime, job: Job<JobData>): Promise<JobResult> {
    const started = Date.now();
    this.#counters.active++;
    if (job.attemptsStarted > 1 || job.stalledCounter > 0) this.#counters.retried++;
    this.#log(`job ${job.id} ${job.data.kind} start line=${line.name} attempt=${job.attemptsStarted}`);
    try {
      const data = job.data;
      const result =
        data.kind === 'normals'
          ? await this.#addNormals(line, data, job.id!)
          : data.kind === 'remove'
            ? await this.#removeNormals(line, data, job.id!)
            : data.kind === 'list-normals'
              ? await this.#listNormals(line, data)
              : data.kind === 'threshold'
            ? await this.#setThreshold(line, data)
            : await this.#predict(line, job.id!, data, { enqueuedAt: job.timestamp, startedAt: started });
      this.#counters.processed++;
      this.#counters.waitMsTotal += started - job.timestamp;
      this.#counters.processMsTotal += Date.now() - started;
      this.#log(`job ${job.id} done`);
      return result;
    } catch (e) {
      this.#counters.failed++;
      this.#log(`job ${job.id} failed: ${e instanceof Error ? e.message : String(e)}`);
      // The library's error code travels as the failure reason's first word.
      if (isHetmmError(e)) {
        const message = `${e.code}: ${e.message}`;
        throw INPUT_ERRORS.has(e.code) ? new UnrecoverableError(message) : new Error(message);
      }
      throw e;
    } finally {
      this.#counters.active--;
    }
  }

  async #image(ref: ImageRef): Promise<Buffer> {
    if ('inline' in ref) return Buffer.from(ref.inline, 'base64');
    return this.#options.blobs.get(ref.blob);
  }

  async #predict(line: LineRuntime, jobId: string, data: PredictJobData, times: { enqueuedAt: number; startedAt: number }): Promise<PredictJobResult> {
    // Read-your-writes: never answer from a store older than the job needs.
    if (line.version < data.minVersion) await this.#catchUp(line, data.minVersion);
    const image = await this.#image(data.image);
    const prediction = await this.#compute!.predict(line.name, image, data.maps, data.maxPixels);
    let maps: PredictJobResult['maps'];
    if (Object.keys(prediction.maps).length > 0) {
      const rendered = Object.fromEntries(Object.entries(prediction.maps).map(([k, v]) => [k, Buffer.from(v.buffer, v.byteOffset, v.byteLength)]));
      const encoded = encodeMaps(rendered, `results/${jobId}`);
      await this.#options.blobs.put(encoded.ref.blob, encoded.data);
      maps = encoded.ref;
    }
    // The client has the result now; a large input's blob is not needed any more.
    if ('blob' in data.image) await this.#options.blobs.delete(data.image.blob).catch(() => undefined);
    return {
      kind: 'predict',
      score: prediction.score,
      ...(prediction.label === undefined ? {} : { label: prediction.label, threshold: prediction.threshold }),
      templates: prediction.templates,
      version: prediction.version,
      height: prediction.height,
      width: prediction.width,
      timings: prediction.timings,
      worker: this.id,
      ...(maps === undefined ? {} : { maps }),
      name: data.name,
      ...(data.requestId === undefined ? {} : { requestId: data.requestId }),
      ...times,
    };
  }

  /**
   * Hot update, the cluster's single writer for the line: under the line's
   * Redis lock (which orders versions cluster-wide), catch up, extract the
   * new images' features, append them to the store file as one durable
   * record (TemplateStore.appendToFile: the file lock, fsync; it also merges
   * appends made outside the cluster, e.g. `hetmm add`), then announce
   * version v+1. The file is written before the announcement, so a worker
   * that reads the file never misses an announced update.
   */
  async #addNormals(line: LineRuntime, data: NormalsJobData, jobId: string): Promise<NormalsJobResult> {
    const lock = await this.#lineLock(line);
    try {
      return await line.serial.run(async () => {
        await this.#applyAnnounced(line);
        const images: Buffer[] = [];
        for (const ref of data.images) images.push(await this.#image(ref));
        // A retried job (its first worker died after appending) carries the same ids: the store adds nothing twice.
        const update = data.update ?? `job:${jobId}`;
        const ids = data.images.map((_, i) => data.ids?.[i] ?? `${update}/${i}`);
        const identity = { ids, update, fence: lock.fence, ...(data.maxPixels === undefined ? {} : { maxPixels: data.maxPixels }) };
        // Cheap early refusal; the store's fencing check is the guarantee (a pause can fall after this).
        if (!(await lock.verify())) throw lostLock(line.name, lock);
        const r = await this.#compute!.append(line.name, images, data.names, identity, `hetmm worker ${this.id}`);
        this.#noteCopy(line, r);
        // Announced also when this call added nothing but the file holds more than announced (an earlier attempt's append).
        if (r.version !== line.version) {
          line.lastId = await this.#announce(line.name, lock, { version: r.version, kind: 'append', files: data.names, templates: r.count }, r.chain);
          line.version = r.version;
        }
        this.#log(`line ${line.name}: +${r.appended} templates (${r.duplicates} already held) -> ${r.count} (${r.merged} merged from the file), version ${r.version}`);
        await this.#publish().catch(() => undefined);
        return { kind: 'normals', added: r.appended, duplicates: r.duplicates, templates: r.count, version: r.version, worker: this.id, ids };
      });
    } finally {
      await lock.release();
    }
  }

  /**
   * Undo of hot updates (issue 21): like #addNormals, the cluster's single
   * writer under the line's lock; one durable removal record in the store
   * file (ids removed before change nothing: a retried job is harmless),
   * then the announcement, which other workers apply by reading the record.
   */
  async #removeNormals(line: LineRuntime, data: RemoveJobData, jobId: string): Promise<RemoveJobResult> {
    const lock = await this.#lineLock(line);
    try {
      return await line.serial.run(async () => {
        await this.#applyAnnounced(line);
        if (!(await lock.verify())) throw lostLock(line.name, lock);
        const r = await this.#compute!.remove(line.name, data.ids, { update: data.update ?? `job:${jobId}`, fence: lock.fence }, `hetmm worker ${this.id}`);
        this.#noteCopy(line, r);
        if (r.version !== line.version) {
          line.lastId = await this.#announce(line.name, lock, { version: r.version, kind: 'append', files: [], templates: r.count }, r.chain);
          line.version = r.version;
        }
        this.#log(`line ${line.name}: -${r.removed.length} normals (${r.alreadyRemoved.length} removed before) -> ${r.count}, version ${r.version}`);
        await this.#publish().catch(() => undefined);
        return { kind: 'remove', removed: r.removed, alreadyRemoved: r.alreadyRemoved, templates: r.count, version: r.version, worker: this.id };
      });
    } finally {
      await lock.release();
    }
  }

  /** The line's normals from this worker's copy, caught up to the version the client saw. */
  async #listNormals(line: LineRuntime, data: ListNormalsJobData): Promise<ListNormalsJobResult> {
    if (line.version < data.minVersion) await this.#catchUp(line, data.minVersion);
    const r = await this.#compute!.normals(line.name);
    return { kind: 'list-normals', templates: r.count, removed: r.removed, normals: r.normals, version: r.version, worker: this.id };
  }

  /** The line's cluster-wide writer lock and a fencing token above every one the store records. */
  #lineLock(line: LineRuntime): ReturnType<typeof acquireLock> {
    return acquireLock(this.#redis!, this.keys.lock(line.name), {
      ttlMs: this.settings.lockDurationMs,
      holder: this.id,
      fenceKey: this.keys.fence(line.name),
      fenceFloor: line.fence,
    });
  }

  /** A threshold change: like a hot update (lock, file first, then the announcement), the new metadata travels on the stream. */
  async #setThreshold(line: LineRuntime, data: ThresholdJobData): Promise<ThresholdJobResult> {
    checkThresholdValue(data.value);
    const lock = await this.#lineLock(line);
    try {
      return await line.serial.run(async () => {
        await this.#applyAnnounced(line);
        const r = await this.#compute!.setThreshold(line.name, data.value, `hetmm worker ${this.id}`);
        const { count, version, meta } = r;
        // the save compacted the store: a new base section, recorded as the line's lineage
        line.lastId = await this.#announce(line.name, lock, { version, kind: 'meta', meta, files: [], templates: count }, r.chain);
        line.version = version;
        this.#noteCopy(line, r);
        await this.#publish().catch(() => undefined);
        return { kind: 'threshold', value: data.value, templates: count, version, worker: this.id };
      });
    } finally {
      await lock.release();
    }
  }

  /**
   * Sets the line's version and lineage and appends the update to its
   * stream, atomically and only while `lock` is still this worker's;
   * returns the entry id. A worker that lost the lock (paused past its TTL)
   * announces nothing: the job fails and its retry, which finds the images
   * in the store by their ids, announces the version.
   */
  async #announce(line: string, lock: HeldLock, update: StoreUpdate, chain: StoreChain): Promise<string> {
    const keys = [this.keys.lock(line), this.keys.version(line), this.keys.updates(line), this.keys.lineage(line)];
    const args = [lock.token, String(update.version), String(this.settings.updateRetention), JSON.stringify(lineageRecord(chain)), ...updateToFields(update)];
    const id = (await this.#redis!.eval(ANNOUNCE, keys.length, ...keys, ...args)) as string | null;
    if (id === null) throw lostLock(line, lock);
    return id;
  }

  /** Applies announced updates in order; serialised per line. */
  #catchUp(line: LineRuntime, target?: number): Promise<void> {
    return line.serial.run(async () => {
      await this.#applyAnnounced(line);
      if (target !== undefined && line.version < target) {
        // Not on the stream (trimmed, or Redis lost it): the file has every acknowledged update.
        await this.#load(line).catch((e: unknown) => {
          if (line.refusal !== undefined) {
            // the file is no longer the cluster's: stop taking this line's jobs (others take them)
            line.state = 'refused';
            void line.bull?.pause(true).catch(() => undefined);
          }
          throw e;
        });
        if (line.version < target) {
          throw new HetmmError('E_UNAVAILABLE', `line ${line.name}: the store is at version ${line.version}, the job needs ${target}`);
        }
      }
    });
  }

  async #applyAnnounced(line: LineRuntime): Promise<void> {
    const entries = await this.#redis!.xrange(this.keys.updates(line.name), line.lastId === '0' ? '-' : `(${line.lastId}`, '+');
    for (const [id, fields] of entries) {
      const update = updateFromFields(fields);
      if (update.version > line.version) {
        const before = line.templates;
        if (update.kind === 'append') {
          // Reads only the records appended since this worker last read the
          // file (a few MB per image), whichever version they belong to; a
          // file that was replaced (new lineage) is reloaded whole.
          const r = await this.#compute!.refresh(line.name);
          this.#noteCopy(line, r);
          line.version = r.version;
        } else if (update.kind === 'meta' && update.meta !== undefined) {
          const r = await this.#compute!.setMeta(line.name, update.meta);
          this.#noteCopy(line, r);
          line.version = r.version;
        } else {
          await this.#load(line);
        }
        this.#log(`line ${line.name}: applied version ${update.version} (${update.kind}: ${before} -> ${line.templates} templates)`);
      }
      line.lastId = id;
    }
  }

  /** Applies updates as they are announced, so jobs rarely wait for a catch-up. */
  async #follow(): Promise<void> {
    const redis = this.#follower!;
    const ready = [...this.#lines.values()].filter((l) => l.state === 'ready');
    if (ready.length === 0) return;
    const ids = new Map(ready.map((l) => [l.name, '$']));
    // '$' would miss entries added between catch-up and the first XREAD: start from what was applied.
    for (const l of ready) ids.set(l.name, l.lastId === '0' ? '0' : l.lastId);
    while (!this.#stopping) {
      let reply: [string, [string, string[]][]][] | null;
      try {
        reply = (await redis.xread(
          'BLOCK',
          2000,
          'STREAMS',
          ...ready.map((l) => this.keys.updates(l.name)),
          ...ready.map((l) => ids.get(l.name)!),
        )) as [string, [string, string[]][]][] | null;
      } catch {
        if (this.#stopping) return;
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      for (const [key, entries] of reply ?? []) {
        const line = ready.find((l) => this.keys.updates(l.name) === key);
        if (line === undefined || entries.length === 0) continue;
        ids.set(line.name, entries[entries.length - 1]![0]);
        await this.#catchUp(line).catch((e: unknown) => this.#log(`line ${line.name}: update failed: ${(e as Error).message}`));
      }
    }
  }
}
