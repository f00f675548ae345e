/**
 * Kernel conformance: every kernel on every available backend (the TS
 * reference, and the fast backend in each native variant this CPU supports)
 * against
 *   - a brute-force float64 implementation written straight from the
 *     definitions in src/kernels/contract.ts, and
 *   - the parity fixtures' forward_match / backward_match cases
 *     (../shared/fixtures/parity or HETMM_PARITY_DIR).
 * Features are random signed unit vectors, so dot products can be negative:
 * a backend that lets out-of-map neighbours count as 0 instead of excluding
 * them is caught.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FeatureStack, KernelBackend, MatchResult, QueryMap } from '../src/kernels/contract.js';
import {
  NATIVE_VARIANTS,
  loadFastBackend,
  matchLayerInt8Reference,
  quantizeMapReference,
  quantizeQueryInt8,
  quantizeTemplatesInt8,
  type FastBackend,
} from '../src/kernels/fast/index.js';
import { alignedBytes } from '../src/kernels/fast/int8.js';
import { l2NormalisePixels } from '../src/backbone/backbone.js';
import { gatherTemplates, getBackend, matchLayerAt, matchSharedLayerAt } from '../src/kernels/index.js';
import { loadBinding } from '../src/kernels/fast/binding.js';
import { pixelGramReference } from '../src/kernels/reference/gram.js';
import { referenceBackend } from '../src/kernels/reference/index.js';
import { float16BitsToNumber, float32ArrayToFloat16 } from '../src/store/float16.js';
import { randomUnitMaps } from './helpers/random.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const parityDir = process.env['HETMM_PARITY_DIR'] ?? path.resolve(repoRoot, '../shared/fixtures/parity');

// ---- data helpers ---------------------------------------------------------

/** The float values a stack stands for (halves decoded exactly). */
function stackValues(stack: FeatureStack): Float64Array {
  const out = new Float64Array(stack.data.length);
  for (let i = 0; i < out.length; i++) {
    out[i] = stack.dtype === 'float16' ? float16BitsToNumber(stack.data[i]) : stack.data[i];
  }
  return out;
}

// ---- brute force float64, straight from the definitions --------------------

interface BruteResult {
  forwardPerTemplate: Float64Array; // [N, H*W]
  backwardPerTemplate: Float64Array;
  forward: Float64Array; // [H*W]
  backward: Float64Array;
}

function bruteMatch(query: QueryMap, templates: FeatureStack, f: number, b: number): BruteResult {
  const [c, h, w] = query.shape;
  const n = templates.shape[0];
  const hw = h * w;
  const t = stackValues(templates);
  const q = query.data;
  const dot = (k: number, qy: number, qx: number, ty: number, tx: number): number => {
    let s = 0;
    for (let ch = 0; ch < c; ch++) s += q[ch * hw + qy * w + qx] * t[(k * c + ch) * hw + ty * w + tx];
    return s;
  };
  const rf = f >> 1;
  const rb = b >> 1;
  const forwardPerTemplate = new Float64Array(n * hw).fill(-Infinity);
  const backwardPerTemplate = new Float64Array(n * hw).fill(-Infinity);
  for (let k = 0; k < n; k++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const o = k * hw + y * w + x;
        for (let y2 = Math.max(0, y - rf); y2 <= Math.min(h - 1, y + rf); y2++) {
          for (let x2 = Math.max(0, x - rf); x2 <= Math.min(w - 1, x + rf); x2++) {
            forwardPerTemplate[o] = Math.max(forwardPerTemplate[o], dot(k, y, x, y2, x2));
          }
        }
        for (let y2 = Math.max(0, y - rb); y2 <= Math.min(h - 1, y + rb); y2++) {
          for (let x2 = Math.max(0, x - rb); x2 <= Math.min(w - 1, x + rb); x2++) {
            backwardPerTemplate[o] = Math.max(backwardPerTemplate[o], dot(k, y2, x2, y, x));
          }
        }
      }
    }
  }
  const maxOver = (per: Float64Array): Float64Array => {
    const out = new Float64Array(hw).fill(-Infinity);
    for (let k = 0; k < n; k++) for (let p = 0; p < hw; p++) out[p] = Math.max(out[p], per[k * hw + p]);
    return out;
  };
  return { forwardPerTemplate, backwardPerTemplate, forward: maxOver(forwardPerTemplate), backward: maxOver(backwardPerTemplate) };
}

function bruteGram(stack: FeatureStack, p0: number, p1: number): Float64Array {
  const [n, c, h, w] = stack.shape;
  const hw = h * w;
  const v = stackValues(stack);
  const out = new Float64Array((p1 - p0) * n * n);
  for (let p = p0; p < p1; p++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let ch = 0; ch < c; ch++) s += v[(i * c + ch) * hw + p] * v[(j * c + ch) * hw + p];
        out[(p - p0) * n * n + i * n + j] = s;
      }
    }
  }
  return out;
}

/** Asserts |actual - expected| <= atol + rtol*|expected| element-wise, naming the first bad index. */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, atol = 1e-5, rtol = 1e-5): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      assert.fail(`${label}: element ${i} is ${a}, expected ${e} (|diff| ${Math.abs(a - e)})`);
    }
  }
}

// ---- backends under test ----------------------------------------------------

interface NamedBackend {
  label: string;
  backend: KernelBackend;
}

/** The reference plus one fast backend per supported native variant. The addon must be built in this repo. */
async function backendsUnderTest(): Promise<{ all: NamedBackend[]; fast: FastBackend[] }> {
  const best = await loadFastBackend();
  const fast: FastBackend[] = [];
  for (const variant of best.supportedVariants) fast.push(await loadFastBackend({ variant }));
  return {
    all: [{ label: 'reference', backend: referenceBackend }, ...fast.map((b) => ({ label: `fast/${b.variant}`, backend: b }))],
    fast,
  };
}

const backendsPromise = backendsUnderTest();

interface MatchCase {
  n: number;
  c: number;
  h: number;
  w: number;
  f: number;
  b: number;
  dtype: 'float32' | 'float16';
}

const matchCases: MatchCase[] = [
  { n: 1, c: 1, h: 1, w: 1, f: 1, b: 1, dtype: 'float32' }, // 1x1 map
  { n: 2, c: 3, h: 1, w: 1, f: 3, b: 5, dtype: 'float32' }, // 1x1 map, windows larger than the map
  { n: 1, c: 5, h: 3, w: 17, f: 5, b: 3, dtype: 'float32' }, // N = 1, W = 16 + 1
  { n: 3, c: 7, h: 5, w: 33, f: 3, b: 5, dtype: 'float32' }, // f < b
  { n: 2, c: 8, h: 4, w: 4, f: 9, b: 9, dtype: 'float32' }, // windows larger than the map
  { n: 4, c: 16, h: 7, w: 16, f: 1, b: 1, dtype: 'float32' }, // W exactly 16
  { n: 2, c: 9, h: 13, w: 15, f: 7, b: 3, dtype: 'float32' }, // f > b, odd sizes
  { n: 3, c: 4, h: 2, w: 40, f: 13, b: 7, dtype: 'float32' }, // the 13x7 window, H < window
  { n: 2, c: 11, h: 15, w: 21, f: 13, b: 7, dtype: 'float32' }, // 13x7 window with interior pixels
  { n: 5, c: 33, h: 9, w: 31, f: 3, b: 7, dtype: 'float32' },
  { n: 2, c: 6, h: 20, w: 3, f: 5, b: 1, dtype: 'float32' }, // tall and narrow
  { n: 7, c: 12, h: 6, w: 50, f: 5, b: 3, dtype: 'float32' }, // N > 2 * threads: whole-template work items
  { n: 1, c: 64, h: 16, w: 16, f: 7, b: 3, dtype: 'float32' }, // layer3-like window, N = 1: row bands
  { n: 1, c: 1, h: 1, w: 1, f: 1, b: 1, dtype: 'float16' },
  { n: 3, c: 10, h: 7, w: 19, f: 5, b: 3, dtype: 'float16' },
  { n: 2, c: 17, h: 11, w: 35, f: 3, b: 9, dtype: 'float16' }, // W with a 16 + 3 float16 tail
  { n: 2, c: 5, h: 9, w: 9, f: 13, b: 7, dtype: 'float16' },
  // W a multiple of 16: templates read in place (float16 converted on load), masked first/last chunk
  { n: 3, c: 10, h: 6, w: 32, f: 5, b: 3, dtype: 'float16' },
  { n: 2, c: 7, h: 9, w: 48, f: 13, b: 7, dtype: 'float32' },
  { n: 2, c: 5, h: 5, w: 16, f: 15, b: 3, dtype: 'float16' }, // radius 7
  { n: 2, c: 5, h: 4, w: 32, f: 3, b: 17, dtype: 'float32' }, // radius 8
  { n: 5, c: 19, h: 16, w: 16, f: 7, b: 3, dtype: 'float16' },
];

function makeInputs(k: MatchCase, seed: number): { query: QueryMap; templates: FeatureStack } {
  const query: QueryMap = { shape: [k.c, k.h, k.w], data: randomUnitMaps(1, k.c, k.h, k.w, seed) };
  const t32 = randomUnitMaps(k.n, k.c, k.h, k.w, seed + 1);
  const templates: FeatureStack =
    k.dtype === 'float16'
      ? { dtype: 'float16', shape: [k.n, k.c, k.h, k.w], data: float32ArrayToFloat16(t32) }
      : { dtype: 'float32', shape: [k.n, k.c, k.h, k.w], data: t32 };
  return { query, templates };
}

const caseName = (k: MatchCase): string => `N${k.n} C${k.c} ${k.h}x${k.w} f${k.f} b${k.b} ${k.dtype}`;

describe('matchLayer vs brute-force float64', () => {
  matchCases.forEach((k, index) => {
    it(caseName(k), async () => {
      const { all } = await backendsPromise;
      const { query, templates } = makeInputs(k, 1000 + 17 * index);
      const expected = bruteMatch(query, templates, k.f, k.b);
      for (const { label, backend } of all) {
        const got = await backend.matchLayer(query, templates, { forwardPatch: k.f, backwardPatch: k.b });
        assertClose(got.forward, expected.forward, `${label} forward`);
        assertClose(got.backward, expected.backward, `${label} backward`);
      }
    });
  });

  it('ignores data past N*C*H*W (stores grow in place) and reads typed-array views at their offset', async () => {
    const { all } = await backendsPromise;
    const k: MatchCase = { n: 2, c: 6, h: 5, w: 18, f: 5, b: 3, dtype: 'float32' };
    const { query, templates } = makeInputs(k, 77);
    const expected = bruteMatch(query, templates, k.f, k.b);
    const size = k.n * k.c * k.h * k.w;
    const backing = new Float32Array(size + 1000).fill(5); // garbage before and after
    backing.set(templates.data as Float32Array, 100);
    const view: FeatureStack = { dtype: 'float32', shape: templates.shape, data: backing.subarray(100) };
    for (const { label, backend } of all) {
      const got = await backend.matchLayer(query, view, { forwardPatch: k.f, backwardPatch: k.b });
      assertClose(got.forward, expected.forward, `${label} forward`);
      assertClose(got.backward, expected.backward, `${label} backward`);
    }
  });
});

// ---- parity fixtures ------------------------------------------------------------

interface JsonTensor {
  shape: number[];
  data: number[];
}

function fixtureFiles(op: string): string[] {
  if (!existsSync(parityDir)) return [];
  return readdirSync(parityDir)
    .filter((f) => f.startsWith(`${op}_`) && f.endsWith('.json'))
    .sort();
}

describe('matchLayer vs parity fixtures', () => {
  it('finds the forward_match and backward_match fixtures', () => {
    assert.ok(fixtureFiles('forward_match').length > 0, `no forward_match fixtures in ${parityDir}`);
    assert.ok(fixtureFiles('backward_match').length > 0, `no backward_match fixtures in ${parityDir}`);
  });

  for (const op of ['forward_match', 'backward_match'] as const) {
    for (const file of fixtureFiles(op)) {
      it(`${file}`, async () => {
        const { all } = await backendsPromise;
        const c = JSON.parse(readFileSync(path.join(parityDir, file), 'utf8')) as {
          params: { patch: number };
          inputs: { query: JsonTensor; templates: JsonTensor };
          expected: { per_template: JsonTensor; max: JsonTensor };
          tol: number;
        };
        const [bCount, ch, h, w] = c.inputs.query.shape;
        const [n] = c.inputs.templates.shape;
        const hw = h * w;
        const plane = ch * hw;
        const allTemplates = Float32Array.from(c.inputs.templates.data);
        const tol = Math.max(c.tol, 1e-6);
        // The other direction's window is irrelevant for this op: use a different size to prove it.
        const other = c.params.patch === 1 ? 3 : 1;
        const options =
          op === 'forward_match'
            ? { forwardPatch: c.params.patch, backwardPatch: other }
            : { forwardPatch: other, backwardPatch: c.params.patch };
        for (const { label, backend } of all) {
          for (let bi = 0; bi < bCount; bi++) {
            const query: QueryMap = { shape: [ch, h, w], data: Float32Array.from(c.inputs.query.data.slice(bi * plane, (bi + 1) * plane)) };
            const templates: FeatureStack = { dtype: 'float32', shape: [n, ch, h, w], data: allTemplates };
            const got = await backend.matchLayer(query, templates, options);
            const pick = op === 'forward_match' ? got.forward : got.backward;
            assertClose(pick, c.expected.max.data.slice(bi * hw, (bi + 1) * hw), `${label} ${file} max[b=${bi}]`, tol, 0);
            for (let k = 0; k < n; k++) {
              const one: FeatureStack = { dtype: 'float32', shape: [1, ch, h, w], data: allTemplates.subarray(k * plane) };
              const r = await backend.matchLayer(query, one, options);
              const expected = c.expected.per_template.data.slice((bi * n + k) * hw, (bi * n + k + 1) * hw);
              assertClose(op === 'forward_match' ? r.forward : r.backward, expected, `${label} ${file} per_template[b=${bi}, n=${k}]`, tol, 0);
            }
          }
        }
      });
    }
  }
});

// ---- async behaviour ------------------------------------------------------------

describe('fast backend: asynchronous calls', () => {
  it('does not block the event loop during a long call', async () => {
    const fast = await loadFastBackend();
    // A layer1-sized call with a 7x7 window: long enough (tens of ms even on a fast machine) to observe
    // timers. Values are irrelevant here, so a constant fill keeps the test quick.
    const [n, c, h, w] = [60, 256, 64, 64];
    const query: QueryMap = { shape: [c, h, w], data: new Float32Array(c * h * w).fill(0.0625) };
    const templates: FeatureStack = { dtype: 'float32', shape: [n, c, h, w], data: new Float32Array(n * c * h * w).fill(0.0625) };
    const k = { f: 7, b: 3 };
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const started = performance.now();
    let ticksAtStart = -1;
    setImmediate(() => (ticksAtStart = ticks));
    await fast.matchLayer(query, templates, { forwardPatch: k.f, backwardPatch: k.b });
    const elapsed = performance.now() - started;
    clearInterval(timer);
    assert.ok(elapsed > 20, `the call took only ${elapsed.toFixed(1)} ms: too short to test blocking`);
    assert.ok(ticksAtStart >= 0, 'setImmediate did not run during the call');
    assert.ok(ticks >= 3, `only ${ticks} 1-ms timer ticks fired during a ${elapsed.toFixed(1)} ms call`);
  });

  it('concurrent calls on every variant give correct results', async () => {
    const { fast } = await backendsPromise;
    const cases: MatchCase[] = [
      { n: 3, c: 20, h: 12, w: 23, f: 5, b: 3, dtype: 'float32' },
      { n: 2, c: 9, h: 8, w: 40, f: 3, b: 7, dtype: 'float16' },
      { n: 1, c: 31, h: 10, w: 10, f: 13, b: 7, dtype: 'float32' },
    ];
    const jobs = cases.flatMap((k, i) => {
      const inputs = makeInputs(k, 300 + i);
      const expected = bruteMatch(inputs.query, inputs.templates, k.f, k.b);
      return fast.map((backend) => ({ k, inputs, expected, backend }));
    });
    const results = await Promise.all(
      jobs.map((j) => j.backend.matchLayer(j.inputs.query, j.inputs.templates, { forwardPatch: j.k.f, backwardPatch: j.k.b })),
    );
    results.forEach((got, i) => {
      const j = jobs[i];
      assertClose(got.forward, j.expected.forward, `concurrent ${caseName(j.k)} fast/${j.backend.variant} forward`);
      assertClose(got.backward, j.expected.backward, `concurrent ${caseName(j.k)} fast/${j.backend.variant} backward`);
    });
  });
});

// ---- per-pixel Gram ---------------------------------------------------------------

describe('pixelGram vs brute-force float64', () => {
  const gramCases = [
    { n: 1, c: 1, h: 1, w: 1, p0: 0, p1: 1, dtype: 'float32' as const },
    { n: 5, c: 7, h: 6, w: 9, p0: 0, p1: 54, dtype: 'float32' as const },
    { n: 9, c: 33, h: 5, w: 13, p0: 7, p1: 50, dtype: 'float32' as const }, // N not a multiple of 4, partial chunks
    { n: 4, c: 16, h: 4, w: 8, p0: 16, p1: 32, dtype: 'float32' as const },
    { n: 6, c: 12, h: 7, w: 7, p0: 3, p1: 45, dtype: 'float16' as const },
    { n: 3, c: 5, h: 3, w: 3, p0: 4, p1: 4, dtype: 'float32' as const }, // empty range
    { n: 5, c: 9, h: 12, w: 13, p0: 5, p1: 150, dtype: 'float32' as const }, // several work items, unaligned ends
    { n: 7, c: 6, h: 10, w: 20, p0: 0, p1: 200, dtype: 'float16' as const },
  ];
  for (const g of gramCases) {
    it(`N${g.n} C${g.c} ${g.h}x${g.w} [${g.p0}, ${g.p1}) ${g.dtype}`, async () => {
      const { fast } = await backendsPromise;
      const t32 = randomUnitMaps(g.n, g.c, g.h, g.w, 42 + g.n);
      const stack: FeatureStack =
        g.dtype === 'float16'
          ? { dtype: 'float16', shape: [g.n, g.c, g.h, g.w], data: float32ArrayToFloat16(t32) }
          : { dtype: 'float32', shape: [g.n, g.c, g.h, g.w], data: t32 };
      const expected = bruteGram(stack, g.p0, g.p1);
      const size = (g.p1 - g.p0) * g.n * g.n;
      const ref = new Float32Array(size).fill(NaN);
      pixelGramReference(stack, g.p0, g.p1, ref);
      assertClose(ref, expected, 'reference');
      for (const backend of fast) {
        const out = new Float32Array(size).fill(NaN);
        await backend.pixelGram(stack, g.p0, g.p1, out);
        assertClose(out, expected, `fast/${backend.variant}`);
      }
      // the capability as the registry hands it out (what PTS uses)
      const registered = await getBackend('fast', { precision: 'float' });
      const viaRegistry = new Float32Array(size).fill(NaN);
      await registered.pixelGram!(stack, g.p0, g.p1, viaRegistry);
      assertClose(viaRegistry, expected, 'pixelGram via getBackend');
    });
  }
});

// ---- the contract's other capabilities: L2 normalisation, shared-memory matching ------------

describe('capabilities on every backend', () => {
  it('l2NormalisePixels: every backend has it, bit-identical to the backbone\'s TypeScript one, E_ARGUMENT when the map does not fit', async () => {
    const { all } = await backendsPromise;
    for (const { label, backend } of all) {
      const normalise = backend.l2NormalisePixels;
      assert.ok(normalise, `${label} has l2NormalisePixels`);
      for (const [c, h, w] of [[7, 5, 9], [64, 8, 8], [1, 1, 1]] as const) {
        const size = c * h * w;
        const src = randomUnitMaps(1, 2 * size + 3, 1, 1, c + h).map((v) => v * 7);
        src.fill(0, size + 3, size + 3 + h * w); // pixels whose norm is the epsilon
        for (const offset of [0, 3, size + 3]) {
          assert.deepEqual(normalise(src, c, h, w, offset), l2NormalisePixels(src, c, h, w, offset), `${label} [${c},${h},${w}] at ${offset}`);
        }
      }
      assert.throws(() => normalise(new Float32Array(10), 3, 2, 2), (e: unknown) => (e as { code?: string }).code === 'E_ARGUMENT', label);
      assert.throws(() => normalise(new Float32Array(12), 3, 2, 2, 1), (e: unknown) => (e as { code?: string }).code === 'E_ARGUMENT', label);
    }
  });

  it('shareLayer + matchSharedLayer: templates in shared memory, the same results as matchLayer bit for bit, on every backend', async () => {
    const { all } = await backendsPromise;
    const withInt8: NamedBackend[] = loadBinding().info().int8 === true ? [...all, { label: 'fast int8', backend: await loadFastBackend({ precision: 'int8' }) }] : all;
    const cases = [matchCases[2]!, matchCases[9]!, matchCases[15]!, matchCases[17]!, matchCases[21]!];
    for (const { label, backend } of withInt8) {
      const { shareLayer, matchSharedLayer } = backend;
      assert.ok(shareLayer && matchSharedLayer, `${label} has shared-memory matching`);
      for (const [index, k] of cases.entries()) {
        const { query, templates } = makeInputs(k, 2000 + index);
        const options = { forwardPatch: k.f, backwardPatch: k.b };
        const layer = shareLayer.call(backend, templates, options);
        const buffers = layer.kind === 'float' ? [layer.stack.data.buffer] : [layer.templates.data.buffer, layer.templates.scale.buffer, layer.templates.sum.buffer];
        assert.ok(buffers.every((b) => b instanceof SharedArrayBuffer), `${label} ${caseName(k)}: shared memory`);
        const here: MatchResult = matchSharedLayer.call(backend, layer, query, options);
        const pooled = await backend.matchLayer(query, templates, options);
        assert.deepEqual(here.forward, pooled.forward, `${label} ${caseName(k)} forward`);
        assert.deepEqual(here.backward, pooled.backward, `${label} ${caseName(k)} backward`);
      }
    }
  });

  it('matchLayerAt / matchSharedLayerAt: some templates by index, bit for bit matchLayer on a stack of just those, on every backend', async () => {
    const { all } = await backendsPromise;
    const withInt8: NamedBackend[] = loadBinding().info().int8 === true ? [...all, { label: 'fast int8', backend: await loadFastBackend({ precision: 'int8' }) }] : all;
    const cases = [matchCases[9]!, matchCases[11]!, matchCases[15]!, matchCases[17]!, matchCases[21]!];
    for (const { label, backend } of withInt8) {
      for (const [index, k] of cases.entries()) {
        const { query, templates } = makeInputs(k, 3000 + index);
        const options = { forwardPatch: k.f, backwardPatch: k.b };
        const everyIndex = Int32Array.from({ length: k.n }, (_, i) => i);
        const some = Int32Array.from([k.n - 1, 0, ...(k.n > 3 ? [2] : [])]); // out of order, not contiguous
        for (const indices of [everyIndex, some, Int32Array.of(k.n - 1)]) {
          const what = `${label} ${caseName(k)} at [${indices.join(',')}]`;
          const gathered = gatherTemplates(templates, indices);
          const expected = await backend.matchLayer(query, gathered, options);
          const at = await matchLayerAt(backend, query, templates, indices, options);
          assert.deepEqual(at.forward, expected.forward, `${what} forward`);
          assert.deepEqual(at.backward, expected.backward, `${what} backward`);
          const layer = backend.shareLayer!(templates, options);
          const shared = matchSharedLayerAt(backend, layer, query, indices, options);
          assert.deepEqual(shared.forward, expected.forward, `${what} shared forward`);
          assert.deepEqual(shared.backward, expected.backward, `${what} shared backward`);
        }
        // every index: the same as matching the whole stack
        const whole = await backend.matchLayer(query, templates, options);
        const atAll = await matchLayerAt(backend, query, templates, everyIndex, options);
        assert.deepEqual(atAll.forward, whole.forward, `${label} ${caseName(k)} all forward`);
        assert.deepEqual(atAll.backward, whole.backward, `${label} ${caseName(k)} all backward`);
        for (const bad of [Int32Array.of(k.n), Int32Array.of(-1), new Int32Array(0)]) {
          await assert.rejects(matchLayerAt(backend, query, templates, bad, options), (e: unknown) => (e as { code?: string }).code === 'E_ARGUMENT', `${label} refuses [${bad.join(',')}]`);
        }
      }
    }
  });

  it('the reference refuses an int8-quantised shared layer (E_BACKEND), it does not guess', async (t) => {
    if (loadBinding().info().int8 !== true) return t.skip('this CPU has no AVX-512 VNNI');
    const k = matchCases[17]!; // W = 32: int8-shared
    const { query, templates } = makeInputs(k, 5);
    const options = { forwardPatch: k.f, backwardPatch: k.b };
    const layer = (await loadFastBackend({ precision: 'int8' })).shareLayer(templates, options);
    assert.equal(layer.kind, 'int8');
    assert.throws(() => referenceBackend.matchSharedLayer!(layer, query, options), (e: unknown) => (e as { code?: string }).code === 'E_BACKEND');
  });
});

// ---- argument validation ------------------------------------------------------------

describe('fast backend: argument validation and loading', () => {
  it('reports its variant and threads', async () => {
    const fast = await loadFastBackend();
    assert.equal(fast.name, 'fast');
    assert.ok((NATIVE_VARIANTS as readonly string[]).includes(fast.variant), fast.variant);
    // default: the best supported variant, unless HETMM_FAST_VARIANT forces one
    assert.equal(fast.variant, process.env['HETMM_FAST_VARIANT'] || fast.supportedVariants[0]);
    assert.ok(Number.isInteger(fast.threads) && fast.threads >= 1);
    if (process.env['HETMM_THREADS'] === undefined) {
      const os = await import('node:os');
      assert.equal(fast.threads, os.availableParallelism());
    }
  });

  it('rejects bad arguments with E_ARGUMENT before the native call', async () => {
    const fast = await loadFastBackend();
    const k: MatchCase = { n: 2, c: 3, h: 4, w: 5, f: 3, b: 3, dtype: 'float32' };
    const { query, templates } = makeInputs(k, 9);
    const isArg = (re: RegExp) => (e: unknown) => (e as { code?: string }).code === 'E_ARGUMENT' && re.test((e as Error).message);
    await assert.rejects(fast.matchLayer(query, templates, { forwardPatch: 4, backwardPatch: 3 }), isArg(/odd positive integer for forwardPatch but received 4/));
    await assert.rejects(fast.matchLayer(query, templates, { forwardPatch: 3, backwardPatch: 0 }), isArg(/backwardPatch but received 0/));
    const wrongShape: FeatureStack = { dtype: 'float32', shape: [2, 3, 4, 6], data: new Float32Array(2 * 3 * 4 * 6) };
    await assert.rejects(fast.matchLayer(query, wrongShape, { forwardPatch: 3, backwardPatch: 3 }), isArg(/do not match the query map/));
    const short: FeatureStack = { dtype: 'float32', shape: [2, 3, 4, 5], data: new Float32Array(10) };
    await assert.rejects(fast.matchLayer(query, short, { forwardPatch: 3, backwardPatch: 3 }), isArg(/expected at least/));
    const wrongType: FeatureStack = { dtype: 'float16', shape: [2, 3, 4, 5], data: new Float32Array(120) };
    await assert.rejects(fast.matchLayer(query, wrongType, { forwardPatch: 3, backwardPatch: 3 }), isArg(/Uint16Array/));
    await assert.rejects(fast.pixelGram(templates, 0, 21, new Float32Array(21 * 4)), isArg(/p1/));
    await assert.rejects(fast.pixelGram(templates, 0, 20, new Float32Array(10)), isArg(/out has 10 elements/));
    await assert.rejects(loadFastBackend({ variant: 'sse9' as never }), isArg(/Expected one of avx512, avx2, generic for options.variant but received "sse9"/));
  });

  it('the addon refuses template indices its arrays do not hold (memory safety, not only the TypeScript check)', () => {
    const binding = loadBinding();
    const k: MatchCase = { n: 2, c: 3, h: 4, w: 16, f: 3, b: 3, dtype: 'float32' };
    const { query, templates } = makeInputs(k, 11);
    const out = (): Float32Array => new Float32Array(64);
    const call = (indices: Int32Array, n: number): void => binding.matchLayerHere('', query.data, templates.data as Float32Array, n, 3, 4, 16, 1, 1, out(), out(), indices);
    call(Int32Array.of(1, 0), 2); // both stored templates: fine
    for (const [indices, n] of [[Int32Array.of(2), 1], [Int32Array.of(-1), 1], [Int32Array.of(0, 1), 1], [new Float32Array([0]) as never, 1]] as const) {
      assert.throws(() => call(indices, n), (e: unknown) => e instanceof RangeError && /indices/.test(e.message), `[${String(indices)}] n ${n}`);
    }
  });
});

// ---- int8 matching (opt-in, AVX-512 VNNI) ---------------------------------------------

/** Tolerance of int8 against the float definition on unit vectors (per-vector scales; docs/PERFORMANCE.md). */
const INT8_SIMILARITY_TOLERANCE = 0.01;

// int8 needs AVX-512 VNNI; on other CPUs these tests are reported as skipped, with the reason.
const int8Skip = loadBinding().info().int8 === true ? false : 'this CPU has no AVX-512 VNNI (int8 matching unavailable)';

describe('int8 matching', { skip: int8Skip }, () => {
  const int8Cases: MatchCase[] = [
    { n: 3, c: 10, h: 6, w: 32, f: 5, b: 3, dtype: 'float32' }, // C not a multiple of 4
    { n: 1, c: 64, h: 16, w: 16, f: 7, b: 3, dtype: 'float32' }, // N = 1: row bands
    { n: 7, c: 12, h: 6, w: 16, f: 1, b: 1, dtype: 'float32' },
    { n: 2, c: 7, h: 9, w: 48, f: 13, b: 7, dtype: 'float32' },
    { n: 2, c: 5, h: 5, w: 16, f: 15, b: 3, dtype: 'float16' }, // radius 7, windows larger than the map
    { n: 5, c: 19, h: 16, w: 16, f: 7, b: 3, dtype: 'float16' },
    { n: 2, c: 256, h: 8, w: 32, f: 3, b: 5, dtype: 'float32' }, // f < b, many channels
    { n: 3, c: 20, h: 7, w: 64, f: 5, b: 3, dtype: 'float32' }, // inside chunks: |dx| = 2 by unaligned loads
    { n: 2, c: 9, h: 6, w: 64, f: 7, b: 5, dtype: 'float16' }, // the same at radius 3, wide backward windows
  ];

  it('quantises each pixel vector to within half a step of its own scale', () => {
    const k: MatchCase = { n: 1, c: 13, h: 3, w: 16, f: 1, b: 1, dtype: 'float32' };
    const { query } = makeInputs(k, 5);
    const q8 = quantizeQueryInt8(query);
    const hw = k.h * k.w;
    for (let p = 0; p < hw; p++) {
      let max = 0;
      for (let c = 0; c < k.c; c++) max = Math.max(max, Math.abs(query.data[c * hw + p]));
      assert.ok(Math.abs(q8.scale[p] - max / 127) <= 1e-7 * max, `scale of pixel ${p}`);
      for (let c = 0; c < 16; c++) {
        const stored = q8.data[4 * ((c >> 2) * hw + p) + (c & 3)] - 128;
        const want = c < k.c ? query.data[c * hw + p] : 0;
        assert.ok(Math.abs(stored * q8.scale[p] - want) <= q8.scale[p] / 2 + 1e-7, `pixel ${p} channel ${c}: ${stored * q8.scale[p]} vs ${want}`);
      }
    }
  });

  it('native quantisation equals the TypeScript reference bit for bit', () => {
    const binding = loadBinding();
    for (const [c, hw, offsetBy] of [[13, 48, 128], [9, 37, 128], [64, 256, 0], [1, 16, 0], [4, 5, 128]] as const) {
      const src = randomUnitMaps(1, c, 1, hw, 300 + c);
      src[0] = 0.5 / 254; // exactly half a step for some scales: rounding ties must agree
      const groups = Math.ceil(c / 4);
      const outs = [0, 1].map(() => ({ out: new Int8Array(groups * 4 * hw), scale: new Float32Array(hw), sums: new Int32Array(hw).fill(7) }));
      quantizeMapReference(src, c, hw, outs[0]!.out, outs[0]!.scale, offsetBy === 0 ? outs[0]!.sums : undefined, offsetBy);
      binding.quantizeInt8(src, c, hw, outs[1]!.out, outs[1]!.scale, offsetBy === 0 ? outs[1]!.sums : null, offsetBy);
      assert.deepEqual(outs[1]!.out, outs[0]!.out, `C${c} hw${hw} values`);
      assert.deepEqual(outs[1]!.scale, outs[0]!.scale, `C${c} hw${hw} scales`);
      assert.deepEqual(outs[1]!.sums, outs[0]!.sums, `C${c} hw${hw} sums`);
      if (offsetBy === 0) assert.ok(outs[0]!.sums.some((v) => v !== 7 && v !== 0), 'sums were written');
    }
  });

  it('places packed maps on 64-byte boundaries (alignmentOffset), with the same values', () => {
    const binding = loadBinding();
    const whole = new Uint8Array(256);
    const first = binding.alignmentOffset(whole);
    assert.ok(Number.isInteger(first) && first >= 0 && first < 64, `offset ${first}`);
    for (const k of [1, 17, 63]) assert.equal(binding.alignmentOffset(whole.subarray(k)), (first - k + 64) % 64, `subarray at ${k}`);
    const allocate = alignedBytes((a) => binding.alignmentOffset(a));
    const k: MatchCase = { n: 2, c: 12, h: 3, w: 16, f: 3, b: 3, dtype: 'float32' };
    const { query, templates } = makeInputs(k, 77);
    const q8 = quantizeQueryInt8(query, quantizeMapReference, allocate);
    const t8 = quantizeTemplatesInt8(templates, undefined, quantizeMapReference, allocate);
    assert.equal(binding.alignmentOffset(q8.data), 0);
    assert.equal(binding.alignmentOffset(t8.data), 0);
    assert.deepEqual(q8.data, quantizeQueryInt8(query).data);
    assert.deepEqual(t8.data, quantizeTemplatesInt8(templates).data);
  });

  int8Cases.forEach((k, index) => {
    it(`native equals the TypeScript int8 reference and the float definition within ${INT8_SIMILARITY_TOLERANCE}: ${caseName(k)}`, async () => {
      const int8 = await loadFastBackend({ precision: 'int8' });
      assert.equal(int8.precision, 'int8');
      const { query, templates } = makeInputs(k, 4000 + 31 * index);
      const options = { forwardPatch: k.f, backwardPatch: k.b };
      const got = await int8.matchLayer(query, templates, options);
      const reference = matchLayerInt8Reference(quantizeQueryInt8(query), quantizeTemplatesInt8(templates), k.n, options);
      assertClose(got.forward, reference.forward, 'int8 forward vs int8 reference', 1e-6, 1e-5);
      assertClose(got.backward, reference.backward, 'int8 backward vs int8 reference', 1e-6, 1e-5);
      const exact = bruteMatch(query, templates, k.f, k.b);
      assertClose(got.forward, exact.forward, 'int8 forward vs float64 definition', INT8_SIMILARITY_TOLERANCE, 0);
      assertClose(got.backward, exact.backward, 'int8 backward vs float64 definition', INT8_SIMILARITY_TOLERANCE, 0);
    });
  });

  it('quantises a growing store incrementally and matches the first N templates only', async () => {
    const int8 = await loadFastBackend({ precision: 'int8' });
    const k: MatchCase = { n: 4, c: 8, h: 4, w: 16, f: 3, b: 3, dtype: 'float32' };
    const { query, templates } = makeInputs(k, 91);
    const options = { forwardPatch: 3, backwardPatch: 3 };
    const data = templates.data as Float32Array;
    const per = k.c * k.h * k.w;
    // the same array seen with N = 2, then N = 4 (as a store grows in place)
    const two: FeatureStack = { dtype: 'float32', shape: [2, k.c, k.h, k.w], data };
    const four: FeatureStack = { dtype: 'float32', shape: [4, k.c, k.h, k.w], data };
    const gotTwo = await int8.matchLayer(query, two, options);
    const gotFour = await int8.matchLayer(query, four, options);
    const refTwo = matchLayerInt8Reference(quantizeQueryInt8(query), quantizeTemplatesInt8({ ...two, data: data.slice(0, 2 * per) }), 2, options);
    const refFour = matchLayerInt8Reference(quantizeQueryInt8(query), quantizeTemplatesInt8(four), 4, options);
    assertClose(gotTwo.forward, refTwo.forward, 'N=2 forward', 1e-6, 1e-5);
    assertClose(gotFour.forward, refFour.forward, 'N=4 forward', 1e-6, 1e-5);
    assertClose(gotFour.backward, refFour.backward, 'N=4 backward', 1e-6, 1e-5);
  });

  it('uses the float kernel where int8 does not apply (width not a multiple of 16)', async () => {
    const int8 = await loadFastBackend({ precision: 'int8' });
    const k: MatchCase = { n: 2, c: 6, h: 5, w: 18, f: 5, b: 3, dtype: 'float32' };
    const { query, templates } = makeInputs(k, 13);
    const expected = bruteMatch(query, templates, k.f, k.b);
    const got = await int8.matchLayer(query, templates, { forwardPatch: k.f, backwardPatch: k.b });
    assertClose(got.forward, expected.forward, 'fallback forward');
    assertClose(got.backward, expected.backward, 'fallback backward');
  });

  it('rejects an unknown precision', async () => {
    await assert.rejects(
      loadFastBackend({ precision: 'int4' as never }),
      (e: unknown) => (e as { code?: string }).code === 'E_ARGUMENT' && /Expected float or int8 for options.precision but received "int4"/.test((e as Error).message),
    );
  });
});
