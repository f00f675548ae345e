/**
 * Kernel backend registry (after onnxruntime-common's backend-impl.ts):
 * backends register a lazy loader with a priority; the first request
 * initialises them once (per precision); a backend that fails to load is
 * marked with its reason and skipped from then on. Every use of native code
 * goes through here, so HETMM_BACKEND, the fallback rule and the one warning
 * apply everywhere (matching, int8, the PTS Gram product).
 *
 * Selection: getBackend(preference, { precision }) with preference 'auto'
 * (default) or any registered name ('reference', 'fast', ...). HETMM_BACKEND
 * overrides 'auto' (an explicit non-auto preference wins over it). Precision
 * ('float' | 'int8') defaults to HETMM_MATCH_PRECISION, else 'float'; a
 * backend that cannot match at that precision counts as not loading.
 * - 'auto' tries backends by descending priority and falls back with ONE
 *   warning per process saying why the better backend did not load.
 * - naming a backend that cannot load throws HetmmError('E_BACKEND') with the
 *   loader's reason. A loaded backend's `name` must be the name it was
 *   registered under (pipeline threads and calibration ask for it again by
 *   that name).
 * Capabilities beyond matchLayer (pixelGram, l2NormalisePixels, shared-memory
 * matching) are optional members of the backend (./contract.ts); callers use
 * the chosen backend's, never another backend's behind its back.
 */
import { setting } from '../config.js';
import { HetmmError } from '../errors.js';
import type { BackendLoadOptions, KernelBackend, MatchPrecision } from './contract.js';
import { referenceBackend } from './reference/index.js';

/** 'auto' or the name of a registered backend (the built-in ones: 'reference', 'fast'). */
export type BackendPreference = 'auto' | 'reference' | 'fast' | (string & {});
export type BackendLoader = (options: BackendLoadOptions) => Promise<KernelBackend>;

export interface GetBackendOptions {
  /** default: HETMM_MATCH_PRECISION, else 'float' */
  readonly precision?: MatchPrecision;
}

const PRECISIONS: readonly MatchPrecision[] = ['float', 'int8'];

interface BackendEntry {
  readonly name: string;
  readonly loader: BackendLoader;
  readonly priority: number;
  /** one shared load attempt per backend and precision (lazy, at most once each) */
  readonly attempts: Map<MatchPrecision, Promise<{ backend: KernelBackend } | { reason: string }>>;
}

export interface BackendRegistry {
  registerBackend(name: string, loader: BackendLoader, priority: number): void;
  getBackend(preference?: BackendPreference, options?: GetBackendOptions): Promise<KernelBackend>;
  /** the registered names, in the order registered, without loading anything */
  names(): string[];
  /** names with their priority and load state, for diagnostics (`hetmm doctor`) */
  listBackends(): Promise<Array<{ name: string; priority: number; available: boolean; reason?: string }>>;
}

export interface RegistryOptions {
  /** reads HETMM_BACKEND (default: setting('backend') from ../config.ts) */
  readonly env?: () => string | undefined;
  /** reads HETMM_MATCH_PRECISION (default: setting('matchPrecision') from ../config.ts) */
  readonly precisionEnv?: () => string | undefined;
  /** shows the fallback warning (default: process.emitWarning once per process) */
  readonly warn?: (message: string) => void;
}

function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

function parsePrecision(value: string, source: string): MatchPrecision {
  if ((PRECISIONS as readonly string[]).includes(value)) return value as MatchPrecision;
  throw new HetmmError('E_ARGUMENT', `Expected float or int8 for ${source} but received "${value}"`);
}

/** A fresh registry (tests use their own; the library uses the default one below). */
export function createBackendRegistry(options: RegistryOptions = {}): BackendRegistry {
  const readEnv = options.env ?? (() => setting('backend'));
  const readPrecision = options.precisionEnv ?? (() => setting('matchPrecision'));
  const warn = options.warn ?? warnOncePerProcess;
  const entries = new Map<string, BackendEntry>();

  function parsePreference(value: string, source: string): string {
    if (value === 'auto' || entries.has(value)) return value;
    throw new HetmmError('E_ARGUMENT', `Expected one of ${['auto', ...entries.keys()].join(', ')} for ${source} but received "${value}"`);
  }

  function load(entry: BackendEntry, precision: MatchPrecision): Promise<{ backend: KernelBackend } | { reason: string }> {
    let attempt = entry.attempts.get(precision);
    if (attempt === undefined) {
      attempt = (async () => {
        try {
          const backend = await entry.loader({ precision });
          // a loader that ignores the precision must not pass off float matching as int8
          if ((backend.precision ?? 'float') !== precision) return { reason: `it does not match in ${precision}` };
          // pipeline threads and calibration find a backend again by its name
          if (backend.name !== entry.name) return { reason: `the backend it loads is named "${backend.name}", not "${entry.name}"` };
          return { backend };
        } catch (e) {
          return { reason: describeError(e) };
        }
      })();
      entry.attempts.set(precision, attempt);
    }
    return attempt;
  }

  async function loadNamed(name: string, precision: MatchPrecision): Promise<KernelBackend> {
    const entry = entries.get(name)!;
    const result = await load(entry, precision);
    if ('reason' in result) {
      throw new HetmmError(
        'E_BACKEND',
        precision === 'float'
          ? `Backend "${name}" could not be loaded: ${result.reason}. Unset HETMM_BACKEND or use --backend auto to fall back to the reference backend.`
          : `Backend "${name}" cannot match in ${precision}: ${result.reason}. Use the fast backend on an AVX-512 VNNI CPU, or float precision.`,
      );
    }
    return result.backend;
  }

  return {
    registerBackend(name, loader, priority) {
      if (typeof loader !== 'function') {
        throw new HetmmError('E_ARGUMENT', `Expected a loader function for backend "${name}" but received ${typeof loader}`);
      }
      if (!Number.isFinite(priority)) {
        throw new HetmmError('E_ARGUMENT', `Expected a finite number for the priority of backend "${name}" but received ${priority}`);
      }
      // Re-registering replaces the entry (and forgets an earlier failure), as onnxruntime does.
      entries.set(name, { name, loader, priority, attempts: new Map() });
    },

    async getBackend(preference = 'auto', getOptions = {}) {
      let choice = parsePreference(preference, 'the backend preference');
      if (choice === 'auto') {
        const fromEnv = readEnv();
        if (fromEnv !== undefined && fromEnv !== '') choice = parsePreference(fromEnv, 'HETMM_BACKEND');
      }
      let precision: MatchPrecision = 'float';
      if (getOptions.precision !== undefined) precision = parsePrecision(getOptions.precision, 'the precision option');
      else {
        const fromEnv = readPrecision();
        if (fromEnv !== undefined && fromEnv !== '') precision = parsePrecision(fromEnv, 'HETMM_MATCH_PRECISION');
      }
      if (choice !== 'auto') return loadNamed(choice, precision);

      const ordered = [...entries.values()].sort((a, b) => b.priority - a.priority);
      const failures: string[] = [];
      for (const entry of ordered) {
        const result = await load(entry, precision);
        if ('backend' in result) {
          if (failures.length > 0) {
            warn(
              `hetmm: using the "${entry.name}" kernel backend because ${failures.join('; ')}. ` +
                `Matching will be slower. Set HETMM_BACKEND=${entry.name} to silence this warning.`,
            );
          }
          return result.backend;
        }
        failures.push(`backend "${entry.name}" did not load (${result.reason})`);
      }
      throw new HetmmError('E_BACKEND', `No available kernel backend: ${failures.join('; ') || 'none registered'}`);
    },

    names() {
      return [...entries.keys()];
    },

    async listBackends() {
      const ordered = [...entries.values()].sort((a, b) => b.priority - a.priority);
      const out: Array<{ name: string; priority: number; available: boolean; reason?: string }> = [];
      for (const entry of ordered) {
        const result = await load(entry, 'float');
        out.push(
          'backend' in result
            ? { name: entry.name, priority: entry.priority, available: true }
            : { name: entry.name, priority: entry.priority, available: false, reason: result.reason },
        );
      }
      return out;
    },
  };
}

let fallbackWarned = false;
function warnOncePerProcess(message: string): void {
  if (fallbackWarned) return;
  fallbackWarned = true;
  process.emitWarning(message, { code: 'HETMM_BACKEND_FALLBACK' });
}

/** The native fast backend, imported on first use (the addon loads only then). */
async function loadFastBackend(options: BackendLoadOptions): Promise<KernelBackend> {
  const { loadFastBackend: load } = await import('./fast/index.js');
  return load({ precision: options.precision });
}

/** The TypeScript reference matches in float only. */
async function loadReferenceBackend(options: BackendLoadOptions): Promise<KernelBackend> {
  if (options.precision !== 'float') throw new Error(`the reference backend matches in float only, not ${options.precision}`);
  return referenceBackend;
}

const defaultRegistry = createBackendRegistry();
defaultRegistry.registerBackend('reference', loadReferenceBackend, 0);
defaultRegistry.registerBackend('fast', loadFastBackend, 10);

/** Registers (or replaces) a backend in the default registry. */
export function registerBackend(name: string, loader: BackendLoader, priority: number): void {
  defaultRegistry.registerBackend(name, loader, priority);
}

/** The backend to use: see the module comment for the selection rules. */
export function getBackend(preference: BackendPreference = 'auto', options: GetBackendOptions = {}): Promise<KernelBackend> {
  return defaultRegistry.getBackend(preference, options);
}

/** The names Detector.open's `backend` option accepts besides 'auto' (every registered backend). */
export function registeredBackendNames(): string[] {
  return defaultRegistry.names();
}

/** Every registered backend with whether it loads (in float), and why not. */
export function listBackends(): ReturnType<BackendRegistry['listBackends']> {
  return defaultRegistry.listBackends();
}
