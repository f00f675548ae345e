/**
 * Queue-mode settings: defaults follow BullMQ's production guide; the few
 * knobs an operator (or a test) turns are HETMM_QUEUE_* settings of the
 * configuration module (src/config.ts).
 */
import { setting, settingSource, type SettingName } from '../config.js';
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

const SETTING_OF: Record<keyof QueueSettings, SettingName> = {
  prefix: 'queuePrefix',
  inlineImageBytes: 'queueInlineBytes',
  lockDurationMs: 'queueLockMs',
  stalledIntervalMs: 'queueStalledMs',
  maxStalledCount: 'queueMaxStalled',
  keepResultsMs: 'queueKeepResultsMs',
  updateRetention: 'queueUpdateRetention',
  heartbeatMs: 'queueHeartbeatMs',
  syncTimeoutMs: 'queueSyncTimeoutMs',
};

/** The settings: defaults, then the HETMM_QUEUE_* settings (src/config.ts), then explicit overrides. */
export function queueSettings(overrides: Partial<QueueSettings> = {}): QueueSettings {
  const settings: Record<string, string | number> = { ...DEFAULT_QUEUE_SETTINGS };
  for (const [key, name] of Object.entries(SETTING_OF) as [keyof QueueSettings, SettingName][]) {
    const raw = setting(name);
    if (raw === undefined) continue;
    if (key === 'prefix') {
      settings[key] = raw;
      continue;
    }
    const n = Number(raw);
    if (!Number.isInteger(n) || n < (key === 'maxStalledCount' || key === 'inlineImageBytes' ? 0 : 1)) {
      throw new HetmmError('E_ARGUMENT', `Expected a non-negative integer for ${settingSource(name)} but received "${raw}"`);
    }
    settings[key] = n;
  }
  const merged = { ...settings, ...overrides } as unknown as QueueSettings;
  if (!/^[A-Za-z0-9_.-]+$/.test(merged.prefix)) {
    throw new HetmmError('E_ARGUMENT', `Expected a queue prefix of letters, digits, '_', '.', '-' but received "${merged.prefix}"`);
  }
  return merged;
}
