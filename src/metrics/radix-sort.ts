/**
 * LSD radix sort of float32 values, ascending, optionally carrying a uint32
 * payload (e.g. a region id) with each value. Used instead of
 * `Array.prototype.sort` with a comparator so that tens of millions of pixel
 * scores sort in well under a second with 2 x n words of extra memory and no
 * per-element objects.
 *
 * Steps:
 * 1. Reinterpret each float's bits as uint32 and map them to keys whose
 *    unsigned order equals the float order: negative floats get all bits
 *    flipped, non-negative ones get the sign bit set. -0 is folded into +0
 *    so that equal values get equal keys.
 * 2. Three stable counting-sort passes over 11, 11 and 10 bit digits, least
 *    significant first; a pass whose digit is the same for every key (common
 *    for the high bits of scores in a narrow range) is skipped.
 * 3. Map the keys back to floats in place.
 *
 * The input must not contain NaN (callers validate).
 */
const DIGIT_BITS = [11, 11, 10] as const;
const DIGIT_SHIFT = [0, 11, 22] as const;

export function radixSortFloat32(values: Float32Array, payload?: Uint32Array): void {
  const n = values.length;
  if (payload !== undefined && payload.length !== n) {
    throw new RangeError(`radixSortFloat32: payload length ${payload.length} differs from values length ${n}`);
  }
  if (n < 2) return;
  let keys: Uint32Array = new Uint32Array(values.buffer, values.byteOffset, n);
  // 1. float bits -> order-preserving unsigned keys
  for (let i = 0; i < n; i++) {
    const bits = keys[i]!;
    keys[i] = bits === 0x80000000 ? 0x80000000 : bits & 0x80000000 ? ~bits >>> 0 : (bits | 0x80000000) >>> 0;
  }
  // One histogram per digit, all from a single read of the keys.
  const counts = DIGIT_BITS.map((b) => new Uint32Array(1 << b));
  for (let i = 0; i < n; i++) {
    const k = keys[i]!;
    counts[0]![k & 0x7ff]!++;
    counts[1]![(k >>> 11) & 0x7ff]!++;
    counts[2]![k >>> 22]!++;
  }
  let scratchKeys: Uint32Array = new Uint32Array(n);
  let pay: Uint32Array | undefined = payload;
  let scratchPay: Uint32Array | undefined = payload !== undefined ? new Uint32Array(n) : undefined;
  let swapped = false;
  // 2. stable counting-sort passes
  for (let d = 0; d < DIGIT_BITS.length; d++) {
    const count = counts[d]!;
    const shift = DIGIT_SHIFT[d]!;
    const mask = (1 << DIGIT_BITS[d]!) - 1;
    if (count[(keys[0]! >>> shift) & mask] === n) continue; // every key has this digit
    // exclusive prefix sums -> start offset of each bucket
    let sum = 0;
    for (let b = 0; b < count.length; b++) {
      const c = count[b]!;
      count[b] = sum;
      sum += c;
    }
    if (pay !== undefined && scratchPay !== undefined) {
      for (let i = 0; i < n; i++) {
        const k = keys[i]!;
        const dst = count[(k >>> shift) & mask]!++;
        scratchKeys[dst] = k;
        scratchPay[dst] = pay[i]!;
      }
      const t = pay;
      pay = scratchPay;
      scratchPay = t;
    } else {
      for (let i = 0; i < n; i++) {
        const k = keys[i]!;
        scratchKeys[count[(k >>> shift) & mask]!++] = k;
      }
    }
    const t = keys;
    keys = scratchKeys;
    scratchKeys = t;
    swapped = !swapped;
  }
  // After an odd number of passes the sorted data sits in the scratch buffers.
  const out = new Uint32Array(values.buffer, values.byteOffset, n);
  if (swapped) {
    out.set(keys);
    if (payload !== undefined && pay !== undefined) payload.set(pay);
  }
  // 3. keys -> float bits
  for (let i = 0; i < n; i++) {
    const k = out[i]!;
    out[i] = k & 0x80000000 ? (k & 0x7fffffff) >>> 0 : ~k >>> 0;
  }
}
