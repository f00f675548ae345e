/**
 * Configuration: every environment variable hetmm reads, with its default,
 * in one typed table. This is the only module that reads `process.env`
 * (test/architecture.test.ts enforces it); everything else asks `setting()`.
 *
 * Precedence for each setting: a value set in code with `configure()`, else
 * the environment variable (an empty value counts as unset), else undefined,
 * and the consumer applies the documented default (the `default` column).
 *
 *   import { configure, setting } from 'hetmm';
 *   configure({ backend: 'reference' });   // like HETMM_BACKEND=reference
 *   setting('backend');                   // 'reference'
 *
 * To add a variable: add one entry to SETTINGS (name, variable, default,
 * description), read it with setting('name'), and add the row to the
 * README table (test/config.test.ts checks the table against SETTINGS).
 */
import os from 'node:os';
import path from 'node:path';
import { HetmmError } from './errors.js';

export interface SettingSpec {
  /** the environment variable */
  readonly variable: string;
  /** the default in words (applied by the consumer) */
  readonly default: string;
  readonly description: string;
}

/** Every setting, in the order of the README table. */
export const SETTINGS = {
  backend: {
    variable: 'HETMM_BACKEND',
    default: 'auto',
    description: 'kernel backend: auto (fast when it loads, else reference with one warning), fast, reference, or any registered name',
  },
  fastVariant: {
    variable: 'HETMM_FAST_VARIANT',
    default: 'best the CPU supports',
    description: 'instruction-set variant of the fast backend: avx512, avx2 or generic',
  },
  matchPrecision: {
    variable: 'HETMM_MATCH_PRECISION',
    default: 'float',
    description: 'matching precision of the fast backend: float or int8 (AVX-512 VNNI)',
  },
  threads: {
    variable: 'HETMM_THREADS',
    default: 'number of CPUs',
    description: 'size of the native kernel thread pool (passed to the addon when it loads: set it, or configure({ threads }), before the first match)',
  },
  nativePath: {
    variable: 'HETMM_NATIVE_PATH',
    default: 'build/Release, then prebuilds/PLATFORM-ARCH',
    description: 'path of a hetmm_native.node addon to load instead of the built or prebuilt one',
  },
  model: {
    variable: 'HETMM_MODEL',
    default: 'model store (cache, local models, npm model package, download)',
    description: 'path of the ONNX backbone model (overridden by --model)',
  },
  cacheDir: {
    variable: 'HETMM_CACHE_DIR',
    default: '~/.cache/hetmm (Linux), ~/Library/Caches/hetmm (macOS), %LOCALAPPDATA%\\hetmm\\Cache (Windows)',
    description: 'directory of downloaded models',
  },
  modelsDir: {
    variable: 'HETMM_MODELS_DIR',
    default: '../shared/models beside the current directory, then beside hetmm',
    description: 'a local directory of model files, looked at after the cache',
  },
  modelHost: {
    variable: 'HETMM_MODEL_HOST',
    default: 'none (no download)',
    description: 'base URL models are downloaded from (HOST/FILE, verified by sha256)',
  },
  token: {
    variable: 'HETMM_TOKEN',
    default: 'none (mutating endpoints disabled)',
    description: 'bearer token of hetmm serve\'s mutating endpoints (overridden by --token-file; at least 16 characters)',
  },
  debug: {
    variable: 'HETMM_DEBUG',
    default: 'off',
    description: 'any value: the CLI prints stack traces with its error messages',
  },
  parityDir: {
    variable: 'HETMM_PARITY_DIR',
    default: '../shared/fixtures/parity',
    description: 'development only: the golden-vector fixtures of npm run test:parity',
  },
  queuePrefix: {
    variable: 'HETMM_QUEUE_PREFIX',
    default: 'hetmm',
    description: 'queue mode: prefix of every Redis key (several clusters can share one Redis)',
  },
  queueInlineBytes: {
    variable: 'HETMM_QUEUE_INLINE_BYTES',
    default: '262144',
    description: 'queue mode: images up to this size travel inside the job; larger ones through the blob directory',
  },
  queueLockMs: {
    variable: 'HETMM_QUEUE_LOCK_MS',
    default: '30000',
    description: 'queue mode: job lock; a worker that stops renewing it (killed, hung) loses its job to another after this',
  },
  queueStalledMs: {
    variable: 'HETMM_QUEUE_STALLED_MS',
    default: '30000',
    description: 'queue mode: how often workers look for jobs whose lock expired',
  },
  queueMaxStalled: {
    variable: 'HETMM_QUEUE_MAX_STALLED',
    default: '1',
    description: 'queue mode: a job whose worker died more often than this fails (no endless retries of a crashing image)',
  },
  queueKeepResultsMs: {
    variable: 'HETMM_QUEUE_KEEP_RESULTS_MS',
    default: '3600000',
    description: 'queue mode: finished jobs and their result maps are kept this long (GET /v1/jobs/{id})',
  },
  queueUpdateRetention: {
    variable: 'HETMM_QUEUE_UPDATE_RETENTION',
    default: '1000',
    description: "queue mode: store updates kept on each line's Redis stream",
  },
  queueHeartbeatMs: {
    variable: 'HETMM_QUEUE_HEARTBEAT_MS',
    default: '2000',
    description: "queue mode: how often a worker publishes its status (store versions, health); it expires after 3 missed beats",
  },
  queueSyncTimeoutMs: {
    variable: 'HETMM_QUEUE_SYNC_TIMEOUT_MS',
    default: '30000',
    description: 'queue mode: how long a synchronous request waits for its job',
  },
  history: {
    variable: 'HETMM_HISTORY',
    default: 'sqlite (with --data-dir), else off',
    description: 'the inspection record of hetmm serve (overridden by --history): sqlite (DATA-DIR/inspections/record.sqlite), off, or a postgres://... URL (queue mode: one record for every API node)',
  },
  historySync: {
    variable: 'HETMM_HISTORY_SYNC',
    default: 'normal',
    description: 'SQLite record durability: normal (an acknowledged inspection survives kill -9, not power loss) or full (also power loss; an fsync per row and file)',
  },
  historyMaxPerLine: {
    variable: 'HETMM_HISTORY_MAX_PER_LINE',
    default: '1000000',
    description: 'inspections kept per line, the oldest dropped first (0: no limit; --history-max-per-line)',
  },
  historyMaxAgeDays: {
    variable: 'HETMM_HISTORY_MAX_AGE_DAYS',
    default: '365',
    description: 'inspections older than this are dropped (0: no limit; --history-max-age-days)',
  },
  historyMaxFileMb: {
    variable: 'HETMM_HISTORY_MAX_FILE_MB',
    default: '10240',
    description: 'disk budget of the record\'s image and heat-map files; the oldest files go first, their rows stay as "image expired" (0: no limit; --history-max-file-mb)',
  },
  shifts: {
    variable: 'HETMM_SHIFTS',
    default: '06:00,14:00,22:00',
    description: 'shift start times of GET /v1/lines/{line}/inspections/counts when the request names none (in the request\'s utcOffset, else UTC)',
  },
} as const satisfies Record<string, SettingSpec>;

export type SettingName = keyof typeof SETTINGS;

/** A set of environment variables (process.env by default; tests pass their own). */
export type Environment = Readonly<Record<string, string | undefined>>;

const overrides = new Map<SettingName, string>();

function checkName(name: string): asserts name is SettingName {
  if (!Object.hasOwn(SETTINGS, name)) {
    throw new HetmmError('E_ARGUMENT', `Expected a setting name (${Object.keys(SETTINGS).join(', ')}) but received "${name}"`);
  }
}

/**
 * The current value of a setting: configure() override, else its environment
 * variable, else undefined. Read at each call, so a change takes effect for
 * whatever loads next (backends are loaded once per process).
 */
export function setting(name: SettingName, env: Environment = process.env): string | undefined {
  checkName(name);
  const set = overrides.get(name);
  if (set !== undefined) return set;
  const value = env[SETTINGS[name].variable];
  return value === undefined || value === '' ? undefined : value;
}

/** Sets settings in code (they win over the environment); undefined or '' removes an override. */
export function configure(values: Partial<Record<SettingName, string | undefined>>): void {
  for (const [name, value] of Object.entries(values)) {
    checkName(name);
    if (value === undefined || value === '') overrides.delete(name);
    else overrides.set(name, value);
  }
}

/**
 * The environment a worker thread starts with (src/threads/): this process's,
 * with every configure() override written as its variable, so that settings
 * made in code reach the threads too (a thread has its own overrides, empty).
 */
export function settingsEnvironment(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const [name, value] of overrides) env[SETTINGS[name].variable] = value;
  return env;
}

/** Where a setting's value came from, for error messages ('HETMM_BACKEND' or 'configure({ backend })'). */
export function settingSource(name: SettingName): string {
  return overrides.has(name) ? `configure({ ${name} })` : SETTINGS[name].variable;
}

/**
 * Turns off onnxruntime's own telemetry before it loads (and before a worker
 * thread that may load it starts: the process environment is shared, a
 * worker's process.env is not). onnxruntime-node 1.30 on Linux starts a
 * telemetry system that reads /proc/self/cmdline with a recursive regex:
 * a command line over about 30 KB (`hetmm predict` with ~400 file paths)
 * overflowed the main thread's stack and killed the process with SIGSEGV.
 * It is also network traffic, which hetmm never makes at run time.
 */
export function disableOnnxruntimeTelemetry(): void {
  process.env.ORT_DISABLE_TELEMETRY = '1';
}

/** The user cache directory for hetmm (HETMM_CACHE_DIR, else the platform convention). */
export function cacheDir(env: Environment = process.env, platform: NodeJS.Platform = process.platform): string {
  const explicit = setting('cacheDir', env);
  if (explicit !== undefined) return path.resolve(explicit);
  const home = os.homedir();
  if (platform === 'win32') return path.join(env['LOCALAPPDATA'] || path.join(home, 'AppData', 'Local'), 'hetmm', 'Cache');
  if (platform === 'darwin') return path.join(home, 'Library', 'Caches', 'hetmm');
  const xdg = env['XDG_CACHE_HOME'];
  return path.join(xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(home, '.cache'), 'hetmm');
}

/** The README table of settings (test/config.test.ts keeps README.md in step with it). */
export function settingsMarkdownTable(): string {
  const rows = Object.entries(SETTINGS).map(
    ([name, s]) => `| \`${s.variable}\` | \`${name}\` | ${s.default} | ${s.description} |`,
  );
  return ['| variable | setting | default | what |', '|---|---|---|---|', ...rows].join('\n');
}
