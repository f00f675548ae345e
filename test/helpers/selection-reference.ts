/** Brute-force references of template preselection (src/selection/nearest-templates.ts), straight from the definitions. */

/** Per grid cell (row-major) and channel, the mean of the cell's pixels; then unit length. */
export function bruteDescriptor(map: ArrayLike<number>, c: number, h: number, w: number, grid: number): Float64Array {
  const out = new Float64Array(c * grid * grid);
  for (let gy = 0; gy < grid; gy++) {
    for (let gx = 0; gx < grid; gx++) {
      const pixels: [number, number][] = [];
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (Math.min(grid - 1, Math.floor((y * grid) / h)) === gy && Math.min(grid - 1, Math.floor((x * grid) / w)) === gx) pixels.push([y, x]);
      for (let ch = 0; ch < c; ch++) {
        let s = 0;
        for (const [y, x] of pixels) s += map[ch * h * w + y * w + x]!;
        out[(gy * grid + gx) * c + ch] = pixels.length > 0 ? s / pixels.length : 0;
      }
    }
  }
  const norm = Math.hypot(...out);
  return out.map((v) => (norm > 0 ? v / norm : 0));
}

/** The exact top k by similarity (ties: lower index), `exclude` left out, in ascending index order. */
export function bruteTopK(descriptors: readonly ArrayLike<number>[], query: ArrayLike<number>, k: number, exclude?: number): number[] {
  const sims = descriptors.map((d) => {
    let s = 0;
    for (let i = 0; i < query.length; i++) s += d[i]! * query[i]!;
    return s;
  });
  const order = sims.map((_, i) => i).filter((i) => i !== exclude);
  order.sort((a, b) => (sims[b]! > sims[a]! ? 1 : sims[b]! < sims[a]! ? -1 : a - b));
  return order.slice(0, k).sort((a, b) => a - b);
}

