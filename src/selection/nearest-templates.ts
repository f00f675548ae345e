/**
 * Template preselection (issue 23): before ATMM, pick the k templates
 * nearest to the query by a cheap global descriptor, and match against
 * those k only, so the cost of a prediction depends on k, not on N.
 *
 * The descriptor of an image: its features of one backbone layer (default
 * the deepest, the most semantic and smallest map) averaged over each cell
 * of a grid x grid partition of the map (position-aware: an aligned part's
 * corner is compared with the other templates' same corner), concatenated
 * and L2-normalised. Similarity: the dot product. The k nearest: highest
 * similarity first, ties to the lower template index, so the choice is
 * deterministic; returned in ascending index order (matching is a maximum
 * over templates, the order does not change it).
 *
 * Template descriptors are computed once per template and kept in memory
 * (TemplateDescriptors), keyed by the store layer's array: a store never
 * rewrites rows [0, count) of an array it handed out (it reallocates
 * instead), so a hot update only costs the new templates' descriptors, and
 * a store that reallocates (growth, a reload) gets a fresh entry.
 */
import { HetmmError } from '../errors.js';
import type { FeatureStack } from '../kernels/index.js';
import { float16ArrayToFloat32 } from '../store/float16.js';

/** The option: match each query against its k nearest templates (the line's `templateSelection`). */
export interface TemplateSelection {
  /** templates each query is matched against (>= N: all of them, exact ATMM) */
  readonly k: number;
  /** cells per side of the descriptor's grid; default 2 */
  readonly grid?: number;
  /** the backbone layer the descriptor pools, 0 = shallowest; default the deepest */
  readonly layer?: number;
}

export const DEFAULT_SELECTION_GRID = 2;

/** A TemplateSelection checked, with its defaults for a backbone of `layers` layers. */
export function resolveTemplateSelection(value: unknown, layers: number, where: string): Required<TemplateSelection> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HetmmError('E_ARGUMENT', `Expected ${where} to be an object { k, grid?, layer? } but received ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
  }
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (key !== 'k' && key !== 'grid' && key !== 'layer') throw new HetmmError('E_ARGUMENT', `Unknown key ${JSON.stringify(key)} in ${where} (expected k, grid, layer)`);
  }
  const integer = (key: string, fallback: number | undefined, min: number, max: number): number => {
    const v = o[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new HetmmError('E_ARGUMENT', `Expected ${where}.${key} to be an integer in [${min}, ${max}] but received ${JSON.stringify(o[key])}`);
    }
    return v;
  };
  return {
    k: integer('k', undefined, 1, 2 ** 31 - 1),
    grid: integer('grid', DEFAULT_SELECTION_GRID, 1, 64),
    layer: integer('layer', layers - 1, 0, layers - 1),
  };
}

/** Length of a descriptor of a [C, H, W] map on a grid x grid partition. */
export function descriptorLength(channels: number, grid: number): number {
  return channels * grid * grid;
}

/**
 * The descriptor of the [C, H, W] map at map[offset ...] (float32), into
 * out[outOffset ...]: per grid cell (row-major) and channel, the mean of
 * the cell's pixels, then the whole vector scaled to unit length. A grid
 * finer than the map is E_ARGUMENT.
 */
export function globalDescriptor(
  map: Float32Array,
  offset: number,
  shape: readonly [number, number, number],
  grid: number,
  out: Float32Array,
  outOffset = 0,
): void {
  const [c, h, w] = shape;
  const hw = h * w;
  const cells = grid * grid;
  if (grid > h || grid > w) {
    throw new HetmmError('E_ARGUMENT', `a template selection grid of ${grid} x ${grid} cells does not fit a ${h} x ${w} feature map (use a smaller grid)`);
  }
  // cell g along a side of `size` pixels: those with floor(i * grid / size) = g
  const bound = (size: number, g: number): [number, number] => [Math.ceil((g * size) / grid), Math.ceil(((g + 1) * size) / grid)];
  const rows = Array.from({ length: grid }, (_, g) => bound(h, g));
  const cols = Array.from({ length: grid }, (_, g) => bound(w, g));
  const means = new Float64Array(c * cells);
  let norm = 0;
  for (let gy = 0; gy < grid; gy++) {
    const [y0, y1] = rows[gy]!;
    for (let gx = 0; gx < grid; gx++) {
      const [x0, x1] = cols[gx]!;
      const inv = 1 / ((y1 - y0) * (x1 - x0));
      const base = (gy * grid + gx) * c;
      for (let ch = 0; ch < c; ch++) {
        const plane = offset + ch * hw;
        let s = 0;
        for (let y = y0; y < y1; y++) {
          const row = plane + y * w;
          for (let x = x0; x < x1; x++) s += map[row + x]!;
        }
        const v = s * inv;
        means[base + ch] = v;
        norm += v * v;
      }
    }
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  for (let i = 0; i < means.length; i++) out[outOffset + i] = means[i]! * scale;
}

/** Dot products of `query` with the first `count` descriptors, in float64. */
export function descriptorSimilarities(descriptors: Float32Array, count: number, query: Float32Array): Float64Array {
  const d = query.length;
  if (descriptors.length < count * d) {
    throw new HetmmError('E_ARGUMENT', `Expected ${count} descriptors of length ${d} but received ${descriptors.length} values`);
  }
  const sims = new Float64Array(count);
  const tail = d - (d % 4);
  for (let t = 0; t < count; t++) {
    // four independent sums: the additions of one do not wait for another's
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    const base = t * d;
    for (let i = 0; i < tail; i += 4) {
      s0 += descriptors[base + i]! * query[i]!;
      s1 += descriptors[base + i + 1]! * query[i + 1]!;
      s2 += descriptors[base + i + 2]! * query[i + 2]!;
      s3 += descriptors[base + i + 3]! * query[i + 3]!;
    }
    for (let i = tail; i < d; i++) s0 += descriptors[base + i]! * query[i]!;
    sims[t] = s0 + s1 + (s2 + s3);
  }
  return sims;
}

/**
 * The k templates (of the first `count`) whose descriptors are nearest to
 * `query`: highest similarity first, ties to the lower index; `exclude`
 * (leave-one-out) is never chosen. Ascending index order. k at least the
 * templates there are: all of them.
 */
export function nearestTemplates(descriptors: Float32Array, count: number, query: Float32Array, k: number, exclude?: number): Int32Array {
  if (!Number.isInteger(k) || k < 1) throw new HetmmError('E_ARGUMENT', `Expected a positive integer k but received ${String(k)}`);
  const sims = descriptorSimilarities(descriptors, count, query);
  const candidates: number[] = [];
  for (let t = 0; t < count; t++) if (t !== exclude) candidates.push(t);
  if (k < candidates.length) {
    candidates.sort((a, b) => sims[b]! - sims[a]! || a - b);
    candidates.length = k;
    candidates.sort((a, b) => a - b);
  }
  return Int32Array.from(candidates);
}

interface DescriptorEntry {
  values: Float32Array;
  count: number;
}

/**
 * Descriptors of a store layer's templates, computed once per template and
 * kept while the layer's array lives (see the module comment).
 */
export class TemplateDescriptors {
  readonly #entries = new WeakMap<object, DescriptorEntry>();
  readonly grid: number;

  constructor(grid: number) {
    this.grid = grid;
  }

  /** [N * D] descriptors of the stack's N templates (a view: copy it to keep it past the next call). */
  of(stack: FeatureStack): Float32Array {
    const [n, c, h, w] = stack.shape;
    const d = descriptorLength(c, this.grid);
    let entry = this.#entries.get(stack.data);
    if (entry === undefined) {
      entry = { values: new Float32Array(0), count: 0 };
      this.#entries.set(stack.data, entry);
    }
    if (entry.count < n) {
      if (entry.values.length < n * d) {
        // grown by doubling: a line that keeps adding templates pays O(1) per template
        const grown = new Float32Array(Math.max(n, 2 * entry.count) * d);
        grown.set(entry.values.subarray(0, entry.count * d));
        entry.values = grown;
      }
      const per = c * h * w;
      const scratch = stack.data instanceof Float32Array ? undefined : new Float32Array(per);
      for (let t = entry.count; t < n; t++) {
        const map = scratch === undefined ? (stack.data as Float32Array) : float16ArrayToFloat32((stack.data as Uint16Array).subarray(t * per, (t + 1) * per), scratch);
        globalDescriptor(map, scratch === undefined ? t * per : 0, [c, h, w], this.grid, entry.values, t * d);
      }
      entry.count = n;
    }
    return entry.values.subarray(0, n * d);
  }
}

/** What a line matches each query against: its k nearest templates (see the module comment). */
export class TemplateSelector {
  readonly selection: Required<TemplateSelection>;
  readonly #descriptors: TemplateDescriptors;

  constructor(selection: Required<TemplateSelection>) {
    this.selection = selection;
    this.#descriptors = new TemplateDescriptors(selection.grid);
  }

  /** The template descriptors of a snapshot's layers ([count * D]; computes the ones not yet known). */
  descriptors(layers: readonly FeatureStack[]): Float32Array {
    return this.#descriptors.of(this.#layerOf(layers));
  }

  /** descriptors(layers) copied into shared memory, for pipeline threads (src/detector/pipelines.ts) */
  sharedDescriptors(layers: readonly FeatureStack[]): Float32Array {
    const values = this.descriptors(layers);
    const shared = new Float32Array(new SharedArrayBuffer(values.byteLength));
    shared.set(values);
    return shared;
  }

  /**
   * The templates a query (per-layer features [C, H, W]) is matched
   * against, of a snapshot's `layers`: undefined for all of them (k covers
   * the store: exact ATMM, unchanged), else their indices. `exclude`: a
   * template never chosen (leave-one-out calibration).
   */
  select(layers: readonly FeatureStack[], features: readonly Float32Array[], exclude?: number): Int32Array | undefined {
    const stack = this.#layerOf(layers);
    const count = stack.shape[0];
    if (this.selection.k >= count && exclude === undefined) return undefined;
    return selectNearest(this.selection, this.descriptors(layers), count, stack.shape, features, exclude);
  }

  #layerOf(layers: readonly FeatureStack[]): FeatureStack {
    const stack = layers[this.selection.layer];
    if (stack === undefined) throw new HetmmError('E_ARGUMENT', `template selection pools layer ${this.selection.layer}, but the store has ${layers.length} layers`);
    return stack;
  }
}

/**
 * The nearest templates of a query given the template descriptors (shared
 * by the detector and its pipeline threads, which receive the descriptors
 * rather than recomputing them).
 */
export function selectNearest(
  selection: Required<TemplateSelection>,
  descriptors: Float32Array,
  count: number,
  shape: readonly [number, number, number, number],
  features: readonly Float32Array[],
  exclude?: number,
): Int32Array {
  const [, c, h, w] = shape;
  const map = features[selection.layer];
  if (map === undefined || map.length < c * h * w) {
    throw new HetmmError('E_ARGUMENT', `template selection needs the query's layer ${selection.layer} features of ${c}*${h}*${w} values`);
  }
  const query = new Float32Array(descriptorLength(c, selection.grid));
  globalDescriptor(map, 0, [c, h, w], selection.grid, query);
  return nearestTemplates(descriptors, count, query, selection.k, exclude);
}
