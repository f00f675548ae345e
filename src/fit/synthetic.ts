/**
 * Synthetic defects on normal images, for label-free preset tuning
 * (./tune.ts). Each returns the altered image (model input size, CHW in
 * [0, 1]) and its ground-truth mask. Six kinds, three easy ones first:
 *
 * - 'texture': a smooth-noise blob (value noise under a Gaussian envelope,
 *   thresholded: irregular outlines like DRAEM's Perlin masks) blending in
 *   another normal image's content from elsewhere, flipped: foreign texture.
 * - 'intensity': the same kind of blob, darkened or brightened (stains,
 *   blowholes, burns).
 * - 'cutpaste': a rectangle (sometimes thin, scar-like) cut from another
 *   normal image at another place and pasted (CutPaste, Li et al. 2021).
 *
 * The three above are easy for a good backbone (proxy AUROCs near 100%, so
 * they hardly separate candidate presets). Three harder kinds, closer to
 * real surface defects (cracks, frays, uneven shading; docs/TUNING.md):
 *
 * - 'crack': a thin curved line (1-3 px, a smooth random walk 15-45% of
 *   the side long), darkened to 45-80% or brightened to 125-160%.
 * - 'faint': a small blob (2-6% of the side in radius) changed by only
 *   7-15% in intensity: low contrast.
 * - 'region': a large region (15-45% of the image) cut off by a smooth wavy
 *   line from one side, its shading changed by 8-20%: uneven surface.
 *
 * Deterministic: all randomness comes from the given generator.
 */
import type { LoadedImage } from '../image/index.js';

export type SyntheticKind = 'texture' | 'intensity' | 'cutpaste' | 'crack' | 'faint' | 'region';
export const SYNTHETIC_KINDS: readonly SyntheticKind[] = ['texture', 'intensity', 'cutpaste', 'crack', 'faint', 'region'];

export type Rng = () => number;

/** mulberry32: a small seeded generator, uniform in [0, 1). */
export function makeRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const between = (rng: Rng, lo: number, hi: number): number => lo + (hi - lo) * rng();

/** Intensity factors (darker, brighter) of the kinds that change intensity under their mask. */
const INTENSITY_RANGES: Record<'intensity' | 'crack' | 'faint' | 'region', readonly [readonly [number, number], readonly [number, number]]> = {
  intensity: [[0.55, 0.85], [1.15, 1.5]],
  crack: [[0.45, 0.8], [1.25, 1.6]],
  faint: [[0.85, 0.93], [1.07, 1.15]],
  region: [[0.8, 0.92], [1.08, 1.2]],
};

export interface SyntheticDefect {
  readonly image: LoadedImage;
  /** [height*width], 1 = defect */
  readonly mask: Uint8Array;
}

export function synthesizeDefect(image: LoadedImage, donor: LoadedImage, kind: SyntheticKind, rng: Rng): SyntheticDefect {
  const { height: h, width: w } = image;
  const mask =
    kind === 'cutpaste'
      ? rectangleMask(h, w, rng)
      : kind === 'crack'
        ? crackMask(h, w, rng)
        : kind === 'region'
          ? regionMask(h, w, rng)
          : blobMask(h, w, rng, kind === 'faint' ? [0.02, 0.06] : [0.03, 0.1]);
  const plane = h * w;
  const data = Float32Array.from(image.data);
  if (kind !== 'texture' && kind !== 'cutpaste') {
    const [darker, brighter] = INTENSITY_RANGES[kind];
    const factor = rng() < 0.5 ? between(rng, darker[0], darker[1]) : between(rng, brighter[0], brighter[1]);
    for (let p = 0; p < plane; p++) {
      if (mask[p] === 0) continue;
      for (let c = 0; c < 3; c++) data[c * plane + p] = Math.min(1, data[c * plane + p]! * factor);
    }
  } else {
    // content from the donor, shifted by (dy, dx) and, for texture, mirrored
    const dy = Math.floor(between(rng, -h / 2, h / 2));
    const dx = Math.floor(between(rng, -w / 2, w / 2));
    const mirror = kind === 'texture';
    const beta = kind === 'texture' ? between(rng, 0.4, 0.9) : 1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const p = y * w + x;
        if (mask[p] === 0) continue;
        const sy = (((y + dy) % h) + h) % h;
        let sx = (((x + dx) % w) + w) % w;
        if (mirror) sx = w - 1 - sx;
        const q = sy * w + sx;
        for (let c = 0; c < 3; c++) data[c * plane + p] = (1 - beta) * data[c * plane + p]! + beta * donor.data[c * plane + q]!;
      }
    }
  }
  return { image: { ...image, data, source: `${image.source}#synthetic-${kind}` }, mask };
}

/** Value noise (random lattice, bilinear) under a Gaussian envelope, thresholded: one irregular blob. */
function blobMask(h: number, w: number, rng: Rng, radiusRange: readonly [number, number]): Uint8Array {
  for (let attempt = 0; ; attempt++) {
    const cells = 4 + Math.floor(rng() * 5);
    const lattice = new Float64Array((cells + 1) * (cells + 1));
    for (let i = 0; i < lattice.length; i++) lattice[i] = rng();
    const cy = between(rng, 0.2, 0.8) * h;
    const cx = between(rng, 0.2, 0.8) * w;
    const radius = between(rng, radiusRange[0], radiusRange[1]) * Math.min(h, w);
    const mask = new Uint8Array(h * w);
    let area = 0;
    for (let y = 0; y < h; y++) {
      const gy = (y / h) * cells;
      const y0 = Math.floor(gy);
      const fy = gy - y0;
      for (let x = 0; x < w; x++) {
        const gx = (x / w) * cells;
        const x0 = Math.floor(gx);
        const fx = gx - x0;
        const at = (yy: number, xx: number): number => lattice[yy * (cells + 1) + xx]!;
        const noise =
          (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
        const d2 = ((y - cy) ** 2 + (x - cx) ** 2) / (radius * radius);
        if (noise * Math.exp(-d2 / 2) > 0.35) {
          mask[y * w + x] = 1;
          area++;
        }
      }
    }
    // too small to matter at the backbone's stride: try again (or fall back to the envelope's core)
    if (area >= 32 || attempt >= 8) return area >= 32 ? mask : ellipse(h, w, cy, cx, Math.max(radius, 4));
  }
}

function ellipse(h: number, w: number, cy: number, cx: number, r: number): Uint8Array {
  const mask = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ((y - cy) ** 2 + (x - cx) ** 2 <= r * r) mask[y * w + x] = 1;
  return mask;
}

/** A rectangle: a patch (area 0.4-3% of the image) or a thin scar (2-5 px wide). */
function rectangleMask(h: number, w: number, rng: Rng): Uint8Array {
  let rh: number;
  let rw: number;
  if (rng() < 0.5) {
    const area = between(rng, 0.004, 0.03) * h * w;
    const aspect = between(rng, 0.4, 2.5);
    rh = Math.max(4, Math.round(Math.sqrt(area * aspect)));
    rw = Math.max(4, Math.round(area / rh));
  } else {
    const long = Math.round(between(rng, 0.1, 0.3) * Math.min(h, w));
    const thin = Math.round(between(rng, 2, 5));
    [rh, rw] = rng() < 0.5 ? [long, thin] : [thin, long];
  }
  rh = Math.min(rh, h - 2);
  rw = Math.min(rw, w - 2);
  const y0 = Math.floor(rng() * (h - rh));
  const x0 = Math.floor(rng() * (w - rw));
  const mask = new Uint8Array(h * w);
  for (let y = y0; y < y0 + rh; y++) mask.fill(1, y * w + x0, y * w + x0 + rw);
  return mask;
}

/** A thin curved line: a random walk whose heading turns smoothly, 1-3 px wide. */
function crackMask(h: number, w: number, rng: Rng): Uint8Array {
  const mask = new Uint8Array(h * w);
  const side = Math.min(h, w);
  const length = between(rng, 0.15, 0.45) * side;
  const radius = between(rng, 0.5, 1.5);
  let y = between(rng, 0.15, 0.85) * h;
  let x = between(rng, 0.15, 0.85) * w;
  let heading = rng() * 2 * Math.PI;
  let turn = 0;
  for (let s = 0; s < length; s++) {
    turn = 0.9 * turn + between(rng, -0.08, 0.08);
    heading += turn;
    y = Math.min(h - 1, Math.max(0, y + Math.sin(heading)));
    x = Math.min(w - 1, Math.max(0, x + Math.cos(heading)));
    const r = Math.ceil(radius);
    for (let dy = -r; dy <= r; dy++) {
      for (let dx = -r; dx <= r; dx++) {
        if (dy * dy + dx * dx > radius * radius + 0.5) continue;
        const yy = Math.round(y + dy);
        const xx = Math.round(x + dx);
        if (yy >= 0 && yy < h && xx >= 0 && xx < w) mask[yy * w + xx] = 1;
      }
    }
  }
  return mask;
}

/** A large region cut off from one side by a smooth wavy line (15-45% of the image). */
function regionMask(h: number, w: number, rng: Rng): Uint8Array {
  const mask = new Uint8Array(h * w);
  const side = Math.floor(rng() * 4); // 0 top, 1 bottom, 2 left, 3 right
  const along = side < 2 ? w : h;
  const across = side < 2 ? h : w;
  const depth = between(rng, 0.15, 0.45) * across;
  const waves = 1 + Math.floor(rng() * 3);
  const phase = rng() * 2 * Math.PI;
  const amplitude = between(rng, 0.02, 0.08) * across;
  const tilt = between(rng, -0.1, 0.1) * across;
  for (let t = 0; t < along; t++) {
    const u = t / along;
    const edge = depth + amplitude * Math.sin(2 * Math.PI * waves * u + phase) + tilt * (u - 0.5);
    for (let d = 0; d < Math.min(across, Math.max(0, Math.round(edge))); d++) {
      const a = side === 0 || side === 2 ? d : across - 1 - d;
      const [yy, xx] = side < 2 ? [a, t] : [t, a];
      mask[yy * w + xx] = 1;
    }
  }
  return mask;
}
