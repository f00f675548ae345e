import { HetmmError } from '../errors.js';

/**
 * Argument checks shared by the metrics. They run once at the public
 * boundary (O(n), no allocation), never inside the sorting or walking loops.
 */

export function checkScoresLabels(
  fn: string,
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
): void {
  if (scores.length !== labels.length) {
    throw new HetmmError(
      'E_ARGUMENT',
      `${fn}: expected as many labels as scores, but received ${scores.length} scores and ${labels.length} labels`,
    );
  }
  if (scores.length === 0) {
    throw new HetmmError('E_ARGUMENT', `${fn}: expected at least one score, but received an empty list`);
  }
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i];
    if (typeof s !== 'number' || !Number.isFinite(s)) {
      throw new HetmmError('E_ARGUMENT', `${fn}: expected finite scores, but scores[${i}] is ${String(s)}`);
    }
    const l = labels[i];
    if (l !== 0 && l !== 1) {
      throw new HetmmError('E_ARGUMENT', `${fn}: expected labels 0 or 1, but labels[${i}] is ${String(l)}`);
    }
  }
}

/**
 * Maps and masks must pair up image by image with equal pixel counts. When
 * `width` is given (metrics that need 2-D neighbourhoods) every map must be
 * a whole number of rows of that width. Map values must be finite: a NaN
 * would silently break every comparison-based metric.
 */
export function checkMapsMasks(
  fn: string,
  maps: readonly Float32Array[],
  masks: readonly Uint8Array[],
  width?: number,
): number {
  if (!Array.isArray(maps) || !Array.isArray(masks)) {
    throw new HetmmError('E_ARGUMENT', `${fn}: expected arrays of maps and masks`);
  }
  if (maps.length !== masks.length) {
    throw new HetmmError(
      'E_ARGUMENT',
      `${fn}: expected one mask per map, but received ${maps.length} maps and ${masks.length} masks`,
    );
  }
  if (maps.length === 0) {
    throw new HetmmError('E_ARGUMENT', `${fn}: expected at least one map, but received none`);
  }
  if (width !== undefined && (!Number.isInteger(width) || width < 1)) {
    throw new HetmmError('E_ARGUMENT', `${fn}: expected a positive integer for width, but received ${String(width)}`);
  }
  let total = 0;
  for (let i = 0; i < maps.length; i++) {
    const map = maps[i];
    const mask = masks[i];
    if (!(map instanceof Float32Array)) {
      throw new HetmmError('E_ARGUMENT', `${fn}: expected maps[${i}] to be a Float32Array`);
    }
    if (!(mask instanceof Uint8Array)) {
      throw new HetmmError('E_ARGUMENT', `${fn}: expected masks[${i}] to be a Uint8Array`);
    }
    if (map.length !== mask.length) {
      throw new HetmmError(
        'E_ARGUMENT',
        `${fn}: expected maps[${i}] and masks[${i}] to have the same number of pixels, but received ${map.length} and ${mask.length}`,
      );
    }
    if (map.length === 0) {
      throw new HetmmError('E_ARGUMENT', `${fn}: expected maps[${i}] to have pixels, but it is empty`);
    }
    if (width !== undefined && map.length % width !== 0) {
      throw new HetmmError(
        'E_ARGUMENT',
        `${fn}: expected maps[${i}] to be whole rows of width ${width}, but it has ${map.length} pixels`,
      );
    }
    for (let p = 0; p < map.length; p++) {
      // v - v is 0 for finite v, NaN for NaN and +-Infinity: one cheap test.
      if (map[p]! - map[p]! !== 0) {
        throw new HetmmError('E_ARGUMENT', `${fn}: expected finite map values, but maps[${i}][${p}] is ${map[p]}`);
      }
    }
    total += map.length;
  }
  return total;
}

export function checkFprLimit(fn: string, fprLimit: number): void {
  if (typeof fprLimit !== 'number' || !(fprLimit > 0 && fprLimit <= 1)) {
    throw new HetmmError('E_ARGUMENT', `${fn}: expected fprLimit in (0, 1], but received ${String(fprLimit)}`);
  }
}
