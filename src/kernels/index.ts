/**
 * Kernel backend registry (after onnxruntime-common's backend-impl.ts):
 * backends register a lazy loader with a priority; the first request
 * initialises them once; a backend that fails to load is marked with its
 * reason and skipped from then on.
 *
 * Selection: getBackend(preference) with preference 'auto' (default),
 * 'reference' or 'fast'. The environment variable HETMM_BACKEND=reference|fast
 * overrides 'auto' (an explicit non-auto preference wins over it).
 * - 'auto' tries backends by descending priority and falls back to the
 *   reference with ONE warning per process saying why the better backend did
 *   not load.
 * - naming a backend that cannot load throws HetmmError('E_BACKEND') with the
 *   loader's reason.
 */
import { HetmmError } from '../errors.js';
import type { KernelBackend } from './contract.js';
import { referenceBackend } from './reference/index.js';

export type { FeatureDType, FeatureStack, KernelBackend, MatchOptions, MatchResult, QueryMap } from './contract.js';
export { referenceBackend } from './reference/index.js';

export type BackendPreference = 'auto' | 'reference' | 'fast';
export type BackendLoader = () => Promise<KernelBackend>;

const PREFERENCES: readonly BackendPreference[] = ['auto', 'reference', 'fast'];

interface BackendEntry {
  readonly name: string;
  readonly loader: BackendLoader;
  readonly priority: number;
  /** one shared load attempt per backend (lazy, at most once) */
  attempt?: Promise<{ backend: KernelBackend } | { reason: string }>;
}

export interface BackendRegistry {
  registerBackend(name: string, loader: BackendLoader, priority: number): void;
  getBackend(preference?: BackendPreference): Promise<KernelBackend>;
  /** names with their priority and load state, for diagnostics (`hetmm doctor`) */
  listBackends(): Promise<Array<{ name: string; priority: number; available: boolean; reason?: string }>>;
}

export interface RegistryOptions {
  /** reads HETMM_BACKEND (default: process.env) */
  readonly env?: () => string | undefined;
  /** shows the fallback warning (default: process.emitWarning once per process) */
  readonly warn?: (message: string) => void;
}

function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

function parsePreference(value: string, source: string): BackendPreference {
  if ((PREFERENCES as readonly string[]).includes(value)) return value as BackendPreference;
  throw new HetmmError(
    'E_ARGUMENT',
    `Expected one of ${PREFERENCES.join(', ')} for ${source} but received "${value}"`,
  );
}

/** A fresh registry (tests use their own; the library uses the default one below). */
export function createBackendRegistry(options: RegistryOptions = {}): BackendRegistry {
  const readEnv = options.env ?? (() => process.env['HETMM_BACKEND']);
  const warn = options.warn ?? warnOncePerProcess;
  const entries = new Map<string, BackendEntry>();

  function load(entry: BackendEntry): Promise<{ backend: KernelBackend } | { reason: string }> {
    entry.attempt ??= (async () => {
      try {
        const backend = await entry.loader();
        return { backend };
      } catch (e) {
        return { reason: describeError(e) };
      }
    })();
    return entry.attempt;
  }

  async function loadNamed(name: string): Promise<KernelBackend> {
    const entry = entries.get(name);
    if (entry === undefined) {
      throw new HetmmError(
        'E_BACKEND',
        `Backend "${name}" is not registered (registered: ${[...entries.keys()].join(', ') || 'none'})`,
      );
    }
    const result = await load(entry);
    if ('reason' in result) {
      throw new HetmmError(
        'E_BACKEND',
        `Backend "${name}" could not be loaded: ${result.reason}. Unset HETMM_BACKEND or use --backend auto to fall back to the reference backend.`,
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
      entries.set(name, { name, loader, priority });
    },

    async getBackend(preference = 'auto') {
      let choice = parsePreference(preference, 'the backend preference');
      if (choice === 'auto') {
        const fromEnv = readEnv();
        if (fromEnv !== undefined && fromEnv !== '') choice = parsePreference(fromEnv, 'HETMM_BACKEND');
      }
      if (choice !== 'auto') return loadNamed(choice);

      const ordered = [...entries.values()].sort((a, b) => b.priority - a.priority);
      const failures: string[] = [];
      for (const entry of ordered) {
        const result = await load(entry);
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

    async listBackends() {
      const ordered = [...entries.values()].sort((a, b) => b.priority - a.priority);
      const out: Array<{ name: string; priority: number; available: boolean; reason?: string }> = [];
      for (const entry of ordered) {
        const result = await load(entry);
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

/**
 * Loads the native fast backend. The module is imported through a variable
 * specifier so this file compiles before src/kernels/fast exists; a missing
 * module or a missing export counts as "not available" with a clear reason.
 * When src/kernels/fast/index.ts lands, this may become a plain dynamic import.
 */
async function loadFastBackend(): Promise<KernelBackend> {
  const specifier = './fast/index.js';
  let mod: unknown;
  try {
    mod = await import(specifier);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    // Only the fast module itself being absent means "not built"; a broken import inside it keeps its own message.
    if (code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes('kernels/fast/index.js')) {
      throw new Error('the fast backend is not part of this build (module src/kernels/fast is missing)', { cause: e });
    }
    throw e;
  }
  const loader = (mod as { loadFastBackend?: unknown }).loadFastBackend;
  if (typeof loader !== 'function') {
    throw new Error('src/kernels/fast/index.js does not export loadFastBackend()');
  }
  return (await (loader as () => Promise<KernelBackend> | KernelBackend)()) as KernelBackend;
}

const defaultRegistry = createBackendRegistry();
defaultRegistry.registerBackend('reference', () => Promise.resolve(referenceBackend), 0);
defaultRegistry.registerBackend('fast', loadFastBackend, 10);

/** Registers (or replaces) a backend in the default registry. */
export function registerBackend(name: string, loader: BackendLoader, priority: number): void {
  defaultRegistry.registerBackend(name, loader, priority);
}

/** The backend to use: see the module comment for the selection rules. */
export function getBackend(preference: BackendPreference = 'auto'): Promise<KernelBackend> {
  return defaultRegistry.getBackend(preference);
}

/** Every registered backend with whether it loads, and why not. */
export function listBackends(): ReturnType<BackendRegistry['listBackends']> {
  return defaultRegistry.listBackends();
}
