/**
 * Connected components of a binary mask with 8-connectivity (a pixel touches
 * its 8 neighbours, diagonals included), as scipy.ndimage.label with a 3x3
 * structure of ones and skimage.measure.label(connectivity=2) compute them.
 *
 * Steps: scan pixels in raster order; at each unlabelled foreground pixel
 * start a new label and flood-fill its component with an explicit stack
 * (no recursion, so a 65536-pixel blob cannot overflow the call stack).
 * Labels are 1..count in order of each component's first pixel in raster
 * order (the numbering scipy and skimage use); background is 0. Any nonzero
 * mask byte is foreground, so 0/1 and 0/255 masks both work.
 */
export interface Components {
  /** per pixel: 0 = background, 1..count = component id */
  readonly labels: Int32Array;
  readonly count: number;
  /** areas[k - 1] = number of pixels of component k */
  readonly areas: Uint32Array;
}

export function labelComponents8(mask: Uint8Array, width: number, height: number): Components {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || width * height !== mask.length) {
    throw new RangeError(`labelComponents8: ${width}x${height} does not match a mask of ${mask.length} pixels`);
  }
  const n = mask.length;
  const labels = new Int32Array(n);
  const areaList: number[] = [];
  let stack = new Int32Array(64);
  let count = 0;
  for (let start = 0; start < n; start++) {
    if (mask[start] === 0 || labels[start] !== 0) continue;
    count++;
    labels[start] = count;
    let area = 0;
    let top = 0;
    stack[top++] = start;
    while (top > 0) {
      const p = stack[--top]!;
      area++;
      const y = (p / width) | 0;
      const x = p - y * width;
      const y0 = y > 0 ? y - 1 : 0;
      const y1 = y < height - 1 ? y + 1 : y;
      const x0 = x > 0 ? x - 1 : 0;
      const x1 = x < width - 1 ? x + 1 : x;
      for (let yy = y0; yy <= y1; yy++) {
        const row = yy * width;
        for (let xx = x0; xx <= x1; xx++) {
          const q = row + xx;
          if (mask[q] !== 0 && labels[q] === 0) {
            labels[q] = count;
            if (top === stack.length) {
              const bigger = new Int32Array(stack.length * 2);
              bigger.set(stack);
              stack = bigger;
            }
            stack[top++] = q;
          }
        }
      }
    }
    areaList.push(area);
  }
  return { labels, count, areas: Uint32Array.from(areaList) };
}
