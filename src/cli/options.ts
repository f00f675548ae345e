/** Options shared by several commands, defined once (library defaults live in the library). */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { FEATURE_LAYERS } from '../backbone/description.js';
import { Detector, type DetectorOptions } from '../detector/detector.js';
import { HetmmError } from '../errors.js';
import type { BackendPreference } from '../kernels/index.js';
import {
  applyOverrides,
  overridesFromConfig,
  parseLayerSpec,
  parsePostProcess,
  resolvePreset,
  type Preset,
  type PresetOverrides,
} from '../matching/index.js';
import { readFileSync } from 'node:fs';

export const COMMON_OPTIONS = {
  model: { type: 'string' },
  backend: { type: 'string' },
  threads: { type: 'string' },
  quiet: { type: 'boolean', short: 'q', default: false },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

/** `--layer1`, `--layer2`, ...: one option per feature layer the backbone description names (FEATURE_LAYERS). */
type LayerOption = `layer${number}`;
export const LAYER_OPTION_NAMES: readonly LayerOption[] = Array.from({ length: FEATURE_LAYERS }, (_, i): LayerOption => `layer${i + 1}`);
const LAYER_OPTIONS = Object.fromEntries(LAYER_OPTION_NAMES.map((name) => [name, { type: 'string' }])) as Record<LayerOption, { type: 'string' }>;

export const PRESET_OPTIONS = {
  preset: { type: 'string' },
  config: { type: 'string' },
  ...LAYER_OPTIONS,
  'image-post': { type: 'string' },
  'pixel-post': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export function parse<O extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: O,
  usage: string,
): { values: ReturnType<typeof parseArgs<{ options: O; allowPositionals: true; strict: true; args: string[] }>>['values']; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, options, allowPositionals: true, strict: true });
    return { values, positionals };
  } catch (e) {
    throw new HetmmError('E_ARGUMENT', `${e instanceof Error ? e.message : String(e)}\n${usage}`);
  }
}

/** --backend: 'auto' or a registered backend name (the registry rejects unknown names, listing the registered ones). */
export function backendOption(value: string | undefined): BackendPreference | undefined {
  if (value === undefined) return undefined;
  if (value === '') throw new HetmmError('E_ARGUMENT', 'Expected --backend auto, reference, fast or another registered backend but received ""');
  return value;
}

/**
 * Options of every command that reads a batch of images: `--max-pixels N`
 * (decoder limit per image, default 64 Mpx) and `--fail-fast` (stop at the
 * first bad input instead of reporting it and going on: src/cli/batch.ts).
 */
export const INPUT_OPTIONS = {
  'max-pixels': { type: 'string' },
  'fail-fast': { type: 'boolean', default: false },
} as const satisfies ParseArgsConfig['options'];

export function maxPixelsOption(values: { 'max-pixels'?: string }): { maxPixels?: number } {
  const n = intOption(values['max-pixels'], 'max-pixels', 1);
  return n === undefined ? {} : { maxPixels: n };
}

/**
 * `--precision float|int8` (backbone and matching together; `--int8` is an
 * alias of `--precision int8`): docs/PERFORMANCE.md.
 */
export const INT8_OPTION = {
  int8: { type: 'boolean', default: false },
  precision: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export function precisionOption(values: { int8?: boolean; precision?: string }): { precision?: 'float' | 'int8' } {
  const p = values.precision;
  if (p !== undefined && p !== 'float' && p !== 'int8') throw new HetmmError('E_ARGUMENT', `Expected --precision float or int8 but received "${p}"`);
  if (values.int8 && p === 'float') throw new HetmmError('E_ARGUMENT', '--int8 contradicts --precision float');
  const precision = values.int8 ? 'int8' : p;
  return precision === undefined ? {} : { precision };
}


/**
 * Detector.open with the COMMON_OPTIONS every detector command takes
 * (--model, --backend, --threads), plus the command's own options (store,
 * preset, dtype).
 */
export function openDetector(
  values: { model?: string; backend?: string; threads?: string },
  extra: Parameters<typeof Detector.open>[0] = {},
): Promise<Detector> {
  return Detector.open({ ...detectorOptions(values), ...extra });
}

/** The DetectorOptions of COMMON_OPTIONS (for fitStore, which opens its detector itself). */
export function detectorOptions(values: { model?: string; backend?: string; threads?: string }): DetectorOptions {
  const threads = intOption(values.threads, 'threads');
  const backend = backendOption(values.backend);
  return { ...(values.model === undefined ? {} : { model: values.model }), ...(backend === undefined ? {} : { backend }), ...(threads === undefined ? {} : { threads }) };
}

export function intOption(value: string | undefined, name: string, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new HetmmError('E_ARGUMENT', `Expected an integer >= ${min} for --${name} but received "${value}"`);
  }
  return n;
}

export function numberOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new HetmmError('E_ARGUMENT', `Expected a number for --${name} but received "${value}"`);
  return n;
}

/**
 * The preset for a run: --preset (name or 'auto' with a category), then a
 * JSON --config, then per-layer/per-metric CLI overrides, in that order.
 */
export function presetFromOptions(
  values: { preset?: string; config?: string; 'image-post'?: string; 'pixel-post'?: string } & Partial<Record<LayerOption, string>>,
  fallback: string,
  category?: string,
): Preset | undefined {
  const layers = LAYER_OPTION_NAMES.map((name) => values[name]);
  const any = values.preset ?? values.config ?? layers.find((l) => l !== undefined) ?? values['image-post'] ?? values['pixel-post'];
  if (any === undefined && fallback === '') return undefined;
  let preset = resolvePreset(values.preset ?? (fallback || 'default'), category);
  if (values.config !== undefined) {
    let config: unknown;
    try {
      config = JSON.parse(readFileSync(values.config, 'utf8'));
    } catch (e) {
      throw new HetmmError('E_ARGUMENT', `cannot read --config ${values.config}: ${e instanceof Error ? e.message : String(e)}`);
    }
    preset = applyOverrides(preset, overridesFromConfig(config));
  }
  const cli: { -readonly [K in keyof PresetOverrides]: PresetOverrides[K] } = {};
  if (layers.some((l) => l !== undefined)) {
    cli.layers = layers.map((l, i) => (l === undefined ? undefined : parseLayerSpec(l, `--${LAYER_OPTION_NAMES[i]!}`))) as PresetOverrides['layers'];
  }
  if (values['image-post'] !== undefined) cli.image = parsePostProcess(values['image-post'], '--image-post', true);
  if (values['pixel-post'] !== undefined) cli.pixel = parsePostProcess(values['pixel-post'], '--pixel-post', false);
  return Object.keys(cli).length > 0 ? applyOverrides(preset, cli) : preset;
}
