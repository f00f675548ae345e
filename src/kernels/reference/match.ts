/**
 * Plain TypeScript reference of ATMM template matching (the KernelBackend
 * contract), NCHW. Semantics (fixtures/parity/README.md):
 *   forward  F_n(p) = max_{p' in win_f(p)} <Q(p), T_n(p')>
 *   backward B_n(p) = max_{p' in win_b(p)} <Q(p'), T_n(p)>
 * with square windows of radius patch>>1 clipped at the map border.
 *
 * Both are maxima over offsets d of the same "shifted dot product" planes
 *   D_d(p) = <Q(p), T(p+d)>:
 * forward at p takes D_d(p); backward at q = p+d takes D_d(q-d). So one pass
 * computes every D_d plane once and folds it into both outputs.
 *
 * Loop order (why it is fast enough for 64x64x256 maps): per template, per
 * channel plane, per offset, a whole row of multiply-adds into an [H*W]
 * accumulator for that offset. Everything the inner loop touches is
 * contiguous; no per-pixel strided dot products over C.
 */
import { HetmmError } from '../../errors.js';
import type { FeatureStack, MatchOptions, MatchResult, QueryMap } from '../contract.js';
import { float16ArrayToFloat32 } from '../../store/float16.js';

/** Accumulator planes are processed in groups that fit in ~512 KiB (L2). */
const ACCUMULATOR_BUDGET_FLOATS = 128 * 1024;
/** Channels summed per accumulator update in the inner loop. */
const CHANNEL_BLOCK = 4;

function checkPatch(name: string, patch: number): void {
  if (!Number.isInteger(patch) || patch < 1 || patch % 2 === 0) {
    throw new HetmmError('E_ARGUMENT', `Expected an odd positive integer for ${name} but received ${String(patch)}`);
  }
}

/** Validates the contract's shape/dtype invariants once, at the boundary. */
export function validateMatchInputs(query: QueryMap, templates: FeatureStack): void {
  const [c, h, w] = query.shape;
  const [n, tc, th, tw] = templates.shape;
  for (const [label, v] of [['query C', c], ['query H', h], ['query W', w], ['template N', n]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new HetmmError('E_ARGUMENT', `Expected a positive integer for ${label} but received ${String(v)}`);
    }
  }
  if (tc !== c || th !== h || tw !== w) {
    throw new HetmmError(
      'E_ARGUMENT',
      `Template maps [${tc}, ${th}, ${tw}] do not match the query map [${c}, ${h}, ${w}] (expected the same C, H, W)`,
    );
  }
  if (query.data.length < c * h * w) {
    throw new HetmmError('E_ARGUMENT', `Query data has ${query.data.length} elements, expected at least C*H*W = ${c * h * w}`);
  }
  if (templates.data.length < n * c * h * w) {
    throw new HetmmError(
      'E_ARGUMENT',
      `Template data has ${templates.data.length} elements, expected at least N*C*H*W = ${n * c * h * w}`,
    );
  }
  const expectedArray = templates.dtype === 'float16' ? Uint16Array : Float32Array;
  if (!(templates.data instanceof expectedArray)) {
    throw new HetmmError(
      'E_ARGUMENT',
      `Templates of dtype ${templates.dtype} must be stored in a ${expectedArray.name} but received a ${templates.data.constructor.name}`,
    );
  }
}

interface Offset {
  readonly dy: number;
  readonly dx: number;
  readonly forward: boolean;
  readonly backward: boolean;
}

/** All offsets used by either window, skipping those that can never land inside the map. */
function offsetsFor(h: number, w: number, forwardRadius: number, backwardRadius: number): Offset[] {
  const radius = Math.max(forwardRadius, backwardRadius);
  const offsets: Offset[] = [];
  for (let dy = -radius; dy <= radius; dy++) {
    if (Math.abs(dy) >= h) continue;
    for (let dx = -radius; dx <= radius; dx++) {
      if (Math.abs(dx) >= w) continue;
      const cheb = Math.max(Math.abs(dy), Math.abs(dx));
      offsets.push({ dy, dx, forward: cheb <= forwardRadius, backward: cheb <= backwardRadius });
    }
  }
  return offsets;
}

/** Where each output goes: per template ([N,H,W]) or folded into a max over templates ([H,W]). */
type OutputMode = 'per_template' | 'max';

/**
 * The shared core. A radius of -1 disables that direction (its output stays
 * undefined). Outputs are float32; accumulation is float32 per channel step.
 */
function matchCore(
  query: QueryMap,
  templates: FeatureStack,
  forwardRadius: number,
  backwardRadius: number,
  mode: OutputMode,
): { forward: Float32Array | undefined; backward: Float32Array | undefined } {
  validateMatchInputs(query, templates);
  const [c, h, w] = query.shape;
  const n = templates.shape[0];
  const hw = h * w;
  const chw = c * hw;
  const q = query.data;
  const wantForward = forwardRadius >= 0;
  const wantBackward = backwardRadius >= 0;

  const outLength = mode === 'per_template' ? n * hw : hw;
  const forward = wantForward ? new Float32Array(outLength).fill(-Infinity) : undefined;
  const backward = wantBackward ? new Float32Array(outLength).fill(-Infinity) : undefined;

  const offsets = offsetsFor(h, w, forwardRadius, backwardRadius);
  const groupSize = Math.max(1, Math.floor(ACCUMULATOR_BUDGET_FLOATS / hw));
  const acc = new Float32Array(Math.min(groupSize, offsets.length) * hw);
  const isHalf = templates.dtype === 'float16';
  const halfPlanes = isHalf ? new Float32Array(CHANNEL_BLOCK * hw) : undefined;

  for (let t = 0; t < n; t++) {
    const templateBase = t * chw;
    const outBase = mode === 'per_template' ? t * hw : 0;
    for (let g0 = 0; g0 < offsets.length; g0 += groupSize) {
      const group = offsets.slice(g0, g0 + groupSize);
      acc.fill(0, 0, group.length * hw);
      // Channels in blocks of 4: one accumulator load/store per 4 multiply-adds.
      for (let ch = 0; ch < c; ch += CHANNEL_BLOCK) {
        const lanes = Math.min(CHANNEL_BLOCK, c - ch);
        const qBase = ch * hw;
        let tp: Float32Array;
        let tBase: number;
        if (halfPlanes !== undefined) {
          // the block's channel planes are contiguous in the store: decode them in one go
          const planesStart = templateBase + qBase;
          float16ArrayToFloat32((templates.data as Uint16Array).subarray(planesStart, planesStart + lanes * hw), halfPlanes);
          tp = halfPlanes;
          tBase = 0;
        } else {
          tp = templates.data as Float32Array;
          tBase = templateBase + qBase;
        }
        for (let k = 0; k < group.length; k++) {
          const { dy, dx } = group[k]!;
          const y0 = Math.max(0, -dy);
          const y1 = Math.min(h, h - dy);
          const x0 = Math.max(0, -dx);
          const x1 = Math.min(w, w - dx);
          const accBase = k * hw;
          const shift = dy * w + dx;
          if (lanes === CHANNEL_BLOCK) {
            const hw2 = 2 * hw;
            const hw3 = 3 * hw;
            for (let y = y0; y < y1; y++) {
              const row = y * w;
              const qRow = qBase + row;
              const aRow = accBase + row;
              const tRow = tBase + row + shift;
              for (let x = x0; x < x1; x++) {
                const qi = qRow + x;
                const ti = tRow + x;
                acc[aRow + x] +=
                  q[qi] * tp[ti] + q[qi + hw] * tp[ti + hw] + q[qi + hw2] * tp[ti + hw2] + q[qi + hw3] * tp[ti + hw3];
              }
            }
          } else {
            for (let lane = 0; lane < lanes; lane++) {
              const laneOffset = lane * hw;
              for (let y = y0; y < y1; y++) {
                const row = y * w;
                const qRow = qBase + laneOffset + row;
                const aRow = accBase + row;
                const tRow = tBase + laneOffset + row + shift;
                for (let x = x0; x < x1; x++) acc[aRow + x] += q[qRow + x] * tp[tRow + x];
              }
            }
          }
        }
      }
      // Fold the finished D_d planes into the outputs.
      for (let k = 0; k < group.length; k++) {
        const off = group[k]!;
        const { dy, dx } = off;
        const y0 = Math.max(0, -dy);
        const y1 = Math.min(h, h - dy);
        const x0 = Math.max(0, -dx);
        const x1 = Math.min(w, w - dx);
        const accBase = k * hw;
        if (forward !== undefined && off.forward) {
          for (let y = y0; y < y1; y++) {
            const row = y * w;
            for (let x = x0; x < x1; x++) {
              const v = acc[accBase + row + x];
              const o = outBase + row + x;
              if (v > forward[o]) forward[o] = v;
            }
          }
        }
        if (backward !== undefined && off.backward) {
          const shift = dy * w + dx; // D_d(p) is the backward candidate at p + d
          for (let y = y0; y < y1; y++) {
            const row = y * w;
            for (let x = x0; x < x1; x++) {
              const v = acc[accBase + row + x];
              const o = outBase + row + x + shift;
              if (v > backward[o]) backward[o] = v;
            }
          }
        }
      }
    }
  }
  return { forward, backward };
}

/** Forward matching per template: [N, H, W] float32. */
export function forwardMatchPerTemplate(query: QueryMap, templates: FeatureStack, patch: number): Float32Array {
  checkPatch('forwardPatch', patch);
  return matchCore(query, templates, patch >> 1, -1, 'per_template').forward!;
}

/** Backward matching per template: [N, H, W] float32. */
export function backwardMatchPerTemplate(query: QueryMap, templates: FeatureStack, patch: number): Float32Array {
  checkPatch('backwardPatch', patch);
  return matchCore(query, templates, -1, patch >> 1, 'per_template').backward!;
}

/** Both directions per template in one pass (shared dot products): each [N, H, W]. */
export function matchPerTemplate(
  query: QueryMap,
  templates: FeatureStack,
  options: MatchOptions,
): { forward: Float32Array; backward: Float32Array } {
  checkPatch('forwardPatch', options.forwardPatch);
  checkPatch('backwardPatch', options.backwardPatch);
  const r = matchCore(query, templates, options.forwardPatch >> 1, options.backwardPatch >> 1, 'per_template');
  return { forward: r.forward!, backward: r.backward! };
}

/** Max over the leading N axis of an [N, planeSize] array. */
export function maxOverTemplates(perTemplate: Float32Array, n: number, planeSize: number): Float32Array {
  if (perTemplate.length < n * planeSize || n < 1) {
    throw new HetmmError('E_ARGUMENT', `Expected at least ${n}*${planeSize} values (n >= 1) but received ${perTemplate.length}`);
  }
  const out = perTemplate.slice(0, planeSize);
  for (let t = 1; t < n; t++) {
    const base = t * planeSize;
    for (let i = 0; i < planeSize; i++) {
      const v = perTemplate[base + i];
      if (v > out[i]) out[i] = v;
    }
  }
  return out;
}

/** One layer's forward and backward maps, max over all templates, sharing dot products. */
export function matchLayerReference(query: QueryMap, templates: FeatureStack, options: MatchOptions): MatchResult {
  checkPatch('forwardPatch', options.forwardPatch);
  checkPatch('backwardPatch', options.backwardPatch);
  const r = matchCore(query, templates, options.forwardPatch >> 1, options.backwardPatch >> 1, 'max');
  return { forward: r.forward!, backward: r.backward! };
}
