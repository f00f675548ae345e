/**
 * int8 matching (opt-in, fast backend `precision: 'int8'`): quantisation and
 * the TypeScript reference of the native AVX-512 VNNI kernel
 * (native/int8_body.h).
 *
 * Every pixel vector v (of the query and of each template) gets its own
 * scale s = max_c |v_c| / 127 and values round(v_c / s) in [-127, 127].
 * Four consecutive channels of one pixel are packed into one 32-bit word:
 * layout [G = ceil(C/4)][H][W][4] bytes per map, missing channels 0. The
 * query is stored offset by +128 (unsigned bytes, as vpdpbusd needs), and
 * each template pixel carries tSum = sum_c t_c to remove that offset again,
 * in exact integer arithmetic:
 *   D(p, d) = sQ[p] * (sT[p+d] * (sum_c u8(q_c) t_c - 128 * tSum[p+d]))
 *           = sQ[p] sT[p+d] sum_c q_c t_c  ~  <Q(p), T(p+d)>.
 * The per-vector scale keeps the error relative to each vector's largest
 * component; on unit vectors the similarity error is ~1e-3 (measured in
 * docs/PERFORMANCE.md and bounded in test/conformance.test.ts).
 */
import { HetmmError } from '../../errors.js';
import type { FeatureStack, Int8Templates, MatchOptions, MatchResult, QueryMap } from '../contract.js';

export type { Int8Templates } from '../contract.js';
import { float16ArrayToFloat32 } from '../../store/float16.js';

export interface Int8Query {
  /** packed u8 words (value + 128), [G][H][W][4] */
  readonly data: Uint8Array;
  /** [H*W] */
  readonly scale: Float32Array;
  readonly groups: number;
  readonly height: number;
  readonly width: number;
}

/**
 * Quantises one [C, H*W] map (float32 at src[srcBase ...]) into packed words
 * at out[outBase ...], per-pixel scales into scale[scaleBase ...] and, when
 * `sums` is given, per-pixel sums of the int8 values. Channel-major loops
 * (sequential reads); `offsetBy` is added to every stored value (query: 128,
 * stored as the same bits through an Int8Array view: one monomorphic loop).
 */
function quantizeMap(
  src: Float32Array,
  srcBase: number,
  channels: number,
  hw: number,
  out: Int8Array,
  outBase: number,
  scale: Float32Array,
  scaleBase: number,
  sums: Int32Array | undefined,
  offsetBy: number,
): void {
  const max = new Float32Array(hw);
  for (let c = 0; c < channels; c++) {
    const row = srcBase + c * hw;
    for (let p = 0; p < hw; p++) {
      const a = Math.abs(src[row + p]!);
      if (a > max[p]!) max[p] = a;
    }
  }
  const inv = new Float64Array(hw);
  for (let p = 0; p < hw; p++) {
    const m = max[p]!;
    scale[scaleBase + p] = m / 127;
    inv[p] = m > 0 ? 127 / m : 0;
  }
  const groups = Math.ceil(channels / 4);
  for (let c = 0; c < groups * 4; c++) {
    const row = srcBase + c * hw;
    const dst = outBase + 4 * ((c >> 2) * hw) + (c & 3);
    if (c >= channels) {
      // channels past C in the last group hold 0 (the query: 128)
      for (let p = 0; p < hw; p++) out[dst + 4 * p] = offsetBy;
      continue;
    }
    // |src * inv| <= 127 by construction; round half away from zero
    if (sums === undefined) {
      for (let p = 0; p < hw; p++) {
        const x = src[row + p]! * inv[p]!;
        out[dst + 4 * p] = (x < 0 ? -Math.floor(0.5 - x) : Math.floor(x + 0.5)) + offsetBy;
      }
    } else {
      for (let p = 0; p < hw; p++) {
        const x = src[row + p]! * inv[p]!;
        const v = x < 0 ? -Math.floor(0.5 - x) : Math.floor(x + 0.5);
        out[dst + 4 * p] = v;
        sums[scaleBase + p] += v;
      }
    }
  }
}

/**
 * Quantises one [C, hw] map `src` into `out` ([ceil(C/4)][hw][4] words),
 * `scale` [hw] and, when given, `sums` [hw] (overwritten). The fast backend
 * passes the native version (binding quantizeInt8, same arithmetic).
 */
export type MapQuantizer = (
  src: Float32Array,
  channels: number,
  hw: number,
  out: Int8Array,
  scale: Float32Array,
  sums: Int32Array | undefined,
  offsetBy: number,
) => void;

/** The TypeScript reference MapQuantizer. */
export const quantizeMapReference: MapQuantizer = (src, channels, hw, out, scale, sums, offsetBy) => {
  sums?.fill(0, 0, hw);
  quantizeMap(src, 0, channels, hw, out, 0, scale, 0, sums, offsetBy);
};

/**
 * Zeroed bytes for packed maps. The fast backend passes one that starts them
 * on a 64-byte boundary (alignedBytes): the native kernel's 64-byte loads
 * then stay within one cache line each.
 */
export type ByteAllocator = (bytes: number) => Uint8Array;

export const plainBytes: ByteAllocator = (bytes) => new Uint8Array(bytes);

/**
 * A ByteAllocator whose arrays start `offsetOf(array)` bytes into a 64-byte
 * larger buffer (the addon's alignmentOffset) from `raw` (e.g. shared memory).
 */
export function alignedBytes(offsetOf: (array: Uint8Array) => number, raw: ByteAllocator = plainBytes): ByteAllocator {
  return (bytes) => {
    const whole = raw(bytes + 64);
    const offset = offsetOf(whole);
    return whole.subarray(offset, offset + bytes);
  };
}

export function quantizeQueryInt8(query: QueryMap, quantize: MapQuantizer = quantizeMapReference, allocate: ByteAllocator = plainBytes): Int8Query {
  const [c, h, w] = query.shape;
  const hw = h * w;
  const groups = Math.ceil(c / 4);
  const data = allocate(groups * hw * 4);
  const scale = new Float32Array(hw);
  quantize(query.data.subarray(0, c * hw), c, hw, new Int8Array(data.buffer, data.byteOffset, data.length), scale, undefined, 128);
  return { data, scale, groups, height: h, width: w };
}

/**
 * Quantises the templates of `stack` not yet in `into` (grown by doubling
 * when full; a grown copy keeps the already quantised templates). Buffers a
 * running native call reads are never written below their count, so in-flight
 * matches stay valid.
 */
export function quantizeTemplatesInt8(
  stack: FeatureStack,
  into?: Int8Templates,
  quantize: MapQuantizer = quantizeMapReference,
  allocate: ByteAllocator = plainBytes,
): Int8Templates {
  const [n, c, h, w] = stack.shape;
  const hw = h * w;
  const groups = Math.ceil(c / 4);
  const perMap = groups * hw * 4;
  const from = into?.count ?? 0;
  if (into !== undefined && (into.groups !== groups || into.height !== h || into.width !== w)) {
    throw new HetmmError('E_ARGUMENT', `int8 templates are ${into.groups * 4}x${into.height}x${into.width}, expected ${c}x${h}x${w}`);
  }
  let data = into?.data ?? new Int8Array(0);
  let scale = into?.scale ?? new Float32Array(0);
  let sums = into?.sum ?? new Int32Array(0);
  const capacity = scale.length / hw;
  if (n > capacity) {
    const next = Math.max(n, capacity * 2);
    const bytes = allocate(next * perMap);
    const d = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length);
    d.set(data.subarray(0, from * perMap));
    const s = new Float32Array(next * hw);
    s.set(scale.subarray(0, from * hw));
    const o = new Int32Array(next * hw);
    o.set(sums.subarray(0, from * hw));
    [data, scale, sums] = [d, s, o];
  }
  const per = c * hw;
  const halfMap = stack.dtype === 'float16' ? new Float32Array(per) : undefined;
  for (let t = from; t < n; t++) {
    let src: Float32Array;
    let base: number;
    if (halfMap !== undefined) {
      float16ArrayToFloat32((stack.data as Uint16Array).subarray(t * per, (t + 1) * per), halfMap);
      [src, base] = [halfMap, 0];
    } else {
      [src, base] = [stack.data as Float32Array, t * per];
    }
    quantize(
      src.subarray(base, base + per),
      c,
      hw,
      data.subarray(t * perMap, (t + 1) * perMap),
      scale.subarray(t * hw, (t + 1) * hw),
      sums.subarray(t * hw, (t + 1) * hw),
      0,
    );
  }
  return { data, scale, sum: sums, count: Math.max(n, from), groups, height: h, width: w };
}

/**
 * Reference of the native int8 kernel: exact integer dot products of the
 * quantised maps, then the kernel's formula in float64; windows clipped at
 * the border like the float contract.
 */
export function matchLayerInt8Reference(query: Int8Query, templates: Int8Templates, n: number, options: MatchOptions): MatchResult {
  const { groups, height: h, width: w } = query;
  const hw = h * w;
  const rf = options.forwardPatch >> 1;
  const rb = options.backwardPatch >> 1;
  const r = Math.max(rf, rb);
  const forward = new Float32Array(hw).fill(-Infinity);
  const backward = new Float32Array(hw).fill(-Infinity);
  const perMap = groups * hw * 4;
  for (let t = 0; t < n; t++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const p = y * w + x;
        for (let dy = -r; dy <= r; dy++) {
          for (let dx = -r; dx <= r; dx++) {
            const yy = y + dy;
            const xx = x + dx;
            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
            const pd = yy * w + xx;
            let acc = 0;
            for (let g = 0; g < groups; g++) {
              const qb = 4 * (g * hw + p);
              const tb = t * perMap + 4 * (g * hw + pd);
              for (let k = 0; k < 4; k++) acc += query.data[qb + k]! * templates.data[tb + k]!;
            }
            const d = query.scale[p]! * (templates.scale[t * hw + pd]! * (acc - 128 * templates.sum[t * hw + pd]!));
            const ad = Math.max(Math.abs(dy), Math.abs(dx));
            if (ad <= rf && d > forward[p]!) forward[p] = d;
            if (ad <= rb && d > backward[pd]!) backward[pd] = d;
          }
        }
      }
    }
  }
  return { forward, backward };
}

/** Shapes the native int8 kernel handles (others use the float kernel). */
export function int8Supports(w: number, options: MatchOptions): boolean {
  return w % 16 === 0 && options.forwardPatch >> 1 <= 7 && options.backwardPatch >> 1 <= 7;
}

/**
 * Quantised copies of template stacks, keyed by the stack's data array:
 * a store grows in place (same array, larger N), so only new templates are
 * quantised; a store that reallocates gets a new entry and the old one is
 * collected with its array.
 */
export class Int8TemplateCache {
  readonly #entries = new WeakMap<object, Int8Templates>();
  readonly #quantize: MapQuantizer;
  readonly #allocate: ByteAllocator;

  constructor(quantize: MapQuantizer = quantizeMapReference, allocate: ByteAllocator = plainBytes) {
    this.#quantize = quantize;
    this.#allocate = allocate;
  }

  get(stack: FeatureStack): Int8Templates {
    const [n, c, h, w] = stack.shape;
    const per = c * h * w;
    const first = stack.data.byteOffset / stack.data.BYTES_PER_ELEMENT / per;
    // A view that starts at template `first` of a larger array (leave-one-out
    // matches the templates either side of the left-out one): quantise the
    // whole array once, keyed by its buffer, and hand out a slice, so a view
    // costs no new quantisation and no second copy.
    const key = Number.isInteger(first) ? stack.data.buffer : stack.data;
    const start = Number.isInteger(first) ? first : 0;
        const whole: FeatureStack =
      start === 0
        ? stack
        : {
            dtype: stack.dtype,
            shape: [start + n, c, h, w],
            data:
              stack.data instanceof Float32Array
                ? new Float32Array(stack.data.buffer, 0, (start + n) * per)
                : new Uint16Array(stack.data.buffer, 0, (start + n) * per),
          };
    let entry = this.#entries.get(key);
    if (entry === undefined || entry.count < start + n) {
      entry = quantizeTemplatesInt8(whole, entry, this.#quantize, this.#allocate);
      this.#entries.set(key, entry);
    }
    if (start === 0) return entry;
    const hw = h * w;
    const perMap = entry.groups * hw * 4;
    return {
      ...entry,
      data: entry.data.subarray(start * perMap),
      scale: entry.scale.subarray(start * hw),
      sum: entry.sum.subarray(start * hw),
      count: n,
    };
  }
}
