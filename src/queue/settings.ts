/**
 * Queue-mode settings: defaults follow BullMQ's production guide; the few
 * knobs an operator (or a test) turns come from the environment, read here
 * and nowhere else so the configuration module (issue 9) can take them over.
 */
import { HetmmError } from '../errors.js';

export interface QueueSettings {
  /** key prefix of every hetmm key in Redis (several clusters can share one Redis) */
  readonly prefix: string;
  /** images up to this many bytes travel inside the job; larger ones through the blob store */
  readonly inlineImageBytes: number;
  /** BullMQ job lock: a worker that stops renewing it (killed, hung) loses the job after this */
  readonly lockDurationMs: number;
  /** how often workers look for jobs whose lock expired */
  readonly stalledIntervalMs: number;
  /** a job whose worker died this many times fails (a poison image that crashes workers is not retried forever) */
  readonly maxStalledCount: number;
  /** completed/failed jobs (and their result blobs) are kept this long for GET /v1/jobs/{id} */
  readonly keepResultsMs: number;
  /** store updates kept on each line's stream; a worker further behind reloads the store file */
  readonly updateRetention: number;
  /** a worker's registration (store versions, health) expires unless refreshed this often x3 */
  readonly heartbeatMs: number;
  /** default wait of a synchronous predict */
  readonly syncTimeoutMs: number;
}

export const DEFAULT_QUEUE_SETTINGS: QueueSettings = {
  prefix: 'hetmm',
  inlineImageBytes: 256 * 1024,
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
  maxStalledCount: 1,
  keepResultsMs: 3_600_000,
  updateRetention: 1000,
  heartbeatMs: 2_000,
  syncTimeoutMs: 30_000,
};

const ENV_KEYS: Record<keyof QueueSettings, string> = {
  prefix: 'HETMM_QUEUE_PREFIX',
  inlineImageBytes: 'HETMM_QUEUE_INLINE_BYTES',
  lockDurationMs: 'HETMM_QUEUE_LOCK_MS',
  stalledIntervalMs: 'HETMM_QUEUE_STALLED_MS',
  maxStalledCount: 'HETMM_QUEUE_MAX_STALLED',
  keepResultsMs: 'HETMM_QUEUE_KEEP_RESULTS_MS',
  updateRetention: 'HETMM_QUEUE_UPDATE_RETENTION',
  heartbeatMs: 'HETMM_QUEUE_HEARTBEAT_MS',
  syncTimeoutMs: 'HETMM_QUEUE_SYNC_TIMEOUT_MS',
};

/** The settings: defaults, then HETMM_QUEUE_* environment variables, then explicit overrides. */
export function queueSettings(overrides: Partial<QueueSettings> = {}, env: NodeJS.ProcessEnv = process.env): QueueSettings {
  const settings: Record<string, string | number> = { ...DEFAULT_QUEUE_SETTINGS };
  for (const [key, name] of Object.entries(ENV_KEYS) as [keyof QueueSettings, string][]) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    if (key === 'prefix') {
      settings[key] = raw;
      continue;
    }
    const n = Number(raw);
    if (!Number.isInteger(n) || n < (key === 'maxStalledCount' || key === 'inlineImageBytes' ? 0 : 1)) {
      throw new HetmmError('E_ARGUMENT', `Expected a non-negative integer for ${name} but received "${raw}"`);
    }
    settings[key] = n;
  }
  const merged = { ...settings, ...overrides } as unknown as QueueSettings;
  if (!/^[A-Za-z0-9_.-]+$/.test(merged.prefix)) {
    throw new HetmmError('E_ARGUMENT', `Expected a queue prefix of letters, digits, '_', '.', '-' but received "${merged.prefix}"`);
  }
  return merged;
}
