/**
 * Queue mode behind the HTTP API: an InspectionExecutor whose every call is
 * a job on the line's BullMQ queue, run by `hetmm worker` processes on any
 * machine. The routes do not change (`hetmm serve --redis URL`).
 *
 * What it knows about lines (names, template counts, thresholds, which
 * workers are ready) comes from the workers' registrations in Redis,
 * re-read every `heartbeatMs`; versions come from Redis itself. Verdict and
 * store events come from BullMQ's event streams, so every API node's SSE
 * feed shows every node's predictions.
 */
import { EventEmitter } from 'node:events';
import { HetmmError } from '../errors.js';
import { checkThresholdValue } from '../fit/line-state.js';
import { DEFAULT_MAX_PIXELS } from '../image/index.js';
import { ServerError } from '../server/errors.js';
import type {
  BrokenLine,
  ExecutorEvent,
  HotUpdateOptions,
  HotUpdateOutcome,
  ImageUpload,
  InspectionExecutor,
  LineInfo,
  LineLoad,
  NormalsList,
  PredictOutcome,
  PredictRequest,
  RemoveNormalsOutcome,
} from '../server/executor.js';
import { hotUpdateId } from '../store/update-id.js';
import type { BlobStore } from './blob-store.js';
import type { JobResult } from './protocol.js';
import { isUnknownNormalError } from '../store/index.js';
import { QueueClient } from './client.js';
import { clusterMetrics, clusterStatus, type ClusterStatus } from './status.js';
import type { QueueSettings } from './settings.js';

export interface QueueExecutorOptions {
  readonly redisUrl: string;
  readonly blobs: BlobStore;
  readonly settings?: Partial<QueueSettings>;
  /** jobs waiting per line before predictions answer 429; default 64 */
  readonly queueLimit?: number;
  /** the decoder pixel limit per image (`serve --max-pixels`), carried by every job and applied by the workers; default the library's */
  readonly maxPixels?: number;
}

export class QueueExecutor implements InspectionExecutor {
  readonly kind = 'queue';
  readonly client: QueueClient;
  readonly #events = new EventEmitter();
  readonly #queueLimit: number;
  readonly #maxPixels: number;
  readonly #watched = new Set<string>();
  #status: ClusterStatus | undefined;
  #reachable = false;
  #timer: NodeJS.Timeout | undefined;
  #closing = false;

  private constructor(client: QueueClient, options: QueueExecutorOptions) {
    this.client = client;
    this.#queueLimit = options.queueLimit ?? 64;
    this.#maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
    this.#events.setMaxListeners(0);
  }

  /** Connects to Redis (fails with E_UNAVAILABLE when it is not there) and reads the cluster's state once. */
  static async open(options: QueueExecutorOptions): Promise<QueueExecutor> {
    const client = await QueueClient.open({ redisUrl: options.redisUrl, blobs: options.blobs, ...(options.settings ? { settings: options.settings } : {}) });
    const executor = new QueueExecutor(client, options);
    await executor.refresh();
    executor.#timer = setInterval(() => void executor.refresh(), client.settings.heartbeatMs);
    executor.#timer.unref();
    return executor;
  }

  /** Re-reads the workers' registrations and queue counts (also done every heartbeat). */
  async refresh(): Promise<void> {
    try {
      this.#status = await clusterStatus(this.client);
      this.#reachable = true;
      const fresh = this.#status.lines.map((l) => l.line).filter((l) => !this.#watched.has(l));
      fresh.forEach((l) => this.#watched.add(l));
      if (fresh.length > 0) await this.client.onCompleted(fresh, (line, result) => this.#emitResult(line, result));
    } catch {
      this.#reachable = false;
    }
  }

  /** Redis reachable, and every line has at least one worker that loaded its store. */
  ready(): boolean {
    return !this.#closing && this.#reachable && this.#status !== undefined && this.#status.lines.every((l) => l.readyWorkers > 0);
  }

  notReadyReason(): string {
    if (this.#closing) return 'shutting down';
    if (!this.#reachable) return 'Redis is not reachable';
    const unserved = (this.#status?.lines ?? []).filter((l) => l.readyWorkers === 0);
    const why = unserved.map((l) => {
      const errors = (this.#status?.workers ?? []).map((w) => w.lines[l.line]?.error).filter((e) => e !== undefined);
      return `line '${l.line}': no worker serves it${errors.length > 0 ? ` (${errors[0]})` : ''}`;
    });
    return why.join('; ') || 'ready';
  }

  async submitPredict(request: PredictRequest): Promise<string> {
    this.#refuseWhenClosing();
    this.lineInfo(request.line);
    return this.client
      .submitPredict(request.line, request.image, {
        maps: request.maps,
        maxPixels: this.#maxPixels,
        ...(request.id === undefined ? {} : { requestId: request.id }),
        ...(request.minVersion === undefined ? {} : { minVersion: request.minVersion }),
      })
      .catch(serverError);
  }

  async jobStatus(id: string): Promise<Record<string, unknown>> {
    let s;
    try {
      s = await this.client.job(id);
    } catch (e) {
      if (e instanceof HetmmError && e.code === 'E_ARGUMENT') throw new ServerError('E_NOT_FOUND', e.message);
      return serverError(e);
    }
    const result = s.result;
    if (result === undefined || !('maps' in result) || result.maps === undefined) return { ...s };
    // maps as data URLs: an async result is read by whoever polls, any number of times, until it expires
    const maps = Object.fromEntries(
      Object.entries(result.maps).map(([name, bytes]) => [name, `data:${name.endsWith('Png') ? 'image/png' : 'application/octet-stream'};base64,${bytes.toString('base64')}`]),
    );
    return { ...s, result: { ...result, maps } };
  }

  /** The last cluster status read (what /readyz and `hetmm queue status` explain). */
  get status(): ClusterStatus | undefined {
    return this.#status;
  }

  lineNames(): string[] {
    return (this.#status?.lines ?? []).filter((l) => l.version !== null).map((l) => l.line);
  }

  lineInfo(line: string): LineInfo {
    const s = this.#status?.lines.find((l) => l.line === line && l.version !== null);
    if (s === undefined) {
      throw new ServerError('E_NOT_FOUND', `no line named ${JSON.stringify(String(line).slice(0, 80))} (lines: ${this.lineNames().join(', ') || 'none'})`);
    }
    // the description of the most up-to-date ready worker
    const copies = (this.#status?.workers ?? []).map((w) => w.lines[line]).filter((l) => l?.state === 'ready' && l.info !== undefined);
    const best = copies.sort((a, b) => b!.version - a!.version)[0];
    if (best?.info === undefined) throw new ServerError('E_UNAVAILABLE', `no worker serves line '${line}' right now`, { retryAfter: 5 });
    return { name: line, ...best.info, version: s.version! };
  }

  async predict(request: PredictRequest): Promise<PredictOutcome> {
    this.#refuseWhenClosing();
    this.lineInfo(request.line);
    const waiting = this.load().find((l) => l.line === request.line)?.queued ?? 0;
    if (waiting >= this.#queueLimit) {
      throw new ServerError('E_BUSY', `line '${request.line}' has ${waiting} jobs waiting (limit ${this.#queueLimit}): retry later`, { retryAfter: 1 });
    }
    const work = this.client.predict(request.line, request.image, {
      maps: request.maps,
      maxPixels: this.#maxPixels,
      ...(request.id === undefined ? {} : { requestId: request.id }),
      ...(request.minVersion === undefined ? {} : { minVersion: request.minVersion }),
    });
    const r = await abortable(work.catch(serverError), request.signal);
    return {
      line: request.line,
      score: r.score,
      ...(r.label === undefined ? {} : { label: r.label, threshold: r.threshold }),
      templates: r.templates,
      version: r.version,
      width: r.width,
      height: r.height,
      timings: { queue: r.queueTimings.wait, decode: r.timings.decode, backbone: r.timings.backbone, match: r.timings.match, score: r.timings.score, maps: r.timings.maps },
      maps: r.maps,
    };
  }

  async addNormals(line: string, images: readonly ImageUpload[], options: HotUpdateOptions = {}): Promise<HotUpdateOutcome> {
    this.#refuseWhenClosing();
    this.lineInfo(line);
    // Without a client key the job's id names the update: a retry of the job (its worker died) adds nothing twice.
    const update = options.key === undefined ? {} : { update: hotUpdateId(options.key) };
    const r = await abortable(this.client.addNormals(line, images, { ...update, maxPixels: this.#maxPixels }).catch(serverError), options.signal);
    await this.refresh();
    return { line, added: r.added, duplicates: r.duplicates, templates: r.templates, version: r.version, ...(r.ids === undefined ? {} : { ids: r.ids }), ...(r.repeated === true ? { repeated: true } : {}) };
  }

  async listNormals(line: string): Promise<NormalsList> {
    this.lineInfo(line);
    const r = await this.client.listNormals(line).catch(serverError);
    return { line, version: r.version, templates: r.templates, removed: r.removed, normals: r.normals };
  }

  async removeNormals(line: string, ids: readonly string[], options: HotUpdateOptions = {}): Promise<RemoveNormalsOutcome> {
    this.#refuseWhenClosing();
    this.lineInfo(line);
    const update = options.key === undefined ? {} : { update: hotUpdateId(options.key) };
    const r = await abortable(this.client.removeNormals(line, ids, update).catch(unknownNormal), options.signal);
    await this.refresh();
    return { line, removed: r.removed, alreadyRemoved: r.alreadyRemoved, templates: r.templates, version: r.version };
  }

  /** Lines some worker cannot serve: its store failed to load, or the cluster refuses it (another lineage, off the chain). */
  brokenLines(): BrokenLine[] {
    return (this.#status?.workers ?? []).flatMap((w) =>
      Object.entries(w.lines)
        .filter(([, l]) => l.state === 'failed' || l.state === 'refused')
        .map(([line, l]) => ({ line, state: l.state as 'failed' | 'refused', reason: l.error ?? l.state, worker: w.id })),
    );
  }

  async setThreshold(line: string, value: number): Promise<LineInfo> {
    this.#refuseWhenClosing();
    this.lineInfo(line);
    checkThresholdValue(value);
    const r = await this.client.setThreshold(line, value).catch(serverError);
    await this.refresh();
    const info = this.lineInfo(line);
    return { ...info, version: Math.max(info.version, r.version), templates: r.templates };
  }

  async createLine(): Promise<LineInfo> {
    throw new ServerError('E_FORBIDDEN', 'in queue mode lines are fitted with `hetmm fit` into the shared store directory; workers serve them when they start (docs/SCALING.md)');
  }

  async deleteLine(): Promise<void> {
    throw new ServerError('E_FORBIDDEN', 'in queue mode lines are removed by stopping their workers and deleting the store file (docs/SCALING.md)');
  }

  subscribe(listener: (event: ExecutorEvent) => void): () => void {
    this.#events.on('event', listener);
    return () => this.#events.off('event', listener);
  }

  load(): LineLoad[] {
    return (this.#status?.lines ?? []).map((l) => ({
      line: l.line,
      queued: l.counts.waiting + l.counts.prioritized + l.counts.delayed,
      running: l.counts.active,
      queueLimit: this.#queueLimit,
    }));
  }

  /** Prometheus text of the cluster (queue depth, per-worker versions, ...) and BullMQ's own export. */
  async metricsText(): Promise<string> {
    return clusterMetrics(this.client).catch(() => '# the cluster metrics are unavailable: Redis is not reachable\n');
  }

  async close(): Promise<void> {
    this.#closing = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.client.close();
  }

  #refuseWhenClosing(): void {
    if (this.#closing) throw new ServerError('E_UNAVAILABLE', 'the server is shutting down', { retryAfter: 5 });
  }

  #emitResult(line: string, result: JobResult): void {
    const at = new Date().toISOString();
    let event: ExecutorEvent;
    if (result.kind === 'predict') {
      const r = result;
      event = {
        type: 'verdict',
        line,
        ...(r.requestId === undefined ? {} : { id: r.requestId }),
        name: r.name,
        score: r.score,
        ...(r.label === undefined ? {} : { label: r.label, threshold: r.threshold }),
        templates: r.templates,
        version: r.version,
        at,
      };
    } else if (result.kind === 'normals' || result.kind === 'threshold' || result.kind === 'remove') {
      event = {
        type: 'store',
        line,
        change: result.kind === 'remove' ? 'normals' : result.kind,
        templates: result.templates,
        version: result.version,
        ...(result.kind === 'threshold' ? { threshold: result.value } : {}),
        at,
      };
    } else return;
    this.#events.emit('event', event);
  }
}

/** An id the line never held: 404, like an unknown line (the worker's error keeps the library's words). */
function unknownNormal(e: unknown): never {
  if (isUnknownNormalError(e)) throw new ServerError('E_NOT_FOUND', (e as Error).message, { cause: e });
  return serverError(e);
}

/** Redis down and timeouts keep their codes (503); anything else passes through. */
function serverError(e: unknown): never {
  if (e instanceof HetmmError && (e.code === 'E_UNAVAILABLE' || e.code === 'E_TIMEOUT')) {
    throw new ServerError(e.code, e.message, { retryAfter: 2, cause: e });
  }
  throw e;
}

/** The work, or E_TIMEOUT when the request's signal fires first (the job itself may still finish). */
function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) return Promise.reject(new ServerError('E_TIMEOUT', 'the request was cancelled or timed out'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new ServerError('E_TIMEOUT', 'the request was cancelled or timed out before its job finished'));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
