/**
 * What the cluster is doing: per line the queue's job counts and store
 * version, per worker its lines (state, version, templates), counters and
 * event-loop delay. Read from Redis by `hetmm queue status`, /readyz and
 * /metrics of an API node in queue mode.
 */
import type { QueueClient } from './client.js';
import type { WorkerStatus } from './worker.js';

export interface LineQueueStatus {
  readonly line: string;
  /** the line's store version in Redis (what new jobs require) */
  readonly version: number | null;
  readonly counts: Readonly<Record<'waiting' | 'active' | 'completed' | 'failed' | 'delayed' | 'prioritized', number>>;
  /** workers whose copy of the line is loaded and ready */
  readonly readyWorkers: number;
}

export interface ClusterStatus {
  readonly lines: readonly LineQueueStatus[];
  readonly workers: readonly WorkerStatus[];
  readonly at: number;
}

export async function clusterStatus(client: QueueClient): Promise<ClusterStatus> {
  const redis = client.redis;
  const keys = client.keys;
  const ids = await redis.smembers(keys.workers());
  const raw = ids.length === 0 ? [] : await redis.mget(...ids.map((id) => keys.worker(id)));
  const workers: WorkerStatus[] = [];
  const gone: string[] = [];
  raw.forEach((value, i) => {
    if (value === null) gone.push(ids[i]!);
    else workers.push(JSON.parse(value) as WorkerStatus);
  });
  if (gone.length > 0) await redis.srem(keys.workers(), ...gone); // registrations that expired (dead workers)
  const names = new Set(await redis.smembers(keys.lines()));
  for (const w of workers) for (const name of Object.keys(w.lines)) names.add(name);
  const lines: LineQueueStatus[] = [];
  for (const line of [...names].sort()) {
    const counts = await client.queue(line).getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized');
    const version = await redis.get(keys.version(line));
    lines.push({
      line,
      version: version === null ? null : Number(version),
      counts: counts as LineQueueStatus['counts'],
      readyWorkers: workers.filter((w) => w.lines[line]?.state === 'ready').length,
    });
  }
  workers.sort((a, b) => a.id.localeCompare(b.id));
  return { lines, workers, at: Date.now() };
}

const label = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/** Prometheus text exposition of a cluster status, plus BullMQ's own per-queue export. */
export async function clusterMetrics(client: QueueClient, status?: ClusterStatus): Promise<string> {
  const s = status ?? (await clusterStatus(client));
  const out: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, rows: Array<[Record<string, string>, number]>): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of rows) {
      const l = Object.entries(labels).map(([k, v]) => `${k}="${label(v)}"`).join(',');
      out.push(`${name}${l ? `{${l}}` : ''} ${Number.isFinite(value) ? value : 0}`);
    }
  };
  metric('hetmm_queue_jobs', 'gauge', 'jobs per line and state', s.lines.flatMap((l) => Object.entries(l.counts).map(([state, n]) => [{ line: l.line, state }, n] as [Record<string, string>, number])));
  metric('hetmm_line_store_version', 'gauge', "the line's store version in Redis", s.lines.filter((l) => l.version !== null).map((l) => [{ line: l.line }, l.version!]));
  metric('hetmm_line_ready_workers', 'gauge', 'workers with the line loaded and ready', s.lines.map((l) => [{ line: l.line }, l.readyWorkers]));
  metric('hetmm_queue_workers', 'gauge', 'registered workers', [[{}, s.workers.length]]);
  const perWorkerLine = (f: (l: WorkerStatus['lines'][string]) => number): Array<[Record<string, string>, number]> =>
    s.workers.flatMap((w) => Object.entries(w.lines).map(([line, l]) => [{ worker: w.id, line }, f(l)] as [Record<string, string>, number]));
  metric('hetmm_worker_store_version', 'gauge', "a worker's store version per line", perWorkerLine((l) => l.version));
  metric('hetmm_worker_templates', 'gauge', "a worker's template count per line", perWorkerLine((l) => l.templates));
  metric('hetmm_worker_line_ready', 'gauge', '1 when the worker serves the line, 0 when its store failed to load or was refused', perWorkerLine((l) => (l.state === 'ready' ? 1 : 0)));
  metric(
    'hetmm_worker_line_refused',
    'gauge',
    "1 when the cluster refuses the worker's store for the line (another lineage or base, or off the version chain)",
    perWorkerLine((l) => (l.state === 'refused' ? 1 : 0)),
  );
  const perWorker = (f: (w: WorkerStatus) => number): Array<[Record<string, string>, number]> => s.workers.map((w) => [{ worker: w.id }, f(w)]);
  metric('hetmm_worker_jobs_processed_total', 'counter', 'jobs completed', perWorker((w) => w.processed));
  metric('hetmm_worker_jobs_failed_total', 'counter', 'jobs failed', perWorker((w) => w.failed));
  metric('hetmm_worker_jobs_retried_total', 'counter', 'jobs started again after an earlier attempt', perWorker((w) => w.retried));
  metric('hetmm_worker_jobs_active', 'gauge', 'jobs in progress', perWorker((w) => w.active));
  metric('hetmm_worker_wait_ms_total', 'counter', 'ms from enqueue to start, summed over completed jobs', perWorker((w) => w.waitMsTotal));
  metric('hetmm_worker_process_ms_total', 'counter', 'ms of processing, summed over completed jobs', perWorker((w) => w.processMsTotal));
  metric('hetmm_worker_event_loop_max_ms', 'gauge', 'largest event-loop delay since start (BullMQ lock renewal runs on this loop)', perWorker((w) => w.eventLoop.maxMs));
  let text = `${out.join('\n')}\n`;
  for (const l of s.lines) text += await client.queue(l.line).exportPrometheusMetrics({ line: l.line });
  return text;
}

/** The status as a few human-readable lines. */
export function formatClusterStatus(s: ClusterStatus): string {
  const rows: string[] = [];
  rows.push(`lines: ${s.lines.length}`);
  for (const l of s.lines) {
    const c = l.counts;
    rows.push(
      `  ${l.line}: version ${l.version ?? '-'}, waiting ${c.waiting + c.prioritized + c.delayed}, active ${c.active}, completed ${c.completed}, failed ${c.failed}, ready workers ${l.readyWorkers}`,
    );
  }
  rows.push(`workers: ${s.workers.length}`);
  for (const w of s.workers) {
    const lines = Object.entries(w.lines)
      .map(([name, l]) => (l.state === 'ready' ? `${name}@v${l.version} (${l.templates})` : `${name} ${l.state.toUpperCase()}${l.error ? `: ${l.error}` : ''}`))
      .join(', ');
    const mean = (total: number): string => (w.processed > 0 ? (total / w.processed).toFixed(1) : '-');
    rows.push(
      `  ${w.id} (pid ${w.pid}): ${lines}; processed ${w.processed}, failed ${w.failed}, retried ${w.retried}, active ${w.active}; ` +
        `mean wait ${mean(w.waitMsTotal)} ms, mean processing ${mean(w.processMsTotal)} ms; event loop max ${w.eventLoop.maxMs.toFixed(1)} ms`,
    );
  }
  return rows.join('\n');
}
