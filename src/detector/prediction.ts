/** What a prediction says, and its one construction (the detector and its pipeline threads). */
import type { LoadedImage } from '../image/index.js';
import type { BackboneIdentity } from '../backbone/description.js';
import type { MatchOptions, QueryMap } from '../kernels/contract.js';
import type { MatchResult } from '../kernels/contract.js';
import { bandProfile, scoreMap, type Preset } from '../matching/index.js';

/** What one prediction says about one image (one vocabulary from library to CLI JSON to HTTP). */
export interface Prediction {
  /** file path as given, or '<buffer>' */
  readonly file: string;
  /** image-level anomaly score (higher = more anomalous) */
  readonly score: number;
  /** 'defect' | 'ok' when the store holds a deployment threshold, else undefined */
  readonly label?: 'ok' | 'defect';
  /** the threshold the label was decided with */
  readonly threshold?: number;
  /** raw ATMM anomaly map, [height*width] row-major, before post-processing */
  readonly anomalyMap: Float32Array;
  /** the map after the preset's pixel post-processing (what heatmaps show) */
  readonly pixelMap: Float32Array;
  /** the map after the preset's PRO post-processing, when the preset defines one (the official evaluation computes PRO on it) */
  readonly proMap?: Float32Array;
  readonly height: number;
  readonly width: number;
  /** the resized input image, for overlays */
  readonly image: LoadedImage;
  /** number of templates (images or PTS sheets) matched against */
  readonly templates: number;
  /** milliseconds spent in each stage (`score`: combination and post-processing of the match results) */
  readonly timings: { readonly decode: number; readonly backbone: number; readonly match: number; readonly score: number };
}

export function toPrediction(
  image: LoadedImage,
  scored: ReturnType<typeof scoreMap>,
  threshold: number | undefined,
  templates: number,
  timings: Prediction['timings'],
): Prediction {
  return {
    file: image.source,
    score: scored.score,
    ...(threshold === undefined ? {} : { label: scored.score > threshold ? 'defect' : 'ok', threshold }),
    anomalyMap: scored.anomalyMap,
    pixelMap: scored.pixelMap,
    ...(scored.proMap === undefined ? {} : { proMap: scored.proMap }),
    height: image.height,
    width: image.width,
    image,
    templates,
    timings,
  } satisfies Prediction;
}

/** Layer l's query map (the image's features) and window sizes (the preset's). */
export function layerInputs(identity: BackboneIdentity, preset: Preset, features: readonly Float32Array[], l: number): { query: QueryMap; match: MatchOptions } {
  const layer = identity.layers[l]!;
  const params = preset.layers[l]!;
  return {
    query: { shape: [layer.channels, layer.height, layer.width] as const, data: features[l]! },
    match: { forwardPatch: params.forwardPatch, backwardPatch: params.backwardPatch },
  };
}

/**
 * Combines per-layer match results into maps and a score with `preset`;
 * `image` (the decoded input) adds the preset's band cue, if any, to the
 * pixel map (Detector.scoreResults; the pipeline threads).
 */
export function scoreResults(identity: BackboneIdentity, preset: Preset, results: readonly MatchResult[], image?: LoadedImage): ReturnType<typeof scoreMap> {
  // The band cue (a tuned preset's option) reads the decoded image (its cost: docs/PERFORMANCE.md).
  // Without the image it is left out of the pixel map; the score never uses it.
  const { bands: cue, ...withoutBands } = preset;
  const bands = cue !== undefined && image !== undefined ? bandProfile(image.data, image.height, image.width) : undefined;
  return scoreMap(
    results,
    identity.layers.map((l) => [l.height, l.width] as const),
    bands === undefined ? withoutBands : preset,
    identity.inputSize,
    bands,
  );
}
