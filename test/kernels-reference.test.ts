/**
 * The reference kernels against a deliberately naive per-pixel float64
 * implementation of the contract (written here, independent of the
 * reference's loop order and dot-product sharing), plus the float16 decoder
 * and the backend registry.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isHetmmError } from '../src/errors.js';
import type { FeatureStack, KernelBackend, QueryMap } from '../src/kernels/contract.js';
import { createBackendRegistry } from '../src/kernels/index.js';
import {
  backwardMatchPerTemplate,
  forwardMatchPerTemplate,
  matchLayerReference,
  matchPerTemplate,
  maxOverTemplates,
  referenceBackend,
} from '../src/kernels/reference/index.js';
import { float16BitsToNumber, float16DecodeTable } from '../src/store/float16.js';
import { randomUnitMaps, rng } from './helpers/random.js';

/** The value of half bits by table lookup (the path the kernels use). */
const halfToFloat = (bits: number): number => float16DecodeTable()[bits]!;

// ------------------------------------------------------------------ helpers

/** The contract, pixel by pixel in float64: returns [N, H, W] forward and backward. */
function naiveMatch(
  q: Float32Array,
  t: Float32Array,
  n: number,
  c: number,
  h: number,
  w: number,
  f: number,
  b: number,
): { forward: Float64Array; backward: Float64Array } {
  const dot = (tIndex: number, qy: number, qx: number, ty: number, tx: number): number => {
    let s = 0;
    for (let ch = 0; ch < c; ch++) s += q[ch * h * w + qy * w + qx]! * t[tIndex * c * h * w + ch * h * w + ty * w + tx]!;
    return s;
  };
  const forward = new Float64Array(n * h * w);
  const backward = new Float64Array(n * h * w);
  const rf = f >> 1;
  const rb = b >> 1;
  for (let k = 0; k < n; k++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let best = -Infinity;
        for (let yy = y - rf; yy <= y + rf; yy++)
          for (let xx = x - rf; xx <= x + rf; xx++)
            if (yy >= 0 && yy < h && xx >= 0 && xx < w) best = Math.max(best, dot(k, y, x, yy, xx));
        forward[k * h * w + y * w + x] = best;
        best = -Infinity;
        for (let yy = y - rb; yy <= y + rb; yy++)
          for (let xx = x - rb; xx <= x + rb; xx++)
            if (yy >= 0 && yy < h && xx >= 0 && xx < w) best = Math.max(best, dot(k, yy, xx, y, x));
        backward[k * h * w + y * w + x] = best;
      }
    }
  }
  return { forward, backward };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length');
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    assert.ok(!Number.isNaN(d), `NaN at ${i}`);
    m = Math.max(m, d);
  }
  return m;
}

function naiveMax(per: Float64Array, n: number, hw: number): Float64Array {
  const out = new Float64Array(hw).fill(-Infinity);
  for (let k = 0; k < n; k++) for (let i = 0; i < hw; i++) out[i] = Math.max(out[i]!, per[k * hw + i]!);
  return out;
}

/** Exact float32 -> half bits for values exactly representable in half (test data only). */
function exactHalfBits(v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  if (a < 2 ** -14) return sign | Math.round(a / 2 ** -24);
  const e = Math.floor(Math.log2(a));
  const mantissa = Math.round((a / 2 ** e - 1) * 1024);
  return sign | ((e + 15) << 10) | mantissa;
}

// -------------------------------------------------------------------- cases

interface Case {
  label: string;
  c: number;
  h: number;
  w: number;
  n: number;
  f: number;
  b: number;
}

const CASES: Case[] = [
  { label: 'odd sizes, C not a multiple of 4', c: 7, h: 9, w: 5, n: 3, f: 5, b: 3 },
  { label: 'C multiple of 4, f < b', c: 8, h: 6, w: 11, n: 2, f: 3, b: 7 },
  { label: '1x1 maps', c: 5, h: 1, w: 1, n: 4, f: 7, b: 3 },
  { label: 'windows larger than the map', c: 4, h: 2, w: 3, n: 2, f: 9, b: 11 },
  { label: 'N = 1, f = b = 1', c: 6, h: 5, w: 7, n: 1, f: 1, b: 1 },
  { label: 'single row', c: 3, h: 1, w: 9, n: 2, f: 5, b: 3 },
  { label: 'C = 1', c: 1, h: 4, w: 4, n: 3, f: 3, b: 5 },
  // 16384 pixels -> the accumulator budget holds only 8 offset planes: several offset groups
  { label: 'many offset groups', c: 5, h: 128, w: 128, n: 1, f: 5, b: 3 },
];

const TOL = 2e-6; // float32 accumulation vs float64 over <= 8 channels of unit vectors

describe('reference matching vs naive per-pixel float64', () => {
  for (const k of CASES) {
    test(`${k.label}: C=${k.c} ${k.h}x${k.w} N=${k.n} f=${k.f} b=${k.b}`, () => {
      const random = rng(k.c * 1000 + k.h * 100 + k.w * 10 + k.n);
      const q = randomUnitMaps(1, k.c, k.h, k.w, random);
      const t = randomUnitMaps(k.n, k.c, k.h, k.w, random);
      const query: QueryMap = { shape: [k.c, k.h, k.w], data: q };
      const templates: FeatureStack = { dtype: 'float32', shape: [k.n, k.c, k.h, k.w], data: t };
      const expected = naiveMatch(q, t, k.n, k.c, k.h, k.w, k.f, k.b);
      const hw = k.h * k.w;

      const fwd = forwardMatchPerTemplate(query, templates, k.f);
      const bwd = backwardMatchPerTemplate(query, templates, k.b);
      assert.ok(maxAbsDiff(fwd, expected.forward) < TOL, 'forward per template');
      assert.ok(maxAbsDiff(bwd, expected.backward) < TOL, 'backward per template');

      // shared pass (both radii at once) must equal the separate computations exactly
      const both = matchPerTemplate(query, templates, { forwardPatch: k.f, backwardPatch: k.b });
      assert.deepEqual(both.forward, fwd);
      assert.deepEqual(both.backward, bwd);

      const layer = matchLayerReference(query, templates, { forwardPatch: k.f, backwardPatch: k.b });
      assert.ok(maxAbsDiff(layer.forward, naiveMax(expected.forward, k.n, hw)) < TOL, 'forward max');
      assert.ok(maxAbsDiff(layer.backward, naiveMax(expected.backward, k.n, hw)) < TOL, 'backward max');
      assert.deepEqual(layer.forward, maxOverTemplates(fwd, k.n, hw));
      assert.deepEqual(layer.backward, maxOverTemplates(bwd, k.n, hw));
    });
  }

  test('f = 1 forward and b = 1 backward are the same-position dot product', () => {
    const random = rng(7);
    const q = randomUnitMaps(1, 3, 4, 5, random);
    const t = randomUnitMaps(2, 3, 4, 5, random);
    const query: QueryMap = { shape: [3, 4, 5], data: q };
    const templates: FeatureStack = { dtype: 'float32', shape: [2, 3, 4, 5], data: t };
    const fwd = forwardMatchPerTemplate(query, templates, 1);
    assert.deepEqual(backwardMatchPerTemplate(query, templates, 1), fwd);
    // template 1, pixel (2, 3)
    let dot = 0;
    for (let ch = 0; ch < 3; ch++) dot += q[ch * 20 + 13]! * t[60 + ch * 20 + 13]!;
    assert.ok(Math.abs(fwd[20 + 13]! - dot) < 1e-6);
  });

  test('matching a map against itself gives 1 everywhere (unit vectors)', () => {
    const q = randomUnitMaps(1, 6, 5, 5, rng(3));
    const r = matchLayerReference(
      { shape: [6, 5, 5], data: q },
      { dtype: 'float32', shape: [1, 6, 5, 5], data: q },
      { forwardPatch: 3, backwardPatch: 3 },
    );
    for (const v of [...r.forward, ...r.backward]) assert.ok(Math.abs(v - 1) < 1e-6, `got ${v}`);
  });

  test('templates longer than N*C*H*W (a store grown in place) read only the first N maps', () => {
    const random = rng(11);
    const q = randomUnitMaps(1, 3, 3, 3, random);
    const t = randomUnitMaps(2, 3, 3, 3, random);
    const padded = new Float32Array(t.length + 27).fill(5); // a junk 3rd map that must be ignored
    padded.set(t);
    const opts = { forwardPatch: 3, backwardPatch: 3 };
    const a = matchLayerReference({ shape: [3, 3, 3], data: q }, { dtype: 'float32', shape: [2, 3, 3, 3], data: t }, opts);
    const b = matchLayerReference({ shape: [3, 3, 3], data: q }, { dtype: 'float32', shape: [2, 3, 3, 3], data: padded }, opts);
    assert.deepEqual(b, a);
  });
});

describe('float16 templates', () => {
  test('float16 store gives the same result as the equal float32 values', () => {
    const random = rng(99);
    const [n, c, h, w] = [3, 6, 5, 7];
    const q = randomUnitMaps(1, c, h, w, random);
    // values k/1024, |k| <= 1024, are exact in half; include subnormal-range ones
    const values = new Float32Array(n * c * h * w).map(() => Math.round((random() * 2 - 1) * 1024) / 1024);
    values[0] = 3 * 2 ** -24;
    values[1] = -(2 ** -20);
    const bits = Uint16Array.from(values, exactHalfBits);
    for (let i = 0; i < values.length; i++) assert.equal(halfToFloat(bits[i]!), values[i], `encoding of ${values[i]}`);
    const opts = { forwardPatch: 5, backwardPatch: 3 };
    const query: QueryMap = { shape: [c, h, w], data: q };
    const f32 = matchPerTemplate(query, { dtype: 'float32', shape: [n, c, h, w], data: values }, opts);
    const f16 = matchPerTemplate(query, { dtype: 'float16', shape: [n, c, h, w], data: bits }, opts);
    assert.deepEqual(f16, f32);
    const expected = naiveMatch(q, values, n, c, h, w, 5, 3);
    assert.ok(maxAbsDiff(f16.forward, expected.forward) < TOL);
    assert.ok(maxAbsDiff(f16.backward, expected.backward) < TOL);
  });

  test('float16 decode table: known values', () => {
    const known: Array<[number, number]> = [
      [0x0000, 0],
      [0x3c00, 1],
      [0xc000, -2],
      [0x3800, 0.5],
      [0x3555, 0.333251953125],
      [0x7bff, 65504],
      [0x0400, 2 ** -14], // smallest normal
      [0x0001, 2 ** -24], // smallest subnormal
      [0x03ff, 1023 * 2 ** -24], // largest subnormal
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ];
    for (const [bits, value] of known) assert.equal(halfToFloat(bits), value, `0x${bits.toString(16)}`);
    assert.ok(Object.is(halfToFloat(0x8000), -0));
    assert.ok(Number.isNaN(halfToFloat(0x7e00)));
    assert.ok(Number.isNaN(halfToFloat(0xfc01)));
  });

  test('float16 decode table and float16BitsToNumber: every normal half equals the float32 with the same sign, exponent and mantissa bits', () => {
    const view = new DataView(new ArrayBuffer(4));
    for (let bits = 0; bits < 65536; bits++) {
      const e = (bits >> 10) & 0x1f;
      if (e === 0 || e === 31) continue;
      const f32bits = ((bits & 0x8000) << 16) | ((e - 15 + 127) << 23) | ((bits & 0x3ff) << 13);
      view.setUint32(0, f32bits >>> 0);
      const expected = view.getFloat32(0);
      if (halfToFloat(bits) !== expected) assert.fail(`0x${bits.toString(16)}: ${halfToFloat(bits)} != ${expected}`);
      if (float16BitsToNumber(bits) !== expected) assert.fail(`float16BitsToNumber 0x${bits.toString(16)}`);
    }
  });
});

describe('argument validation', () => {
  const q: QueryMap = { shape: [2, 3, 3], data: new Float32Array(18) };
  const t: FeatureStack = { dtype: 'float32', shape: [1, 2, 3, 3], data: new Float32Array(18) };
  const rejects = (fn: () => unknown, pattern: RegExp) =>
    assert.throws(fn, (e: unknown) => isHetmmError(e) && e.code === 'E_ARGUMENT' && pattern.test(e.message));

  test('even, zero or fractional patch sizes', () => {
    rejects(() => forwardMatchPerTemplate(q, t, 4), /odd positive integer for forwardPatch but received 4/);
    rejects(() => backwardMatchPerTemplate(q, t, 0), /backwardPatch but received 0/);
    rejects(() => matchLayerReference(q, t, { forwardPatch: 3, backwardPatch: 2.5 }), /backwardPatch but received 2.5/);
  });
  test('shape and dtype mismatches', () => {
    rejects(
      () => forwardMatchPerTemplate(q, { ...t, shape: [1, 2, 3, 4], data: new Float32Array(24) }, 3),
      /\[2, 3, 4\] do not match the query map \[2, 3, 3\]/,
    );
    rejects(() => forwardMatchPerTemplate(q, { ...t, data: new Float32Array(10) }, 3), /at least N\*C\*H\*W = 18/);
    rejects(() => forwardMatchPerTemplate(q, { ...t, dtype: 'float16' }, 3), /float16 must be stored in a Uint16Array/);
    rejects(() => forwardMatchPerTemplate({ ...q, data: new Float32Array(5) }, t, 3), /Query data has 5 elements/);
    rejects(() => forwardMatchPerTemplate(q, { ...t, shape: [0, 2, 3, 3] }, 3), /template N but received 0/);
  });
  test('the backend rejects with the same error', async () => {
    await assert.rejects(
      referenceBackend.matchLayer(q, t, { forwardPatch: 2, backwardPatch: 3 }),
      (e: unknown) => isHetmmError(e) && e.code === 'E_ARGUMENT',
    );
  });
});

describe('backend registry', () => {
  const fake = (name: string): KernelBackend => ({ name, matchLayer: referenceBackend.matchLayer });
  const failing = () => Promise.reject(new Error('native addon missing: run npm rebuild'));

  test('auto picks the highest-priority backend that loads, without warning', async () => {
    const warnings: string[] = [];
    const r = createBackendRegistry({ env: () => undefined, warn: (m) => warnings.push(m) });
    r.registerBackend('reference', async () => referenceBackend, 0);
    r.registerBackend('fast', async () => fake('fast'), 10);
    assert.equal((await r.getBackend()).name, 'fast');
    assert.deepEqual(warnings, []);
  });

  test('auto falls back to the reference with one warning carrying the loader reason; the loader runs once', async () => {
    const warnings: string[] = [];
    let attempts = 0;
    const r = createBackendRegistry({ env: () => undefined, warn: (m) => warnings.push(m) });
    r.registerBackend('reference', async () => referenceBackend, 0);
    r.registerBackend('fast', () => (attempts++, failing()), 10);
    assert.equal((await r.getBackend('auto')).name, 'reference');
    assert.equal((await r.getBackend('auto')).name, 'reference');
    assert.equal(attempts, 1);
    assert.ok(warnings.length >= 1);
    assert.match(warnings[0]!, /"fast" did not load \(native addon missing: run npm rebuild\)/);
    const listed = await r.listBackends();
    assert.deepEqual(
      listed.map((b) => [b.name, b.available]),
      [
        ['fast', false],
        ['reference', true],
      ],
    );
  });

  test('forcing a backend that cannot load throws E_BACKEND with the reason', async () => {
    const r = createBackendRegistry({ env: () => undefined, warn: () => {} });
    r.registerBackend('reference', async () => referenceBackend, 0);
    r.registerBackend('fast', failing, 10);
    await assert.rejects(
      r.getBackend('fast'),
      (e: unknown) => isHetmmError(e) && e.code === 'E_BACKEND' && /native addon missing: run npm rebuild/.test(e.message),
    );
  });

  test('HETMM_BACKEND overrides auto; an explicit preference overrides HETMM_BACKEND; bad values are rejected', async () => {
    let env: string | undefined = 'reference';
    const r = createBackendRegistry({ env: () => env, warn: () => {} });
    r.registerBackend('reference', async () => referenceBackend, 0);
    r.registerBackend('fast', async () => fake('fast'), 10);
    assert.equal((await r.getBackend()).name, 'reference');
    assert.equal((await r.getBackend('fast')).name, 'fast');
    env = 'fast';
    assert.equal((await r.getBackend('auto')).name, 'fast');
    env = 'gpu';
    await assert.rejects(r.getBackend(), (e: unknown) => isHetmmError(e) && /HETMM_BACKEND but received "gpu"/.test(e.message));
  });

  test('the default registry: reference is always available; a missing fast module is reported, not thrown at import', async () => {
    const { getBackend, listBackends } = await import('../src/kernels/index.js');
    assert.equal((await getBackend('reference')).name, 'reference');
    const listed = await listBackends();
    assert.ok(listed.some((b) => b.name === 'reference' && b.available));
    const fast = listed.find((b) => b.name === 'fast');
    assert.ok(fast !== undefined);
    if (!fast.available) assert.ok((fast.reason ?? '').length > 0);
  });
});
