/**
 * The per-image ATMM result from per-layer match results: the raw anomaly map
 * (combined, no post-processing), the pixel map (pixel post-processing) and
 * the image score (max of the image-post-processed map, or max-pool-mean).
 */
import { HetmmError } from '../errors.js';
import type { MatchResult } from '../kernels/contract.js';
import { bandMap } from './bands.js';
import { combineLayers } from './combine.js';
import { gaussianBlur, mapMax, maxPoolMean } from './postprocess.js';
import type { PostProcess, Preset } from './presets.js';

export interface ScoredMap {
  /** combined map before any post-processing, [outH*outW] */
  readonly anomalyMap: Float32Array;
  /** `anomalyMap` after the preset's pixel post-processing */
  readonly pixelMap: Float32Array;
  /** image-level anomaly score */
  readonly score: number;
  /** `anomalyMap` after the preset's PRO post-processing, when the preset defines one */
  readonly proMap?: Float32Array;
}

/** A map after a map-to-map post-processing step (none copies). */
export function applyMapPostProcess(map: Float32Array, h: number, w: number, post: PostProcess): Float32Array {
  switch (post.kind) {
    case 'none':
      return map.slice();
    case 'blur':
      return gaussianBlur(map, h, w, post.sigma, post.kernel);
    case 'maxpool_mean':
      throw new HetmmError('E_ARGUMENT', 'maxpool_mean yields a score, not a map (expected none or blur)');
  }
}

/** The image score of a raw map under an image post-processing step. */
export function imageScore(map: Float32Array, h: number, w: number, post: PostProcess): number {
  switch (post.kind) {
    case 'none':
      return mapMax(map);
    case 'blur':
      return mapMax(gaussianBlur(map, h, w, post.sigma, post.kernel));
    case 'maxpool_mean':
      return maxPoolMean(map, h, w, post.kernel);
  }
}

export function scoreMap(
  layerResults: readonly MatchResult[],
  layerShapes: ReadonlyArray<readonly [number, number]>,
  preset: Preset,
  outSize: readonly [number, number] = [256, 256],
  /** the image's bandProfile: required when the preset has a band cue */
  bandProfile?: Float32Array,
): ScoredMap {
  if (layerResults.length !== preset.layers.length || layerShapes.length !== preset.layers.length) {
    throw new HetmmError(
      'E_ARGUMENT',
      `Expected ${preset.layers.length} layer results and shapes for preset "${preset.name}" but received ${layerResults.length} results and ${layerShapes.length} shapes`,
    );
  }
  const [outH, outW] = outSize;
  const anomalyMap = combineLayers(
    layerResults.map((r, i) => ({
      forward: r.forward,
      backward: r.backward,
      height: layerShapes[i]![0],
      width: layerShapes[i]![1],
      alpha: preset.layers[i]!.alpha,
      lambda: preset.layers[i]!.lambda,
    })),
    outH,
    outW,
  );
  const score = imageScore(anomalyMap, outH, outW, preset.image);
  let addBands = (map: Float32Array): Float32Array => map;
  if (preset.bands !== undefined && preset.bands.weight > 0) {
    if (bandProfile === undefined) {
      throw new HetmmError('E_ARGUMENT', `preset "${preset.name}" adds a band cue: scoring needs the image's band profile`);
    }
    const cue = bandMap(bandProfile, preset.bands, outH, outW);
    const weight = preset.bands.weight;
    addBands = (map) => {
      for (let i = 0; i < map.length; i++) map[i]! += weight * cue[i]!;
      return map;
    };
  }
  const pixelMap = addBands(applyMapPostProcess(anomalyMap, outH, outW, preset.pixel));
  const result: ScoredMap = { anomalyMap, pixelMap, score };
  return preset.pro === undefined ? result : { ...result, proMap: addBands(applyMapPostProcess(anomalyMap, outH, outW, preset.pro)) };
}
