/**
 * Validation of the detector's public entry points: every option is checked
 * before anything is loaded, and a wrong value is a HetmmError E_ARGUMENT
 * naming the field (`options.threads`, `preset.layers[0].alpha`, ...), never
 * a TypeError or a silent NaN further down.
 */
import { FEATURE_LAYERS } from '../backbone/description.js';
import { HetmmError } from '../errors.js';
import { registeredBackendNames } from '../kernels/registry.js';
import { resolvePreset, validatePreset, type Preset } from '../matching/index.js';
import { resolveTemplateSelection } from '../selection/nearest-templates.js';

const show = (v: unknown): string => {
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (Buffer.isBuffer(v)) return 'a Buffer';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : typeof v;
};

function fail(field: string, expected: string, value: unknown): never {
  throw new HetmmError('E_ARGUMENT', `Expected ${field} to be ${expected} but received ${show(value)}`);
}

function oneOf(field: string, value: unknown, allowed: readonly string[]): void {
  if (value !== undefined && !allowed.includes(value as string)) fail(field, allowed.map((a) => `'${a}'`).join(' or '), value);
}

function positiveInteger(field: string, value: unknown, max = Number.MAX_SAFE_INTEGER): void {
  if (value !== undefined && !(typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= max)) {
    fail(field, `an integer from 1 to ${max}`, value);
  }
}

/** Checks Detector.open's options (the fields it knows; others are left to their owners). */
export function validateDetectorOptions(options: unknown): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) fail('Detector.open(options)', 'an object', options);
  const o = options as Record<string, unknown>;
  if (o.model !== undefined && (typeof o.model !== 'string' || o.model === '')) fail('options.model', 'a path to an .onnx file', o.model);
  // any registered backend (registerBackend), by name, as getBackend takes it
  oneOf('options.backend', o.backend, ['auto', ...registeredBackendNames()]);
  oneOf('options.matchPrecision', o.matchPrecision, ['float', 'int8']);
  oneOf('options.dtype', o.dtype, ['float32', 'float16']);
  positiveInteger('options.threads', o.threads, 1024);
  positiveInteger('options.maxPixels', o.maxPixels);
  if (o.store !== undefined && typeof o.store !== 'string' && (typeof o.store !== 'object' || o.store === null)) {
    fail('options.store', 'a store file path or a TemplateStore', o.store);
  }
  if (typeof o.store === 'string' && o.store === '') fail('options.store', 'a store file path', o.store);
  if (o.preset !== undefined) checkedPreset(o.preset, 'options.preset');
  if (o.templateSelection !== undefined && o.templateSelection !== null) resolveTemplateSelection(o.templateSelection, FEATURE_LAYERS, 'options.templateSelection');
}

/** A preset given by name or object, resolved and validated; errors name `field`. */
export function checkedPreset(value: unknown, field: string): Preset {
  if (typeof value === 'string') return prefixed(field, () => resolvePreset(value));
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(field, 'a preset name or a Preset object', value);
  const p = value as Preset;
  if (typeof p.name !== 'string' || p.name === '') fail(`${field}.name`, 'a non-empty string', p.name);
  if (!Array.isArray(p.layers) || p.layers.length !== FEATURE_LAYERS) fail(`${field}.layers`, `an array of ${FEATURE_LAYERS} layer settings`, p.layers);
  p.layers.forEach((l, i) => {
    if (l === null || typeof l !== 'object') fail(`${field}.layers[${i}]`, '{forwardPatch, backwardPatch, alpha, lambda}', l);
  });
  prefixed(field, () => validatePreset(p));
  return p;
}

function prefixed<T>(field: string, run: () => T): T {
  try {
    return run();
  } catch (e) {
    if (e instanceof HetmmError && e.code === 'E_ARGUMENT') throw new HetmmError('E_ARGUMENT', `${field}: ${e.message}`, { cause: e });
    throw e;
  }
}

/** predict / features: a file path, a Buffer of an image file, or an image from loadImage. */
export function validateImageSource(source: unknown, field: string): void {
  if (typeof source === 'string' && source !== '') return;
  if (Buffer.isBuffer(source) && source.length > 0) return;
  if (typeof source === 'object' && source !== null && (source as { data?: unknown }).data instanceof Float32Array) return;
  fail(field, 'an image file path, a non-empty Buffer or a loaded image', source);
}

/** predictMany: the file list and the number of images in flight. */
export function validatePredictMany(sources: unknown, options: unknown): { concurrency: number; backboneThread: boolean; pipelines: number } {
  if (!Array.isArray(sources)) fail('predictMany(sources)', 'an array of image file paths', sources);
  sources.forEach((s, i) => {
    if (typeof s !== 'string' || s === '') fail(`predictMany(sources)[${i}]`, 'an image file path', s);
  });
  if (options !== undefined && (options === null || typeof options !== 'object')) fail('predictMany(options)', 'an object', options);
  const concurrency = (options as { concurrency?: unknown } | undefined)?.concurrency;
  positiveInteger('options.concurrency', concurrency, 64);
  const backboneThread = (options as { backboneThread?: unknown } | undefined)?.backboneThread;
  if (backboneThread !== undefined && typeof backboneThread !== 'boolean') fail('options.backboneThread', 'a boolean', backboneThread);
  const pipelines = (options as { pipelines?: unknown } | undefined)?.pipelines;
  positiveInteger('options.pipelines', pipelines, 64);
  if (backboneThread === true && pipelines !== undefined && pipelines !== 1) {
    throw new HetmmError('E_ARGUMENT', 'options.backboneThread and options.pipelines > 1 exclude each other (every pipeline runs its own backbone)');
  }
  return { concurrency: (concurrency as number | undefined) ?? 2, backboneThread: backboneThread === true, pipelines: (pipelines as number | undefined) ?? 1 };
}
