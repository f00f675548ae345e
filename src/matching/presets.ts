/**
 * HETMM hyper-parameter presets: per-layer window sizes and weights for the
 * ATMM combination, plus anomaly-map post-processing. The per-category values
 * are the paper's MVTec AD settings (official implementation); `default` is
 * the category-agnostic setting.
 */
import { FEATURE_LAYERS } from '../backbone/description.js';
import { HetmmError } from '../errors.js';
import { validateBandCue, type BandCue } from './bands.js';

export interface LayerParams {
  /** odd forward window side f */
  readonly forwardPatch: number;
  /** odd backward window side b */
  readonly backwardPatch: number;
  /** weight of the forward term, in [0, 1]; backward gets 1 - alpha */
  readonly alpha: number;
  /** weight of the layer, >= 0 */
  readonly lambda: number;
}

export type PostProcess =
  | { readonly kind: 'none' }
  | { readonly kind: 'blur'; readonly sigma: number; readonly kernel: number }
  | { readonly kind: 'maxpool_mean'; readonly kernel: number };

export interface Preset {
  readonly name: string;
  readonly layers: readonly [LayerParams, LayerParams, LayerParams];
  /** applied to the raw map before taking the image score */
  readonly image: PostProcess;
  /** applied to the raw map to give the pixel (localisation) map */
  readonly pixel: PostProcess;
  /** map used for the PRO figure, when it differs from `pixel` (official evaluation) */
  readonly pro?: PostProcess;
  /** band cue added to the pixel (and PRO) map, never to the image score; absent = off (./bands.ts) */
  readonly bands?: BandCue;
}

export const MVTEC_CATEGORIES = [
  'bottle', 'cable', 'capsule', 'carpet', 'grid', 'hazelnut', 'leather', 'metal_nut',
  'pill', 'screw', 'tile', 'toothbrush', 'transistor', 'wood', 'zipper',
] as const;
export type MvtecCategory = (typeof MVTEC_CATEGORIES)[number];

const NONE: PostProcess = { kind: 'none' };
const blur = (sigma: number, kernel: number): PostProcess => ({ kind: 'blur', sigma, kernel });
const maxpoolMean = (kernel: number): PostProcess => ({ kind: 'maxpool_mean', kernel });
const layer = (forwardPatch: number, backwardPatch: number, alpha: number, lambda: number): LayerParams => ({
  forwardPatch,
  backwardPatch,
  alpha,
  lambda,
});

function preset(
  name: string,
  layers: [LayerParams, LayerParams, LayerParams],
  image: PostProcess,
  pixel: PostProcess,
  pro: PostProcess = NONE,
): Preset {
  return Object.freeze({ name, layers: Object.freeze(layers), image, pixel, pro });
}

export const DEFAULT_PRESET: Preset = preset(
  'default',
  [layer(5, 3, 0.3, 1), layer(5, 3, 0.3, 1), layer(7, 3, 0.3, 0.8)],
  NONE,
  NONE,
);

/** The paper's per-category MVTec AD settings. */
export const MVTEC_PRESETS: Readonly<Record<MvtecCategory, Preset>> = Object.freeze({
  bottle: preset('bottle', [layer(5, 3, 0.3, 1), layer(5, 3, 0.3, 1), layer(7, 3, 0.3, 0.8)], NONE, blur(4.1, 39)),
  cable: preset('cable', [layer(13, 7, 0.7, 1), layer(5, 5, 0.7, 0.8), layer(7, 1, 0.3, 0.8)], blur(5.5, 39), blur(8.6, 61)),
  capsule: preset('capsule', [layer(13, 7, 0.5, 1), layer(9, 5, 0.5, 0.5), layer(7, 3, 0.3, 0.3)], NONE, blur(7.8, 61), blur(3.6, 11)),
  carpet: preset('carpet', [layer(7, 3, 0.7, 1), layer(9, 1, 0.3, 0.8), layer(3, 1, 0.3, 0.5)], blur(5.5, 35), NONE, blur(3.0, 11)),
  grid: preset('grid', [layer(13, 3, 0.7, 1), layer(9, 1, 0.7, 0.5), layer(7, 1, 0.3, 0.3)], NONE, NONE),
  hazelnut: preset('hazelnut', [layer(13, 3, 0.7, 1), layer(9, 5, 0.7, 0.5), layer(7, 3, 0.3, 0.8)], NONE, NONE),
  leather: preset('leather', [layer(11, 3, 0.5, 1), layer(9, 3, 0.3, 1), layer(7, 3, 0.3, 0.3)], NONE, NONE),
  metal_nut: preset('metal_nut', [layer(13, 5, 0.5, 1), layer(9, 5, 0.3, 0.5), layer(7, 3, 0.3, 0.8)], NONE, blur(15, 61)),
  pill: preset('pill', [layer(11, 5, 0.5, 1), layer(9, 1, 0.7, 0.5), layer(7, 1, 0.3, 0.5)], maxpoolMean(25), blur(15, 61)),
  screw: preset('screw', [layer(5, 3, 0.5, 1), layer(5, 3, 0.7, 0.8), layer(7, 3, 0.3, 0.3)], NONE, blur(3.3, 45), blur(3.1, 17)),
  tile: preset('tile', [layer(13, 7, 0.3, 1), layer(7, 5, 0.3, 0.5), layer(5, 3, 0.3, 0.5)], NONE, NONE),
  toothbrush: preset('toothbrush', [layer(13, 3, 0.3, 1), layer(9, 5, 0.3, 0.8), layer(7, 3, 0.3, 0.5)], NONE, blur(3.0, 11)),
  transistor: preset(
    'transistor',
    [layer(13, 5, 0.3, 1), layer(5, 3, 0.5, 0.5), layer(5, 1, 0.3, 0.8)],
    blur(5.1, 31),
    blur(15, 61),
    blur(6.6, 39),
  ),
  wood: preset('wood', [layer(7, 3, 0.7, 1), layer(5, 3, 0.7, 0.8), layer(7, 1, 0.7, 0.3)], NONE, NONE),
  zipper: preset('zipper', [layer(13, 5, 0.3, 1), layer(7, 5, 0.7, 1), layer(7, 1, 0.7, 0.3)], maxpoolMean(11), blur(10.4, 61), blur(6.0, 31)),
});

export function isMvtecCategory(name: string): name is MvtecCategory {
  return (MVTEC_CATEGORIES as readonly string[]).includes(name);
}

/**
 * Picks a preset: 'default', a category name, or 'auto' (the category's
 * preset when `category` is a known MVTec AD category, else 'default').
 */
export function resolvePreset(nameOrAuto: string, category?: string): Preset {
  if (nameOrAuto === 'auto') {
    return category !== undefined && isMvtecCategory(category) ? MVTEC_PRESETS[category] : DEFAULT_PRESET;
  }
  if (nameOrAuto === 'default') return DEFAULT_PRESET;
  if (isMvtecCategory(nameOrAuto)) return MVTEC_PRESETS[nameOrAuto];
  throw new HetmmError(
    'E_ARGUMENT',
    `Unknown preset "${nameOrAuto}" (expected auto, default or one of ${MVTEC_CATEGORIES.join(', ')})`,
  );
}

// ---------------------------------------------------------------- validation

function fail(message: string): never {
  throw new HetmmError('E_ARGUMENT', message);
}

function checkOddPositive(name: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v % 2 === 0) {
    fail(`Expected an odd positive integer for ${name} but received ${JSON.stringify(v)}`);
  }
}

export function validateLayerParams(p: LayerParams, where = 'layer'): void {
  checkOddPositive(`${where} forward patch`, p.forwardPatch);
  checkOddPositive(`${where} backward patch`, p.backwardPatch);
  if (typeof p.alpha !== 'number' || !(p.alpha >= 0 && p.alpha <= 1)) {
    fail(`Expected alpha in [0, 1] for ${where} but received ${JSON.stringify(p.alpha)}`);
  }
  if (typeof p.lambda !== 'number' || !(p.lambda >= 0) || !Number.isFinite(p.lambda)) {
    fail(`Expected a finite lambda >= 0 for ${where} but received ${JSON.stringify(p.lambda)}`);
  }
}

/** `allowMaxpool`: max-pool-mean yields a number, so it only makes sense for the image score. */
export function validatePostProcess(p: PostProcess, where: string, allowMaxpool: boolean): void {
  switch (p?.kind) {
    case 'none':
      return;
    case 'blur':
      if (typeof p.sigma !== 'number' || !(p.sigma > 0) || !Number.isFinite(p.sigma)) {
        fail(`Expected a finite sigma > 0 for the ${where} blur but received ${JSON.stringify(p.sigma)}`);
      }
      checkOddPositive(`the ${where} blur kernel`, p.kernel);
      return;
    case 'maxpool_mean':
      if (!allowMaxpool) fail(`maxpool_mean gives a single score and cannot be the ${where} post-processing (expected none or blur)`);
      if (typeof p.kernel !== 'number' || !Number.isInteger(p.kernel) || p.kernel < 1) {
        fail(`Expected a positive integer for the ${where} max-pool kernel but received ${JSON.stringify(p.kernel)}`);
      }
      return;
    default:
      fail(`Expected ${where} post-processing of kind none, blur or maxpool_mean but received ${JSON.stringify(p)}`);
  }
}

export function validatePreset(p: Preset): void {
  if (!Array.isArray(p.layers) || p.layers.length !== FEATURE_LAYERS) {
    fail(`Expected exactly ${FEATURE_LAYERS} layer settings in preset "${p.name}" but received ${Array.isArray(p.layers) ? p.layers.length : typeof p.layers}`);
  }
  p.layers.forEach((l, i) => validateLayerParams(l, `layer${i + 1}`));
  validatePostProcess(p.image, 'image', true);
  validatePostProcess(p.pixel, 'pixel', false);
  if (p.pro !== undefined) validatePostProcess(p.pro, 'pro', false);
  if (p.bands !== undefined) validateBandCue(p.bands, `preset "${p.name}" bands`);
}

// ------------------------------------------------------------------- parsing

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function parseNumber(text: string, what: string, spec: string): number {
  const t = text.trim();
  if (!NUMBER.test(t)) fail(`Expected a number for ${what} in "${spec}" but received "${text}"`);
  return Number(t);
}

/** Parses "FxB,alpha,lambda", e.g. "13x3,0.7,1". */
export function parseLayerSpec(spec: string, where = 'layer'): LayerParams {
  const parts = spec.split(',');
  if (parts.length !== 3) {
    fail(`Expected ${where} as "FxB,alpha,lambda" (e.g. "13x3,0.7,1") but received "${spec}"`);
  }
  const patches = parts[0]!.trim().toLowerCase().split('x');
  if (patches.length !== 2) {
    fail(`Expected the ${where} windows as "FxB" (e.g. "13x3") but received "${parts[0]}"`);
  }
  const result: LayerParams = {
    forwardPatch: parseNumber(patches[0]!, 'the forward patch', spec),
    backwardPatch: parseNumber(patches[1]!, 'the backward patch', spec),
    alpha: parseNumber(parts[1]!, 'alpha', spec),
    lambda: parseNumber(parts[2]!, 'lambda', spec),
  };
  validateLayerParams(result, where);
  return result;
}

/** Parses "none" (or "clean"), "blur:SIGMA/K" (e.g. "blur:5.5/39") or "maxpool_mean:K" ("maxpool-mean:K"). */
export function parsePostProcess(spec: string, where = 'post-processing', allowMaxpool = true): PostProcess {
  const text = spec.trim().toLowerCase();
  let result: PostProcess;
  if (text === 'none' || text === 'clean') {
    result = NONE;
  } else if (text.startsWith('blur:')) {
    const args = text.slice(5).split('/');
    if (args.length !== 2) fail(`Expected ${where} blur as "blur:SIGMA/K" (e.g. "blur:5.5/39") but received "${spec}"`);
    result = blur(parseNumber(args[0]!, 'sigma', spec), parseNumber(args[1]!, 'the blur kernel', spec));
  } else if (text.startsWith('maxpool_mean:') || text.startsWith('maxpool-mean:')) {
    result = maxpoolMean(parseNumber(text.slice(13), 'the max-pool kernel', spec));
  } else {
    fail(`Expected ${where} as none, blur:SIGMA/K or maxpool_mean:K but received "${spec}"`);
  }
  validatePostProcess(result, where, allowMaxpool);
  return result;
}

// ----------------------------------------------------------------- overrides

export interface PresetOverrides {
  /** per layer (index 0..2); missing entries keep the preset's values */
  readonly layers?: ReadonlyArray<Partial<LayerParams> | undefined>;
  readonly image?: PostProcess;
  readonly pixel?: PostProcess;
  readonly pro?: PostProcess;
}

/** A new, validated preset with the overrides applied (the input is not modified). */
export function applyOverrides(base: Preset, overrides: PresetOverrides): Preset {
  if (overrides.layers !== undefined && overrides.layers.length > FEATURE_LAYERS) {
    fail(`Expected at most ${FEATURE_LAYERS} layer overrides but received ${overrides.layers.length}`);
  }
  const layers = base.layers.map((l, i) => ({ ...l, ...(overrides.layers?.[i] ?? {}) })) as [
    LayerParams,
    LayerParams,
    LayerParams,
  ];
  const changed =
    (overrides.layers?.some((l) => l !== undefined) ?? false) ||
    overrides.image !== undefined ||
    overrides.pixel !== undefined ||
    overrides.pro !== undefined;
  const result: Preset = {
    name: changed ? `${base.name}+overrides` : base.name,
    layers,
    image: overrides.image ?? base.image,
    pixel: overrides.pixel ?? base.pixel,
    ...(overrides.pro ?? base.pro ? { pro: overrides.pro ?? base.pro } : {}),
    ...(base.bands === undefined ? {} : { bands: base.bands }),
  };
  validatePreset(result);
  return result;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const LAYER_KEYS = ['forwardPatch', 'backwardPatch', 'alpha', 'lambda'] as const;

function layerFromConfig(v: unknown, where: string): Partial<LayerParams> {
  if (typeof v === 'string') return parseLayerSpec(v, where);
  if (!isRecord(v)) fail(`Expected ${where} as "FxB,alpha,lambda" or an object with ${LAYER_KEYS.join(', ')} but received ${JSON.stringify(v)}`);
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(v)) {
    if (!(LAYER_KEYS as readonly string[]).includes(key)) {
      fail(`Unknown key "${key}" in ${where} (expected ${LAYER_KEYS.join(', ')})`);
    }
    if (typeof value !== 'number') fail(`Expected a number for ${where}.${key} but received ${JSON.stringify(value)}`);
    out[key] = value;
  }
  return out as Partial<LayerParams>;
}

function postFromConfig(v: unknown, where: string, allowMaxpool: boolean): PostProcess {
  if (typeof v === 'string') return parsePostProcess(v, where, allowMaxpool);
  if (!isRecord(v)) fail(`Expected ${where} as a string like "blur:5.5/39" or an object with a kind but received ${JSON.stringify(v)}`);
  const p = v as unknown as PostProcess;
  validatePostProcess(p, where, allowMaxpool);
  return p;
}

/**
 * Overrides from a JSON config object: keys layer1..layer3 (a "FxB,alpha,lambda"
 * string or a partial {forwardPatch, backwardPatch, alpha, lambda} object),
 * image / pixel / pro (a post-processing string or {kind, ...} object). The
 * CLI flags --layer1 ... --image-post --pixel-post --pro-post carry the same
 * strings.
 */
export function overridesFromConfig(config: unknown): PresetOverrides {
  if (!isRecord(config)) fail(`Expected a JSON object of preset overrides but received ${JSON.stringify(config)}`);
  const layerKeys = Array.from({ length: FEATURE_LAYERS }, (_, i) => `layer${i + 1}`);
  const known = [...layerKeys, 'image', 'pixel', 'pro'];
  for (const key of Object.keys(config)) {
    if (!known.includes(key)) fail(`Unknown preset override "${key}" (expected one of ${known.join(', ')})`);
  }
  const layers = layerKeys.map((key) => {
    const v = config[key];
    return v === undefined ? undefined : layerFromConfig(v, key);
  });
  return {
    ...(layers.some((l) => l !== undefined) ? { layers } : {}),
    ...(config['image'] !== undefined ? { image: postFromConfig(config['image'], 'image', true) } : {}),
    ...(config['pixel'] !== undefined ? { pixel: postFromConfig(config['pixel'], 'pixel', false) } : {}),
    ...(config['pro'] !== undefined ? { pro: postFromConfig(config['pro'], 'pro', false) } : {}),
  };
}
