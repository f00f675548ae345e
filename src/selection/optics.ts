/**
 * OPTICS clustering, bit-for-bit the labels of scikit-learn's
 * `OPTICS(min_samples=m, metric=<distance>)` with its defaults:
 * max_eps = inf, cluster_method = 'xi', xi = 0.05, predecessor_correction =
 * true, min_cluster_size = min_samples.
 *
 * Steps (scikit-learn `sklearn/cluster/_optics.py`, Ankerst et al. 1999,
 * Schubert & Gertz 2018):
 *  1. core distance of i = the min_samples-th smallest distance in row i,
 *     the point itself included; rounded to 15 decimals.
 *  2. ordering: repeatedly take the unprocessed point with the smallest
 *     reachability (lowest index on ties, inf included); if it is a core
 *     point (always, with max_eps = inf) lower the reachability of every
 *     unprocessed j to round15(max(d(p, j), core(p))) when strictly smaller,
 *     recording p as j's predecessor.
 *  3. xi extraction on the reachability plot (reachability in OPTICS order,
 *     followed by an inf): steep down / steep up areas, clusters between them,
 *     predecessor correction, min_cluster_size.
 *  4. labels: clusters are visited smallest-first (nested ones before the
 *     ones containing them); a cluster gets the next label only when none of
 *     its points is labelled yet, so leaves win; the rest is noise (-1).
 *
 * Why the rounding matters: scikit-learn rounds core and reachability
 * distances with `np.around(x, 15)`; that creates exact ties (and the sign of
 * a rounded zero, -0 vs +0, decides whether a ratio is -inf or +inf in the xi
 * step). Everything here is float64 and follows numpy's IEEE semantics.
 *
 * Cost: O(N^2) time per call; with a reused {@link OpticsScratch} there is no
 * allocation per call apart from small result views (the PTS loop runs this at
 * every pixel). The two O(N^2) parts are the core distances (one k-th
 * smallest per row, see rowKthSmallest) and the ordering (see computeGraph).
 * {@link opticsFromSimilarity} is the same on d = 1 - s without the distance
 * matrix (what PTS calls).
 */
import { HetmmError } from '../errors.js';

export interface OpticsResult {
  /** cluster label per point (input order), -1 = noise */
  readonly labels: Int32Array;
  /** point indices in OPTICS order */
  readonly ordering: Int32Array;
  /** reachability per point (input order); inf for the first point of each seed */
  readonly reachability: Float64Array;
  /** core distance per point (input order) */
  readonly coreDistances: Float64Array;
  /** the point each point was reached from (input order), -1 for seeds */
  readonly predecessor: Int32Array;
}

/** scikit-learn's defaults for cluster_method='xi' */
const XI = 0.05;

/** Sample size of {@link rowKthSmallest}'s pre-filter. */
const FILTER_SAMPLE = 32;

/**
 * Reusable working memory for {@link optics}. Results returned with a scratch
 * are views into it and are overwritten by the next call with the same scratch.
 */
export class OpticsScratch {
  private capacity = 0;
  labels = new Int32Array(0);
  ordering = new Int32Array(0);
  reachability = new Float64Array(0);
  coreDistances = new Float64Array(0);
  predecessor = new Int32Array(0);
  /** the unprocessed point indices (first `openCount`, any order) during the ordering */
  open = new Int32Array(0);
  /** a row copy for the k-th smallest selection */
  row = new Float64Array(0);
  /** a row of 1 - similarity, for opticsFromSimilarity with large min_samples */
  complementRow = new Float64Array(0);
  /** the k-th smallest selection's sorted sample */
  readonly sample = new Float64Array(FILTER_SAMPLE);
  /** reachability in OPTICS order plus a trailing inf: length n + 1 */
  plot = new Float64Array(0);
  /** predecessor in OPTICS order */
  predecessorPlot = new Int32Array(0);
  /** per plot position: bit flags STEEP_UP | STEEP_DOWN | UP | DOWN */
  slope = new Uint8Array(0);
  /** labels in plot order */
  plotLabels = new Int32Array(0);
  /** steep down areas: start, end (Int32) and mib (Float64), `sdaCount` live */
  sdaStart = new Int32Array(0);
  sdaEnd = new Int32Array(0);
  sdaMib = new Float64Array(0);
  /** clusters as (start, end) pairs in plot positions, grown on demand */
  clusters = new Int32Array(64);

  constructor(capacity = 0) {
    this.ensure(capacity);
  }

  /** Grows the buffers to hold `n` points (never shrinks). */
  ensure(n: number): void {
    if (n <= this.capacity) return;
    this.capacity = n;
    this.labels = new Int32Array(n);
    this.ordering = new Int32Array(n);
    this.reachability = new Float64Array(n);
    this.coreDistances = new Float64Array(n);
    this.predecessor = new Int32Array(n);
    this.open = new Int32Array(n);
    this.row = new Float64Array(n);
    this.complementRow = new Float64Array(n);
    this.plot = new Float64Array(n + 1);
    this.predecessorPlot = new Int32Array(n);
    this.slope = new Uint8Array(n);
    this.plotLabels = new Int32Array(n);
    this.sdaStart = new Int32Array(n);
    this.sdaEnd = new Int32Array(n);
    this.sdaMib = new Float64Array(n);
  }
}

const STEEP_UP = 1;
const STEEP_DOWN = 2;
const UP = 4;
const DOWN = 8;

/** 1.5 * 2^52: adding and subtracting it rounds |y| < 2^51 to an integer, ties to even. */
const RINT_MAGIC = 6755399441055744;
const RINT_LIMIT = 2 ** 51;

/**
 * numpy's `np.around(x, 15)`: multiply by 1e15, round half to even (rint),
 * divide by 1e15. Keeps the sign of zero like numpy (round(-1e-16) = -0).
 * Hot path (distances are within [-2, 2], so |x * 1e15| < 2^51): the magic
 * number trick, IEEE round-to-nearest-even itself, several times faster than
 * Math.round on such large values; it loses the sign of a zero result, which
 * is put back from y.
 */
export function round15(x: number): number {
  const y = x * 1e15;
  if (y < RINT_LIMIT && y > -RINT_LIMIT) {
    const r = y + RINT_MAGIC - RINT_MAGIC;
    return r === 0 ? 0 * Math.sign(y) : r / 1e15;
  }
  let r = Math.round(y); // half up; fixed to half-even below
  if (r - y === 0.5 && r % 2 !== 0) r -= 1;
  return r / 1e15;
}

/**
 * numpy's maximum on the contiguous SIMD path (x86 `maxpd` returns the second
 * operand when both are zero of either sign): `b` unless `a > b`. NaN is not
 * expected here (distances are finite).
 */
function npMaximum(a: number, b: number): number {
  return a > b ? a : b;
}

/**
 * k-th smallest (1-based) of src[offset .. offset + n), src unchanged; `buffer`
 * (length >= n) is scratch. A pre-filter keeps the quickselect small: a
 * threshold t from a sorted sample of the row a little above the k/n
 * quantile, one branch-free pass copying the values <= t, and when at least
 * k were copied, the k-th smallest of those is the answer (the k smallest are
 * all <= t). Otherwise (rare) the whole row is selected.
 */
function rowKthSmallest(src: Float64Array, offset: number, n: number, k: number, buffer: Float64Array, sample: Float64Array): number {
  if (k <= SMALL_K && n >= 8 * k) return rowKthSmallestSmallK(src, offset, n, k, buffer, false);
  if (n >= 4 * FILTER_SAMPLE) {
    const stride = Math.floor(n / FILTER_SAMPLE);
    for (let s = 0; s < FILTER_SAMPLE; s++) {
      // insertion sort as the sample is drawn
      const v = src[offset + s * stride]!;
      let at = s;
      while (at > 0 && sample[at - 1]! > v) {
        sample[at] = sample[at - 1]!;
        at--;
      }
      sample[at] = v;
    }
    const rank = Math.min(FILTER_SAMPLE - 1, Math.ceil((k * FILTER_SAMPLE) / n) + 3);
    const threshold = sample[rank]!;
    let count = 0;
    for (let i = 0; i < n; i++) {
      const v = src[offset + i]!;
      buffer[count] = v;
      count += v <= threshold ? 1 : 0;
    }
    if (count >= k) return kthSmallest(buffer, count, k);
  }
  buffer.set(src.subarray(offset, offset + n));
  return kthSmallest(buffer, n, k);
}

/** Up to this k, {@link rowKthSmallest} keeps the k smallest in a sorted list instead. */
const SMALL_K = 32;

/**
 * k-th smallest (1-based) of src[offset .. offset + n) for small k (PTS: k =
 * N // K, 12 for 761 -> 60): one pass keeping the k smallest so far sorted in
 * `best` (length >= k); a value enters only when below the current k-th,
 * which after the first few values is rare, so the pass costs about one
 * compare per element (faster than the sampled pre-filter plus quickselect
 * at PTS sizes: docs/PERFORMANCE.md). The k-th smallest is a value of the
 * multiset, the same whichever way it is found.
 */
function rowKthSmallestSmallK(src: Float64Array, offset: number, n: number, k: number, best: Float64Array, complement: boolean): number {
  for (let i = 0; i < k; i++) {
    const v = complement ? 1 - src[offset + i]! : src[offset + i]!;
    let at = i;
    while (at > 0 && best[at - 1]! > v) {
      best[at] = best[at - 1]!;
      at--;
    }
    best[at] = v;
  }
  let kth = best[k - 1]!;
  for (let i = k; i < n; i++) {
    const v = complement ? 1 - src[offset + i]! : src[offset + i]!;
    if (!(v < kth)) continue;
    let at = k - 1;
    while (at > 0 && best[at - 1]! > v) {
      best[at] = best[at - 1]!;
      at--;
    }
    best[at] = v;
    kth = best[k - 1]!;
  }
  return kth;
}

/** k-th smallest (1-based) of row[0..n) by quickselect; reorders `row`. */
function kthSmallest(row: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  const target = k - 1;
  while (lo < hi) {
    // median-of-three pivot keeps sorted / duplicate-heavy rows O(n)
    const mid = (lo + hi) >>> 1;
    const a = row[lo]!, b = row[mid]!, c = row[hi]!;
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (row[i]! < pivot) i++;
      while (row[j]! > pivot) j--;
      if (i <= j) {
        const t = row[i]!;
        row[i] = row[j]!;
        row[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return row[target]!;
  }
  return row[target]!;
}

function checkArguments(distance: Float64Array, n: number, minSamples: number): void {
  if (!Number.isInteger(n) || n < 1) {
    throw new HetmmError('E_ARGUMENT', `optics: expected a positive integer point count n, got ${n}`);
  }
  if (distance.length < n * n) {
    throw new HetmmError(
      'E_ARGUMENT',
      `optics: expected an n*n = ${n * n} distance matrix, got length ${distance.length}`,
    );
  }
  // scikit-learn reads min_samples <= 1 as a fraction of n; hetmm only takes counts
  if (!Number.isInteger(minSamples) || minSamples < 2 || minSamples > n) {
    throw new HetmmError(
      'E_ARGUMENT',
      `optics: expected an integer minSamples in [2, n = ${n}], got ${minSamples}`,
    );
  }
}

/**
 * OPTICS over a precomputed N x N distance matrix (row-major, symmetric; the
 * diagonal is read as given, like scikit-learn's own self-distance). Without
 * `scratch` the result owns fresh arrays; with it the result is views into it.
 */
export function optics(
  distance: Float64Array,
  n: number,
  minSamples: number,
  scratch?: OpticsScratch,
): OpticsResult {
  return runOptics(distance, n, minSamples, scratch, false);
}

/**
 * {@link optics} over the distances 1 - similarity, without materialising
 * them: bit for bit the result of `optics(d, n, minSamples)` with
 * d[e] = 1 - similarity[e] computed in float64 (PTS: similarity is the
 * per-pixel Gram, so its copy loop writes one N x N matrix instead of two).
 * Each distance is formed where it is read, by the same subtraction.
 */
export function opticsFromSimilarity(
  similarity: Float64Array,
  n: number,
  minSamples: number,
  scratch?: OpticsScratch,
): OpticsResult {
  return runOptics(similarity, n, minSamples, scratch, true);
}

/** Both entry points: `complement` reads the matrix as similarities (distance = 1 - value). */
function runOptics(matrix: Float64Array, n: number, minSamples: number, scratch: OpticsScratch | undefined, complement: boolean): OpticsResult {
  checkArguments(matrix, n, minSamples);
  const own = scratch === undefined;
  const s = scratch ?? new OpticsScratch(n);
  s.ensure(n);
  computeGraph(matrix, n, minSamples, s, complement);
  extractXiLabels(n, minSamples, minSamples, s);
  const view = <T extends Int32Array | Float64Array>(a: T): T => (own ? a.slice(0, n) : a.subarray(0, n)) as T;
  return {
    labels: view(s.labels),
    ordering: view(s.ordering),
    reachability: view(s.reachability),
    coreDistances: view(s.coreDistances),
    predecessor: view(s.predecessor),
  };
}

/** Core distance of point i: the minSamples-th smallest of row i (of 1 - matrix with `complement`), rounded. */
function coreDistance(matrix: Float64Array, i: number, n: number, minSamples: number, s: OpticsScratch, complement: boolean): number {
  if (!complement) return round15(rowKthSmallest(matrix, i * n, n, minSamples, s.row, s.sample));
  if (minSamples <= SMALL_K && n >= 8 * minSamples) return round15(rowKthSmallestSmallK(matrix, i * n, n, minSamples, s.row, true));
  const d = s.complementRow;
  for (let j = 0; j < n; j++) d[j] = 1 - matrix[i * n + j]!;
  return round15(rowKthSmallest(d, 0, n, minSamples, s.row, s.sample));
}

/**
 * Steps 1 and 2: core distances, ordering, reachability, predecessors.
 *
 * One pass per step over the still-unprocessed points (kept compact in
 * `open`, so the whole ordering costs n^2 / 2 visits, not 2 n^2): it lowers
 * their reachability through the point just processed and finds the next
 * point at the same time. Ties go to the lowest index, as numpy's argmin over
 * the unprocessed indices in ascending order does. round15 is only evaluated
 * when the candidate can win: rounding is monotonic and a stored
 * reachability is already rounded, so max(d, core) >= reach[j] implies
 * round15(max(d, core)) >= reach[j] (no update).
 */
function computeGraph(matrix: Float64Array, n: number, minSamples: number, s: OpticsScratch, complement: boolean): void {
  const { coreDistances: core, reachability: reach, predecessor: pred, ordering, open } = s;
  for (let i = 0; i < n; i++) {
    core[i] = coreDistance(matrix, i, n, minSamples, s, complement);
    reach[i] = Infinity;
    pred[i] = -1;
    open[i] = i;
  }
  // all reachabilities are inf at first: the lowest index starts
  let point = 0;
  let openCount = n;
  open[0] = open[--openCount]!;
  for (let step = 0; step < n; step++) {
    ordering[step] = point;
    if (openCount === 0) break;
    // every point is core with max_eps = inf (core distance finite)
    const corePoint = core[point]!;
    const base = point * n;
    let next = -1;
    let nextAt = -1;
    let best = Infinity;
    for (let t = 0; t < openCount; t++) {
      const j = open[t]!;
      let rj = reach[j]!;
      if (corePoint !== Infinity) {
        const m = npMaximum(complement ? 1 - matrix[base + j]! : matrix[base + j]!, corePoint);
        if (m < rj) {
          const r = round15(m);
          if (r < rj) {
            reach[j] = r;
            pred[j] = point;
            rj = r;
          }
        }
      }
      // -0 === 0 here, like numpy's comparisons: the lower index wins the tie
      if (next < 0 || rj < best || (rj === best && j < next)) {
        next = j;
        nextAt = t;
        best = rj;
      }
    }
    open[nextAt] = open[--openCount]!;
    point = next;
  }
}

/**
 * Extends a steep area from `start` as far as it goes (scikit-learn
 * `_extend_region`): steep points extend it, at most `minSamples` consecutive
 * non-steep points that do not go the other way are tolerated, a point going
 * the other way ends it. Returns the last steep position.
 */
function extendRegion(slope: Uint8Array, n: number, steepBit: number, againstBit: number, start: number, minSamples: number): number {
  let nonSteep = 0;
  let end = start;
  for (let index = start; index < n; index++) {
    const f = slope[index]!;
    if ((f & steepBit) !== 0) {
      nonSteep = 0;
      end = index;
    } else if ((f & againstBit) === 0) {
      nonSteep++;
      if (nonSteep > minSamples) break;
    } else {
      return end;
    }
  }
  return end;
}

/**
 * Schubert & Gertz's predecessor correction (scikit-learn
 * `_correct_predecessor`): shrink the cluster end while its predecessor is not
 * inside the cluster. Replicates scikit-learn's indexing exactly: the
 * predecessor id is used as an index into `ordering` (a seed's -1 reads the
 * last entry, as Python's negative indexing does). Returns end, or -1 if the
 * cluster vanishes.
 */
function correctPredecessor(s: OpticsScratch, n: number, start: number, end: number): number {
  const { plot, predecessorPlot, ordering } = s;
  let e = end;
  while (start < e) {
    if (plot[start]! > plot[e]!) return e;
    const p = predecessorPlot[e]!;
    const pe = ordering[p < 0 ? n + p : p]!;
    for (let i = start; i < e; i++) {
      if (ordering[i] === pe) return e;
    }
    e--;
  }
  return -1;
}

/** Steps 3 and 4: xi steep areas, clusters, leaf-first labels. */
function extractXiLabels(n: number, minSamples: number, minClusterSize: number, s: OpticsScratch): void {
  const { plot, predecessorPlot, ordering, reachability, predecessor, slope, sdaStart, sdaEnd, sdaMib } = s;
  for (let i = 0; i < n; i++) {
    plot[i] = reachability[ordering[i]!]!;
    predecessorPlot[i] = predecessor[ordering[i]!]!;
  }
  // the trailing inf lets a cluster end at the last point
  plot[n] = Infinity;
  const xiComplement = 1 - XI;
  const steepDownRatio = 1 / xiComplement;
  for (let i = 0; i < n; i++) {
    // IEEE division like numpy: inf/inf and 0/0 give NaN (all tests false)
    const ratio = plot[i]! / plot[i + 1]!;
    slope[i] =
      (ratio <= xiComplement ? STEEP_UP : 0) |
      (ratio >= steepDownRatio ? STEEP_DOWN : 0) |
      (ratio < 1 ? UP : 0) |
      (ratio > 1 ? DOWN : 0);
  }

  let sdaCount = 0;
  let clusterCount = 0;
  let index = 0;
  let mib = 0; // maximum in between (paper section 4.3.2)

  // drop the steep down areas whose start is not xi-higher than mib; raise the mib of the rest
  const filterSdas = (): void => {
    if (mib === Infinity) {
      sdaCount = 0;
      return;
    }
    let kept = 0;
    for (let k = 0; k < sdaCount; k++) {
      if (mib <= plot[sdaStart[k]!]! * xiComplement) {
        sdaStart[kept] = sdaStart[k]!;
        sdaEnd[kept] = sdaEnd[k]!;
        sdaMib[kept] = Math.max(sdaMib[k]!, mib);
        kept++;
      }
    }
    sdaCount = kept;
  };

  for (let steepIndex = 0; steepIndex < n; steepIndex++) {
    const f = slope[steepIndex]!;
    if ((f & (STEEP_UP | STEEP_DOWN)) === 0) continue;
    // already inside a discovered area
    if (steepIndex < index) continue;
    for (let i = index; i <= steepIndex; i++) if (plot[i]! > mib) mib = plot[i]!;

    if ((f & STEEP_DOWN) !== 0) {
      filterSdas();
      const end = extendRegion(slope, n, STEEP_DOWN, UP, steepIndex, minSamples);
      sdaStart[sdaCount] = steepIndex;
      sdaEnd[sdaCount] = end;
      sdaMib[sdaCount] = 0;
      sdaCount++;
      index = end + 1;
      mib = plot[index]!;
      continue;
    }

    // steep upward area: try to close a cluster with every remaining steep down area
    filterSdas();
    const upStart = steepIndex;
    const upEnd = extendRegion(slope, n, STEEP_UP, DOWN, upStart, minSamples);
    index = upEnd + 1;
    mib = plot[index]!;
    const firstNew = clusterCount;
    for (let k = 0; k < sdaCount; k++) {
      let cStart = sdaStart[k]!;
      let cEnd = upEnd;
      const after = plot[cEnd + 1]!;
      // the end must be xi-higher than the maximum inside
      if (after * xiComplement < sdaMib[k]!) continue;
      // Definition 11, criterion 4: cut the higher side to the lower one's level
      const downMax = plot[sdaStart[k]!]!;
      if (downMax * xiComplement >= after) {
        while (plot[cStart + 1]! > after && cStart < sdaEnd[k]!) cStart++;
      } else if (after * xiComplement >= downMax) {
        while (plot[cEnd - 1]! > downMax && cEnd > upStart) cEnd--;
      }
      // predecessor correction (always on with scikit-learn's defaults)
      cEnd = correctPredecessor(s, n, cStart, cEnd);
      if (cEnd < 0) continue;
      if (cEnd - cStart + 1 < minClusterSize) continue; // criterion 3.a
      if (cStart > sdaEnd[k]!) continue; // criterion 1
      if (cEnd < upStart) continue; // criterion 2
      if (2 * clusterCount + 2 > s.clusters.length) {
        const grown = new Int32Array(s.clusters.length * 2);
        grown.set(s.clusters);
        s.clusters = grown;
      }
      s.clusters[2 * clusterCount] = cStart;
      s.clusters[2 * clusterCount + 1] = cEnd;
      clusterCount++;
    }
    // smaller (later found, nested) clusters first: reverse this area's batch
    reversePairs(s.clusters, firstNew, clusterCount);
  }

  // leaf-first labels in plot order, then back to input order
  const plotLabels = s.plotLabels;
  plotLabels.fill(-1, 0, n);
  let label = 0;
  const clusters = s.clusters;
  for (let c = 0; c < clusterCount; c++) {
    const start = clusters[2 * c]!;
    const end = clusters[2 * c + 1]!;
    let free = true;
    for (let i = start; i <= end; i++) {
      if (plotLabels[i] !== -1) {
        free = false;
        break;
      }
    }
    if (!free) continue;
    plotLabels.fill(label, start, end + 1);
    label++;
  }
  for (let i = 0; i < n; i++) s.labels[ordering[i]!] = plotLabels[i]!;
}

function reversePairs(pairs: Int32Array, from: number, to: number): void {
  for (let a = from, b = to - 1; a < b; a++, b--) {
    const s0 = pairs[2 * a]!, e0 = pairs[2 * a + 1]!;
    pairs[2 * a] = pairs[2 * b]!;
    pairs[2 * a + 1] = pairs[2 * b + 1]!;
    pairs[2 * b] = s0;
    pairs[2 * b + 1] = e0;
  }
}

/**
 * Cosine distance matrix `1 - x_i . x_j` of n unit vectors (row-major
 * [n, dim]), the dot summed sequentially over the dimension in float64 (the
 * rounding of the reference fixtures: a Python callable `1 - x.y`; numpy's
 * BLAS dot differs in the last bit, which flips rounded zeros' signs).
 */
export function cosineDistanceMatrix(
  points: Float64Array | Float32Array,
  n: number,
  dim: number,
  out: Float64Array = new Float64Array(n * n),
): Float64Array {
  if (points.length < n * dim) {
    throw new HetmmError('E_ARGUMENT', `cosineDistanceMatrix: expected ${n}x${dim} = ${n * dim} values, got ${points.length}`);
  }
  for (let i = 0; i < n; i++) {
    const bi = i * dim;
    for (let j = i; j < n; j++) {
      const bj = j * dim;
      let dot = 0;
      for (let c = 0; c < dim; c++) dot += points[bi + c]! * points[bj + c]!;
      const d = 1 - dot;
      out[i * n + j] = d;
      out[j * n + i] = d;
    }
  }
  return out;
}

/** OPTICS with the cosine distance `1 - x.y` of n unit vectors [n, dim]. */
export function opticsCosine(
  points: Float64Array | Float32Array,
  n: number,
  dim: number,
  minSamples: number,
  scratch?: OpticsScratch,
): OpticsResult {
  if (!Number.isInteger(dim) || dim < 1) {
    throw new HetmmError('E_ARGUMENT', `opticsCosine: expected a positive integer dim, got ${dim}`);
  }
  return optics(cosineDistanceMatrix(points, n, dim), n, minSamples, scratch);
}
