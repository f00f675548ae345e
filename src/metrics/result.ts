/**
 * What a metric returns. A metric that is mathematically undefined for the
 * given data (e.g. AUROC with only normal images) returns `value: null` and a
 * human-readable `reason` instead of NaN, so an eval table can print "n/a"
 * and still say why. Malformed input (empty, mismatched lengths, NaN scores)
 * is a caller bug and throws HetmmError('E_ARGUMENT') instead.
 */
export type MetricResult =
  | { readonly value: number; readonly reason?: undefined }
  | { readonly value: null; readonly reason: string };

export function defined(value: number): MetricResult {
  return { value };
}

export function undefinedMetric(reason: string): MetricResult {
  return { value: null, reason };
}
