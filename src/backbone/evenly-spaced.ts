/**
 * The one even-spacing rule: at most `n` of `items`, evenly spaced (all of
 * them when there are no more than `n`), one from each of `n` equal runs:
 * its first item, or its middle one with `centred`. Calibration and the
 * tuner's hold-out take the middle, the quantiser's calibration images the
 * first; both stay so that no stored threshold and no int8 model changes.
 */
export function evenlySpaced<T>(items: readonly T[], n: number, options: { centred?: boolean } = {}): T[] {
  if (items.length <= n) return [...items];
  const offset = options.centred === true ? 0.5 : 0;
  return Array.from({ length: n }, (_, i) => items[Math.floor(((i + offset) * items.length) / n)]!);
}
