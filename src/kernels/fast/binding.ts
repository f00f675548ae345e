/**
 * The native addon's exact surface (native/hetmm_native.c), and the only
 * module in hetmm that loads native code. Everything else talks to the fast
 * backend through ./index.ts, which validates arguments before any call lands
 * here: the addon only re-checks what memory safety needs.
 *
 * Which addon file: HETMM_NATIVE_PATH when set, else node-gyp-build's search
 * order from the package root: build/Release (a developer's or a from-source
 * build), build/Debug, then prebuilds/<platform>-<arch>/ (N-API prebuilds
 * shipped in the npm package, so no install script is needed). The addon
 * reports its ABI version; one that differs from NATIVE_ABI_VERSION is
 * refused as stale.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setting, settingSource } from '../../config.js';
import { HetmmError } from '../../errors.js';
import { packageRoot } from '../../package-root.js';

/** The surface version this code expects (HETMM_NATIVE_ABI in native/hetmm_native.c). */
export const NATIVE_ABI_VERSION = 6;

/** Compiled instruction-set variants, best first. */
export const NATIVE_VARIANTS = ['avx512', 'avx2', 'generic'] as const;
export type NativeVariant = (typeof NATIVE_VARIANTS)[number];

export interface NativeInfo {
  /** the best variant this CPU supports (the default) */
  readonly variant: NativeVariant;
  /** every variant this CPU supports, best first */
  readonly variants: readonly NativeVariant[];
  /** size of the persistent kernel thread pool (init's count; 0 before init) */
  readonly threads: number;
  /** whether matchLayerInt8 runs on this CPU (AVX-512 VNNI) */
  readonly int8: boolean;
}

export interface NativeBinding {
  /** the surface version, NATIVE_ABI_VERSION */
  readonly abi: number;
  /**
   * Starts the kernel thread pool with `threads` threads (0: one per CPU),
   * once per process (a later call, e.g. another worker thread's, changes
   * nothing); returns the pool's size. Pooled calls need it first.
   */
  init(threads: number): number;
  info(): NativeInfo;
  /**
   * Forward and backward window matching of one layer (see contract.ts).
   * `variant` '' means the best supported one. Radii are patch >> 1.
   * Writes forwardOut/backwardOut [H*W]; resolves when done.
   */
  matchLayer(
    variant: NativeVariant | '',
    query: Float32Array,
    templates: Float32Array | Uint16Array,
    n: number,
    c: number,
    h: number,
    w: number,
    forwardRadius: number,
    backwardRadius: number,
    forwardOut: Float32Array,
    backwardOut: Float32Array,
    /** match stored templates indices[0..n-1] instead of 0..n-1 (each below the templates the arrays hold) */
    indices?: Int32Array,
  ): Promise<void>;
  /**
   * matchLayer on int8-quantised maps (layout and formula: ../fast/int8.ts).
   * g = ceil(C/4) channel groups; needs w % 16 == 0 and radii <= 7.
   */
  matchLayerInt8(
    query: Uint8Array,
    queryScale: Float32Array,
    templates: Int8Array,
    templateScale: Float32Array,
    templateSum: Int32Array,
    n: number,
    g: number,
    h: number,
    w: number,
    forwardRadius: number,
    backwardRadius: number,
    forwardOut: Float32Array,
    backwardOut: Float32Array,
    /** match stored templates indices[0..n-1] instead of 0..n-1 (each below the templates the arrays hold) */
    indices?: Int32Array,
  ): Promise<void>;
  /**
   * matchLayer, synchronously and single-threaded on the calling thread, with
   * that thread's own scratch: no kernel pool, no lock shared with other
   * threads (one pipeline per core, src/detector/pipelines.ts).
   */
  matchLayerHere(...args: Parameters<NativeBinding['matchLayer']>): void;
  /** matchLayerInt8 synchronously on the calling thread (as matchLayerHere). */
  matchLayerInt8Here(...args: Parameters<NativeBinding['matchLayerInt8']>): void;
  /**
   * Synchronous int8 quantisation of one [C, hw] float32 map into packed
   * 4-channel words (same arithmetic as quantizeMap in ./int8.ts).
   */
  quantizeInt8(
    src: Float32Array,
    c: number,
    hw: number,
    out: Int8Array | Uint8Array,
    scale: Float32Array,
    sums: Int32Array | null,
    offsetBy: number,
  ): void;
  /** Per-pixel Gram matrices: out[(p - p0)*N*N + i*N + j] for flat pixels p in [p0, p1), both halves. */
  pixelGram(
    variant: NativeVariant | '',
    stack: Float32Array | Uint16Array,
    n: number,
    c: number,
    h: number,
    w: number,
    p0: number,
    p1: number,
    out: Float32Array,
  ): Promise<void>;
  /**
   * Synchronous per-pixel L2 normalisation of one [c, hw] map starting at
   * src[srcOffset] into out (native/pixel_norm.c; bit-identical to
   * l2NormalisePixels in src/backbone/backbone.ts).
   */
  l2NormalizePixels(src: Float32Array, srcOffset: number, c: number, hw: number, out: Float32Array): void;
  /**
   * Bytes from the array's first element to the next 64-byte boundary
   * (0-63): the int8 maps are placed there (./int8.ts alignedBytes).
   */
  alignmentOffset(array: ArrayBufferView): number;
}

const FIX =
  'Build it from source with `npm rebuild hetmm` in your project (in a hetmm checkout: `rm -rf build prebuilds && npm run install`); ' +
  'this needs a C compiler, make and python3. If your npm blocks install scripts, allow hetmm\'s ' +
  '(e.g. add "hetmm": true to allowScripts) and rebuild.';

/** hetmm's package root, where build/ and prebuilds/ are. */
function addonRoot(): string {
  const root = packageRoot();
  if (root === undefined) throw new HetmmError('E_BACKEND', `Cannot locate the hetmm package root above ${fileURLToPath(import.meta.url)}`);
  return root;
}

/** The addon file to load (see the module comment), or a HetmmError saying what was searched. */
export function findAddon(root: string = addonRoot()): string {
  const override = setting('nativePath');
  if (override !== undefined) {
    const file = path.resolve(override);
    if (!existsSync(file)) throw new HetmmError('E_BACKEND', `HETMM_NATIVE_PATH names ${file}, which does not exist`);
    return file;
  }
  const nodeGypBuild = createRequire(import.meta.url)('node-gyp-build') as { path(dir: string): string };
  try {
    return nodeGypBuild.path(root);
  } catch (e) {
    throw new HetmmError(
      'E_BACKEND',
      `the native addon was not built (no ${path.join(root, 'build', 'Release')}) and no prebuilt addon in ` +
        `${path.join(root, 'prebuilds')} matches ${process.platform}-${process.arch}. ${FIX}`,
      { cause: e },
    );
  }
}

function checkSurface(v: unknown, file: string): NativeBinding {
  const abi = typeof v === 'object' && v !== null ? (v as { abi?: unknown }).abi : undefined;
  if (abi !== NATIVE_ABI_VERSION) {
    throw new HetmmError(
      'E_BACKEND',
      `the native addon ${file} has ABI version ${String(abi ?? 'none')}, but this hetmm needs ${NATIVE_ABI_VERSION} (a stale build or prebuild). ${FIX}`,
    );
  }
  return v as NativeBinding;
}

let cached: NativeBinding | undefined;

/**
 * The kernel pool size asked for: setting('threads') (configure({ threads })
 * or HETMM_THREADS), 0 (one per CPU) when unset. A value that is not an
 * integer from 1 to 1024 is ignored with a warning, as a typo must not cost
 * the fast backend.
 */
function requestedThreads(): number {
  const value = setting('threads');
  if (value === undefined) return 0;
  const n = Number(value);
  if (/^\d+$/.test(value) && n >= 1 && n <= 1024) return n;
  process.emitWarning(`hetmm: ignoring ${settingSource('threads')}=${value} (expected an integer from 1 to 1024); the kernels use one thread per CPU`, {
    code: 'HETMM_THREADS_IGNORED',
  });
  return 0;
}

/**
 * Loads the addon (findAddon) once per thread, checks its ABI version and
 * starts its kernel pool with the `threads` setting (once per process).
 * Throws HetmmError('E_BACKEND') with the reason and the fix.
 */
export function loadBinding(): NativeBinding {
  if (cached !== undefined) return cached;
  const file = findAddon();
  let loaded: unknown;
  try {
    loaded = createRequire(import.meta.url)(file);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new HetmmError('E_BACKEND', `the native addon ${file} failed to load (${reason}). ${FIX}`, { cause: e });
  }
  const binding = checkSurface(loaded, file);
  try {
    binding.init(requestedThreads());
  } catch (e) {
    throw new HetmmError('E_BACKEND', `the native addon ${file} could not start its kernel threads (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  cached = binding;
  loadedFrom = file;
  return cached;
}

let loadedFrom: string | undefined;

/** The addon file loadBinding loaded, for diagnostics (undefined before). */
export function loadedAddonPath(): string | undefined {
  return loadedFrom;
}
