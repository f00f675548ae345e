/**
 * Label-free preset tuning (`hetmm fit --preset tune`): chooses the per-layer
 * windows, alpha/lambda and the pixel post-processing for a new part from
 * its normal images alone. docs/TUNING.md has the search space, the proxy
 * and the measurements.
 *
 * 1. Hold out H normals of the store (evenly spaced). Each is matched
 *    leave-one-out (the store without itself), as a new good part.
 * 2. Make synthetic defects on each held-out image (./synthetic.ts), of the
 *    kinds in `kinds` (default: a CutPaste rectangle from another normal and
 *    a thin crack), at least MIN_DEFECTS in all. Their masks are the ground
 *    truth, and the proxy is averaged per kind.
 * 3. For each window setting (in a fixed order, until the time budget is
 *    spent) match the clean and defective held-out images once (int8 where
 *    the CPU has it), then score every alpha/lambda/post-processing
 *    combination on the cached match results: proxy image AUROC (clean vs
 *    defective), pixel AUROC and AUPRO, on maps combined directly at a
 *    quarter of the input size per side (blur sigmas scaled to match):
 *    16x less work per candidate.
 * 4. Pick the candidate with the best mean of the three proxy metrics; the
 *    default preset wins unless beaten by more than `minGain`, and a blur
 *    unless it beats the same weights without blur by more than `minGain`.
 * 5. On a surface (not an object), choose the band cue's weight
 *    (chooseBands, ../matching/bands.ts).
 *
 * Deterministic for a given seed, store and budget (the budget only stops
 * the search between window settings, and is checked by wall time: a much
 * slower machine may try fewer windows).
 */
import type { Detector } from '../detector/detector.js';
import { evenSample } from '../detector/calibrate.js';
import { getBackend, type KernelBackend } from '../kernels/index.js';
import { HetmmError } from '../errors.js';
import type { LoadedImage } from '../image/index.js';
import type { MatchResult } from '../kernels/contract.js';
import {
  bandMap,
  bandProfile,
  bandStatistics,
  combineLayers,
  DEFAULT_PRESET,
  gaussianBlur,
  mapMax,
  validatePreset,
  type LayerParams,
  type PostProcess,
  type Preset,
} from '../matching/index.js';
import { templateFeatures } from '../store/feature-stack.js';
import { aupro, imageAuroc, pixelAuroc } from '../metrics/index.js';
import { makeRng, synthesizeDefect, type SyntheticKind } from './synthetic.js';

export interface TuneOptions {
  /** random seed of the synthetic defects; default 0 */
  readonly seed?: number;
  /** wall-time budget in seconds, checked between window settings; default 240 */
  readonly budgetSeconds?: number;
  /** held-out normals; default min(12, max(2, N / 4)) */
  readonly holdOut?: number;
  /** synthetic defects per held-out normal; default one of each kind, more (of each kind alike) until there are at least 24 */
  readonly defectsPerImage?: number;
  /** kinds of synthetic defects; default TUNE_KINDS */
  readonly kinds?: readonly SyntheticKind[];
  /** window settings to try, in order; default TUNE_WINDOWS (the first should be the default preset's) */
  readonly windows?: readonly Windows[];
  /** a candidate must beat the default's proxy objective by more than this; default 0.002 */
  readonly minGain?: number;
  /** try the band cue (docs/TUNING.md, "The band cue") on the chosen preset; default true */
  readonly bands?: boolean;
  /** the band cue is tried only when the normals' band structure (BandChoice.structure) is below this; default BAND_MAX_STRUCTURE */
  readonly bandMaxStructure?: number;
  /**
   * tune only when the store has at least this many normals, else keep the
   * detector's preset and say so (fitStore); absent: tune whatever the count
   * (at least 3, or E_ARGUMENT)
   */
  readonly minNormals?: number;
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * The fewest normals a fit tunes on when nobody chose a preset. With 5, two
 * are held out and each is matched against 4 (leave-one-out): the smallest
 * bundled set, MVTec bottle with 5 normals, tuned to at least the default on
 * every metric (docs/RESULTS.md). Below it the proxy matches a held-out image
 * against 1-3 templates, which is not the line it will run as.
 */
export const MIN_TUNE_NORMALS = 5;

/** The tuning of a fit that names no preset (every door): `base`'s seed and budget, only with MIN_TUNE_NORMALS normals or more. */
export function autoTune(base: TuneOptions = {}): TuneOptions {
  return { ...base, minNormals: MIN_TUNE_NORMALS };
}

export interface ProxyScores {
  readonly image_auroc: number;
  readonly pixel_auroc: number;
  readonly aupro: number;
}

/** What meta.tuning of a tuned store records (and `hetmm info` shows). */
export interface TuneRecord {
  /** the chosen preset in CLI words, e.g. "13x3,0.5,1 9x3,0.5,0.5 7x3,0.3,0.8 pixel none" */
  readonly summary: string;
  readonly proxy: ProxyScores;
  readonly defaultProxy: ProxyScores;
  readonly seed: number;
  readonly heldOut: number;
  readonly syntheticDefects: number;
  readonly kinds: readonly SyntheticKind[];
  readonly candidates: number;
  readonly windowsTried: number;
  readonly seconds: number;
  readonly budgetSeconds: number;
  readonly matching: 'int8' | 'detector';
  /** the band cue's choice (absent when not tried): its weight (0 = off) and proxies with and without it */
  readonly bands?: BandChoice;
}

/** The band cue step of a tuning (docs/TUNING.md, "The band cue"). */
export interface BandChoice {
  /** 0: off */
  readonly weight: number;
  /**
   * RMS of the normals' mean band profile / their mean per-band standard
   * deviation: high for an object on a background (the profile follows its
   * outline), low for a surface. The weights are tried only below the limit.
   */
  readonly structure: number;
  /** the weights tried (0 first; none when the structure is too high) */
  readonly weights: readonly number[];
  /** the kinds the weight was chosen on: the tuning's kinds plus `region` */
  readonly kinds: readonly SyntheticKind[];
  /** proxies with the chosen weight and with none (absent when no weight was tried) */
  readonly proxy?: ProxyScores;
  readonly proxyWithout?: ProxyScores;
  readonly seconds: number;
}

/** The band cue is tried only on parts whose normals' band structure is below this (docs/TUNING.md, "The band cue"). */
export const BAND_MAX_STRUCTURE = 1;

export interface TuneResult {
  readonly preset: Preset;
  readonly record: TuneRecord;
  readonly notes: string[];
  /** every candidate scored, in search order (not stored) */
  readonly table: readonly CandidateScores[];
  /** the band cue step's weights scored, per kind (not stored; absent when the step did not run) */
  readonly bandTable?: readonly BandScores[];
}

export interface BandScores {
  readonly weight: number;
  readonly proxy: ProxyScores;
  readonly perKind: Partial<Record<SyntheticKind, ProxyScores>>;
}

export interface CandidateScores {
  readonly preset: Preset;
  readonly proxy: ProxyScores;
  /** the proxy on each kind of synthetic defect alone (with the clean held-out images); `proxy` is their mean */
  readonly perKind: Partial<Record<SyntheticKind, ProxyScores>>;
}

export type Windows = readonly [readonly [number, number], readonly [number, number], readonly [number, number]];

/**
 * The search space (docs/TUNING.md). Windows are (forward, backward) per
 * layer, tried in this order: the default first, then the settings of the
 * paper's MVTec presets that recur most, then smaller and larger ones.
 */
export const TUNE_WINDOWS: readonly Windows[] = [
  [[5, 3], [5, 3], [7, 3]],
  [[13, 3], [9, 5], [7, 3]],
  [[13, 3], [9, 1], [7, 1]],
  [[9, 3], [7, 3], [7, 3]],
  [[3, 1], [3, 1], [3, 1]],
  [[3, 3], [3, 3], [5, 3]],
  [[13, 5], [9, 5], [7, 3]],
  [[7, 3], [5, 3], [5, 3]],
];
export const TUNE_ALPHAS: readonly (readonly [number, number, number])[] = [
  [0.3, 0.3, 0.3],
  [0.5, 0.5, 0.3],
  [0.7, 0.7, 0.3],
  [0.7, 0.7, 0.7],
];
export const TUNE_LAMBDAS: readonly (readonly [number, number, number])[] = [
  [1, 1, 0.8],
  [1, 0.5, 0.3],
  [1, 0.5, 0.8],
  [1, 1, 0.3],
  [0.5, 1, 1],
];
export const TUNE_PIXEL_POSTS: readonly PostProcess[] = [
  { kind: 'none' },
  { kind: 'blur', sigma: 2, kernel: 13 },
  { kind: 'blur', sigma: 4, kernel: 25 },
];

/** The kinds of synthetic defects a tuning makes by default (docs/TUNING.md: which kinds track the real metrics). */
export const TUNE_KINDS: readonly SyntheticKind[] = ['cutpaste', 'crack'];

/** Fewest synthetic defects a tuning makes by default (more per held-out image when few are held out). */
const MIN_DEFECTS = 24;

/** Proxy maps are combined at 1/4 of the input size per side (masks: every 4th pixel): 16x less work per candidate. */
const SUBSAMPLE = 4;

interface Query {
  /** store index of the held-out normal (left out while matching) */
  readonly exclude: number;
  readonly features: Float32Array[];
  /** subsampled ground truth; all zeros for a clean image */
  readonly mask: Uint8Array;
  readonly label: 0 | 1;
  /** the synthetic defect's kind (none for a clean image) */
  readonly kind?: SyntheticKind;
  /** the image's band profile (for the band cue step) */
  readonly profile: Float32Array;
}

/** The band cue's candidate weights, as fractions of the mean pixel map value of the clean held-out normals. */
export const TUNE_BAND_FRACTIONS: readonly number[] = [0.25, 0.5, 1];

/** Synthetic kind added for the band cue step: a large region of changed shading. */
const BAND_KIND: SyntheticKind = 'region';

export async function tunePreset(detector: Detector, options: TuneOptions = {}): Promise<TuneResult> {
  const t0 = performance.now();
  const seed = options.seed ?? 0;
  const budget = options.budgetSeconds ?? 240;
  const kinds = options.kinds ?? TUNE_KINDS;
  const perImageOption = options.defectsPerImage;
  const minGain = options.minGain ?? 0.002;
  const snapshot = detector.store.snapshot();
  const n = snapshot.count;
  if (n < 3) throw new HetmmError('E_ARGUMENT', `preset tuning needs at least 3 normal images (2 to match against), the store has ${n}`);
  if (snapshot.files.length < n) throw new HetmmError('E_ARGUMENT', 'preset tuning needs the image files of the templates (a PTS store has sheets, not images)');
  const holdOut = Math.min(n, options.holdOut ?? Math.min(12, Math.max(2, Math.floor(n / 4))));
  const held = evenSample(n, holdOut);
  // one of each kind per held-out image, more when few are held out (at least MIN_DEFECTS in all: a smaller proxy is noise)
  const perImage = perImageOption ?? kinds.length * Math.max(1, Math.ceil(MIN_DEFECTS / (held.length * kinds.length)));
  const [height, width] = detector.backbone.identity.inputSize;
  const notes: string[] = [];

  // ---- held-out queries: clean (stored features) and synthetic defects
  const rng = makeRng(seed);
  const images: LoadedImage[] = [];
  for (const i of held) images.push(await detector.loadImage(snapshot.files[i]!));
  const queries: Query[] = [];
  const [mapH, mapW] = [Math.ceil(height / SUBSAMPLE), Math.ceil(width / SUBSAMPLE)];
  const cleanMask = new Uint8Array(mapH * mapW);
  for (const [k, i] of held.entries()) {
    queries.push({ exclude: i, features: templateFeatures(snapshot.layers, i), mask: cleanMask, label: 0, profile: profileOf(images[k]!) });
    for (let d = 0; d < perImage; d++) {
      const kind = kinds[d % kinds.length]!;
      // the donor is another held-out normal (the image itself only when it is the only one held out)
      const others = images.length - 1;
      const donor = others === 0 ? images[k]! : images[(k + 1 + (d % others)) % images.length]!;
      const synthetic = synthesizeDefect(images[k]!, donor, kind, rng);
      const { features } = await detector.features(synthetic.image);
      queries.push({ exclude: i, features, mask: subsample(synthetic.mask, height, width), label: 1, kind, profile: profileOf(synthetic.image) });
    }
  }

  // ---- search
  const backend = await rankingBackend(detector);
  const layerShapes = detector.backbone.identity.layers.map((l) => [l.height, l.width] as const);
  const windowList = options.windows ?? TUNE_WINDOWS;
  const saved = detector.preset;
  const table: CandidateScores[] = [];
  let best: { preset: Preset; proxy: ProxyScores; objective: number; results: MatchResult[][] } | undefined;
  let defaultProxy: ProxyScores | undefined;
  let defaultResults: MatchResult[][] | undefined;
  let windowsTried = 0;
  const total = windowList.length;
  const labels = queries.map((q) => q.label);
  const byKind = [...new Set(kinds)].map((kind) => ({ kind, pick: queries.map((q) => q.kind === undefined || q.kind === kind) }));
  try {
    for (const windows of windowList) {
      if (windowsTried > 0 && (performance.now() - t0) / 1000 > budget) {
        notes.push(`preset tuning stopped at its ${budget} s budget after ${windowsTried} of ${total} window settings`);
        break;
      }
      detector.preset = presetOf(windows, [0.3, 0.3, 0.3], [1, 1, 1], { kind: 'none' });
      const results: MatchResult[][] = [];
      for (const q of queries) {
        results.push((await detector.matchFeatures(q.features, { exclude: q.exclude, ...(backend === undefined ? {} : { backend }) })).results);
      }
      for (const [alphas, lambdas] of weightCandidates(results.filter((_, k) => queries[k]!.label === 0))) {
        const raw = results.map((r) => combine(r, layerShapes, alphas, lambdas, mapH, mapW));
        const scores = raw.map((m) => mapMax(m));
        // a blur must beat the same weights without one by more than minGain to be chosen (no blur comes first)
        let plainObjective = -Infinity;
        for (const pixel of TUNE_PIXEL_POSTS) {
          const maps = pixel.kind === 'blur' ? raw.map((m) => gaussianBlur(m, mapH, mapW, pixel.sigma / SUBSAMPLE, smallKernel(pixel.kernel))) : raw;
          // each kind counts equally, whatever its area (a large kind would dominate pooled pixel metrics)
          const perKind: Partial<Record<SyntheticKind, ProxyScores>> = {};
          for (const { kind, pick } of byKind) {
            const sel = <T>(a: readonly T[]): T[] => a.filter((_, k) => pick[k]);
            perKind[kind] = proxyScores(sel(scores), sel(maps), sel(queries), sel(labels), mapW);
          }
          const proxy = meanScores(Object.values(perKind));
          const objective = objectiveOf(proxy);
          const preset = presetOf(windows, alphas, lambdas, pixel);
          table.push({ preset, proxy, perKind });
          if (sameSettings(preset, DEFAULT_PRESET)) {
            defaultProxy = proxy;
            defaultResults = results;
          }
          if (pixel.kind === 'none') plainObjective = objective;
          const eligible = pixel.kind === 'none' || objective > plainObjective + minGain;
          if (eligible && (best === undefined || objective > best.objective)) best = { preset, proxy, objective, results };
        }
      }
      windowsTried++;
      options.onProgress?.(windowsTried, total);
    }
  } finally {
    detector.preset = saved;
  }
  // the default preset's own settings are candidates when the default windows come first
  if (defaultProxy === undefined) throw new HetmmError('E_ARGUMENT', 'preset tuning: the first window setting must be the default preset\'s');
  const defaultObjective = objectiveOf(defaultProxy);
  const chosen =
    best!.objective > defaultObjective + minGain ? best! : { preset: DEFAULT_PRESET, proxy: defaultProxy, objective: defaultObjective };
  let preset: Preset = chosen.preset === DEFAULT_PRESET ? DEFAULT_PRESET : { ...chosen.preset, name: 'tuned' };
  if (preset === DEFAULT_PRESET) notes.push('preset tuning kept the default preset: no candidate beat it on the synthetic defects');
  let bandChoice: BandChoice | undefined;
  let bandTable: BandScores[] | undefined;
  if (options.bands ?? true) {
    // the chosen preset's match results: the best candidate's, or the default windows' when the default was kept
    const results = chosen === best ? best.results : defaultResults;
    const maxStructure = options.bandMaxStructure ?? BAND_MAX_STRUCTURE;
    const step = await chooseBands({ detector, snapshot, held, images, queries, preset, results, backend, kinds, perImage, rng, minGain, maxStructure, mapH, mapW, layerShapes });
    bandChoice = step.choice;
    bandTable = step.table;
    if (step.cue !== undefined) {
      preset = { ...preset, name: 'tuned', bands: step.cue };
      notes.push(`preset tuning added the band cue at weight ${step.cue.weight}`);
    }
  }
  validatePreset(preset);
  const seconds = (performance.now() - t0) / 1000;
  return {
    preset,
    notes,
    table,
    ...(bandTable === undefined ? {} : { bandTable }),
    record: {
      summary: summarize(preset),
      proxy: chosen.proxy,
      defaultProxy,
      seed,
      heldOut: held.length,
      syntheticDefects: queries.filter((q) => q.label === 1).length,
      kinds: [...kinds],
      candidates: table.length,
      windowsTried,
      seconds,
      budgetSeconds: budget,
      matching: backend === undefined ? 'detector' : 'int8',
      ...(bandChoice === undefined ? {} : { bands: bandChoice }),
    },
  };
}

/**
 * The band cue step (docs/TUNING.md, "The band cue"): on the chosen preset,
 * adds `region` defects (a large region of changed shading) to the held-out
 * queries, and scores the band cue at weights TUNE_BAND_FRACTIONS x the
 * clean held-out images' mean pixel map value, with per-band statistics of
 * the normals that are not held out. The best weight is kept when it beats
 * no cue by more than `minGain` on the mean proxy over the tuning's kinds
 * plus `region`; the stored statistics are then those of all normals.
 */
async function chooseBands(c: {
  detector: Detector;
  snapshot: ReturnType<Detector['store']['snapshot']>;
  held: readonly number[];
  images: readonly LoadedImage[];
  queries: readonly Query[];
  preset: Preset;
  results: MatchResult[][] | undefined;
  backend: KernelBackend | undefined;
  kinds: readonly SyntheticKind[];
  perImage: number;
  rng: ReturnType<typeof makeRng>;
  minGain: number;
  maxStructure: number;
  mapH: number;
  mapW: number;
  layerShapes: readonly (readonly [number, number])[];
}): Promise<{ choice: BandChoice; table: BandScores[]; cue?: Preset['bands'] }> {
  const t0 = performance.now();
  const { detector, held, images, preset, mapH, mapW } = c;
  const [height, width] = detector.backbone.identity.inputSize;
  const heldSet = new Set(held);
  const profiles: Float32Array[] = [];
  for (let i = 0; i < c.snapshot.count; i++) {
    const k = held.indexOf(i);
    profiles.push(c.queries.find((q) => q.label === 0 && q.exclude === i)?.profile ?? profileOf(k >= 0 ? images[k]! : await detector.loadImage(c.snapshot.files[i]!)));
  }
  const others = profiles.filter((_, i) => !heldSet.has(i));
  const proxyStats = bandStatistics(others.length >= 2 ? others : profiles);
  const all = bandStatistics(profiles);
  const rms = Math.sqrt(all.mean.reduce((sum, v) => sum + v * v, 0) / all.mean.length);
  const structure = round3(rms / Math.max(all.sd.reduce((sum, v) => sum + v, 0) / all.sd.length, 1e-9));
  const kinds = [...new Set([...c.kinds, BAND_KIND])];
  if (!(structure < c.maxStructure)) return { choice: { weight: 0, structure, weights: [], kinds, seconds: (performance.now() - t0) / 1000 }, table: [] };
  // region defects, as many per held-out image as the tuning's kinds make in all
  const queries: Query[] = [...c.queries];
  for (const [k, i] of held.entries()) {
    for (let d = 0; d < Math.max(1, Math.floor(c.perImage / c.kinds.length)); d++) {
      const donor = images.length === 1 ? images[k]! : images[(k + 1 + (d % (images.length - 1))) % images.length]!;
      const synthetic = synthesizeDefect(images[k]!, donor, BAND_KIND, c.rng);
      const { features } = await detector.features(synthetic.image);
      queries.push({ exclude: i, features, mask: subsample(synthetic.mask, height, width), label: 1, kind: BAND_KIND, profile: profileOf(synthetic.image) });
    }
  }
  const saved = detector.preset;
  const results: MatchResult[][] = [];
  try {
    detector.preset = { ...preset, bands: undefined };
    const match = async (q: Query): Promise<MatchResult[]> =>
      (await detector.matchFeatures(q.features, { exclude: q.exclude, ...(c.backend === undefined ? {} : { backend: c.backend }) })).results;
    for (const [k, q] of queries.entries()) results.push(c.results?.[k] ?? (await match(q)));
  } finally {
    detector.preset = saved;
  }
  const alphas = preset.layers.map((l) => l.alpha);
  const lambdas = preset.layers.map((l) => l.lambda);
  const post = preset.pixel;
  const raws = results.map((r) => combine(r, c.layerShapes, alphas, lambdas, mapH, mapW));
  const maps = raws.map((raw) => (post.kind === 'blur' ? gaussianBlur(raw, mapH, mapW, post.sigma / SUBSAMPLE, smallKernel(post.kernel)) : raw));
  const scores = raws.map((raw) => mapMax(raw));
  const cues = queries.map((q) => bandMap(q.profile, proxyStats, mapH, mapW));
  const cleanMaps = maps.filter((_, k) => queries[k]!.label === 0);
  const level = cleanMaps.reduce((sum, m) => sum + m.reduce((a, v) => a + v, 0) / m.length, 0) / cleanMaps.length;
  const weights = [0, ...TUNE_BAND_FRACTIONS.map((f) => round3(f * level))];
  const labels = queries.map((q) => q.label);
  const scored = weights.map((w) => {
    const withCue = maps.map((m, k) => (w === 0 ? m : m.map((v, p) => v + w * cues[k]![p]!)));
    const perKind: Partial<Record<SyntheticKind, ProxyScores>> = {};
    for (const kind of kinds) {
      const pick = queries.map((q) => q.kind === undefined || q.kind === kind);
      const sel = <T>(a: readonly T[]): T[] => a.filter((_, k) => pick[k]);
      perKind[kind] = proxyScores(sel(scores), sel(withCue), sel(queries), sel(labels), mapW);
    }
    const proxy = meanScores(Object.values(perKind));
    return { w, proxy, perKind, objective: objectiveOf(proxy) };
  });
  const table = scored.map(({ w, proxy, perKind }) => ({ weight: w, proxy, perKind }));
  const best = scored.reduce((a, b) => (b.objective > a.objective ? b : a));
  const keep = best.w > 0 && best.objective > scored[0]!.objective + c.minGain;
  const chosen = keep ? best : scored[0]!;
  const choice: BandChoice = { weight: chosen.w, structure, weights, kinds, proxy: chosen.proxy, proxyWithout: scored[0]!.proxy, seconds: (performance.now() - t0) / 1000 };
  if (!keep) return { choice, table };
  const round = (a: number[]): number[] => a.map((v) => Math.round(v * 1e5) / 1e5);
  return { choice, table, cue: { weight: chosen.w, mean: round(all.mean), sd: round(all.sd) } };
}

function profileOf(image: LoadedImage): Float32Array {
  return bandProfile(image.data, image.height, image.width);
}

function meanScores(list: readonly ProxyScores[]): ProxyScores {
  const mean = (key: keyof ProxyScores): number => list.reduce((sum, p) => sum + p[key], 0) / list.length;
  return { image_auroc: mean('image_auroc'), pixel_auroc: mean('pixel_auroc'), aupro: mean('aupro') };
}

/** The proxy objective: the mean of the three proxy metrics. */
function objectiveOf(p: ProxyScores): number {
  return (p.image_auroc + p.pixel_auroc + p.aupro) / 3;
}

/**
 * The alpha/lambda pairs tried for one window setting: the grid
 * TUNE_ALPHAS x TUNE_LAMBDAS, then one "normal-scaled" pair per alpha in
 * TUNE_ALPHAS: each layer's forward and backward terms divided by their mean
 * on the clean held-out normals (leave-one-out), so that every term counts
 * by how far it rises above its normal level. The scaled weights are folded
 * back into plain alpha/lambda values (lambda scaled to a maximum of 1), so
 * the preset stays an ordinary one and predict applies exactly what was
 * tuned.
 */
function weightCandidates(clean: readonly MatchResult[][]): [readonly number[], readonly number[]][] {
  const out: [readonly number[], readonly number[]][] = [];
  for (const alphas of TUNE_ALPHAS) for (const lambdas of TUNE_LAMBDAS) out.push([alphas, lambdas]);
  const layers = clean[0]!.length;
  const meanTerm = (l: number, key: 'forward' | 'backward'): number => {
    let sum = 0;
    let count = 0;
    for (const r of clean) {
      const m = r[l]![key];
      for (let i = 0; i < m.length; i++) sum += 1 - m[i]!;
      count += m.length;
    }
    return Math.max(sum / count, 1e-6);
  };
  const means = Array.from({ length: layers }, (_, l) => [meanTerm(l, 'forward'), meanTerm(l, 'backward')] as const);
  for (const alphas of TUNE_ALPHAS) {
    const wa = means.map(([f], l) => alphas[l]! / f);
    const wb = means.map(([, b], l) => (1 - alphas[l]!) / b);
    const sums = wa.map((a, l) => a + wb[l]!);
    const top = Math.max(...sums);
    out.push([wa.map((a, l) => round3(a / sums[l]!)), sums.map((x) => round3(x / top))]);
  }
  return out;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

function proxyScores(scores: readonly number[], maps: Float32Array[], queries: readonly Query[], labels: readonly (0 | 1)[], cols: number): ProxyScores {
  const masks = queries.map((q) => q.mask);
  return {
    image_auroc: imageAuroc(scores, labels).value ?? 0.5,
    pixel_auroc: pixelAuroc(maps, masks).value ?? 0.5,
    aupro: aupro(maps, masks, { width: cols }).value ?? 0,
  };
}

function combine(
  results: readonly MatchResult[],
  shapes: readonly (readonly [number, number])[],
  alphas: readonly number[],
  lambdas: readonly number[],
  height: number,
  width: number,
): Float32Array {
  return combineLayers(
    results.map((r, l) => ({
      forward: r.forward,
      backward: r.backward,
      height: shapes[l]![0],
      width: shapes[l]![1],
      alpha: alphas[l]!,
      lambda: lambdas[l]!,
    })),
    height,
    width,
  );
}

function presetOf(windows: Windows, alphas: readonly number[], lambdas: readonly number[], pixel: PostProcess): Preset {
  const layers = windows.map(([f, b], l) => ({ forwardPatch: f, backwardPatch: b, alpha: alphas[l]!, lambda: lambdas[l]! })) as [
    LayerParams,
    LayerParams,
    LayerParams,
  ];
  return { name: 'candidate', layers, image: { kind: 'none' }, pixel };
}

function sameSettings(a: Preset, b: Preset): boolean {
  return JSON.stringify([a.layers, a.image, a.pixel]) === JSON.stringify([b.layers, b.image, b.pixel]);
}

/** The preset in the CLI's words (--layerN "FxB,alpha,lambda", --pixel-post). */
export function summarize(p: Preset): string {
  const layers = p.layers.map((l) => `${l.forwardPatch}x${l.backwardPatch},${l.alpha},${l.lambda}`).join(' ');
  const post = (x: PostProcess): string => (x.kind === 'blur' ? `blur:${x.sigma}/${x.kernel}` : x.kind === 'none' ? 'none' : `maxpool_mean:${x.kernel}`);
  const bands = p.bands === undefined || p.bands.weight === 0 ? '' : `, bands ${p.bands.weight}`;
  return `${p.name}: ${layers}, image ${post(p.image)}, pixel ${post(p.pixel)}${bands}`;
}

/** A blur kernel side for the 1/SUBSAMPLE map: the same extent, odd, at least 3. */
function smallKernel(kernel: number): number {
  const k = Math.max(3, Math.round(kernel / SUBSAMPLE));
  return k % 2 === 1 ? k : k + 1;
}

/** Every SUBSAMPLE-th pixel of each SUBSAMPLE-th row. */
function subsample<T extends Float32Array | Uint8Array>(map: T, height: number, width: number): T {
  const h = Math.ceil(height / SUBSAMPLE);
  const w = Math.ceil(width / SUBSAMPLE);
  const out = new (map.constructor as { new (n: number): T })(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = map[y * SUBSAMPLE * width + x * SUBSAMPLE]!;
  return out;
}

/**
 * The backend that ranks candidate presets: int8 matching where the
 * detector's backend has it (a few times faster; the ranking, not the
 * scores, is what the search keeps), else the detector's own. The
 * threshold is calibrated afterwards with the line's own matching.
 */
async function rankingBackend(detector: Detector): Promise<KernelBackend | undefined> {
  if (detector.backend.precision === 'int8') return undefined;
  return getBackend(detector.backend.name, { precision: 'int8' }).catch(() => undefined);
}
