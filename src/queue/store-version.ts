/**
 * A store's version as written in its metadata (`meta.version`, the
 * server's convention), used to seed the cluster's version of a line the
 * first time a worker sees it; from then on Redis counts versions (one per
 * announced update) and the file's template count ties the two together.
 */
export function storeVersionOf(meta: Record<string, unknown>): number {
  const v = meta.version;
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : 0;
}
