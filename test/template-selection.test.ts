/**
 * Template preselection (issue 23, item 1), the selection step: the
 * descriptor and the top k against a brute-force reference (descriptors
 * pooled by hand, exact top k by similarity, ties to the lower index), the
 * descriptor cache, and the option's checks. The detector with selection:
 * ./detector-selection.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HetmmError } from '../src/errors.js';
import { TemplateDescriptors, globalDescriptor, nearestTemplates, resolveTemplateSelection } from '../src/selection/nearest-templates.js';
import { float32ArrayToFloat16 } from '../src/store/float16.js';
import { randomUnitMaps, rng } from './helpers/random.js';
import { bruteDescriptor, bruteTopK } from './helpers/selection-reference.js';

describe('the selection step against brute force', () => {
  test('globalDescriptor pools each grid cell and normalises; a grid finer than the map is E_ARGUMENT', () => {
    for (const [c, h, w, grid] of [[3, 4, 4, 1], [5, 5, 3, 2], [8, 16, 16, 2], [4, 7, 9, 3], [2, 2, 2, 2], [3, 16, 16, 4]] as const) {
      const map = randomUnitMaps(1, c, h, w, c * 31 + h);
      const out = new Float32Array(c * grid * grid + 2);
      globalDescriptor(map, 0, [c, h, w], grid, out, 2);
      const expected = bruteDescriptor(map, c, h, w, grid);
      expected.forEach((v, i) => assert.ok(Math.abs(out[2 + i]! - v) < 1e-6, `[${c},${h},${w}] grid ${grid} element ${i}: ${out[2 + i]} vs ${v}`));
    }
    assert.throws(() => globalDescriptor(new Float32Array(12), 0, [3, 2, 2], 3, new Float32Array(27)), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT', 'a grid finer than the map');
  });

  test('nearestTemplates is the exact top k, ties to the lower index, never the excluded one', () => {
    const random = rng(7);
    const n = 40;
    const d = 24;
    const rows: Float32Array[] = Array.from({ length: n }, () => Float32Array.from({ length: d }, () => random() * 2 - 1));
    // exact ties: copies of earlier rows
    rows[17] = rows[3]!.slice();
    rows[30] = rows[3]!.slice();
    rows[25] = rows[9]!.slice();
    const flat = new Float32Array(n * d);
    rows.forEach((r, i) => flat.set(r, i * d));
    for (const [qi, k, exclude] of [[3, 1, undefined], [3, 2, undefined], [3, 3, 3], [9, 1, 9], [5, 7, undefined], [0, 39, 12], [11, 40, undefined], [11, 100, 4]] as const) {
      const query = rows[qi]!;
      const got = [...nearestTemplates(flat, n, query, k, exclude)];
      assert.deepEqual(got, bruteTopK(rows, query, k, exclude), `query ${qi}, k ${k}, exclude ${String(exclude)}`);
    }
    // the copies of row 3 tie with it: the lowest indices win
    assert.deepEqual([...nearestTemplates(flat, n, rows[3]!, 2)], [3, 17]);
    assert.deepEqual([...nearestTemplates(flat, n, rows[3]!, 2, 3)], [17, 30]);
    assert.throws(() => nearestTemplates(flat, n, rows[0]!, 0), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT');
  });

  test('TemplateDescriptors: float32 and float16 stores, computed once, a grown store only for its new templates', () => {
    const [c, h, w] = [6, 5, 8];
    const maps = randomUnitMaps(9, c, h, w, 99);
    for (const dtype of ['float32', 'float16'] as const) {
      const data = dtype === 'float32' ? maps : float32ArrayToFloat16(maps);
      const descriptors = new TemplateDescriptors(2);
      const first = descriptors.of({ dtype, shape: [4, c, h, w], data });
      const firstCopy = first.slice();
      const all = descriptors.of({ dtype, shape: [9, c, h, w], data });
      assert.deepEqual(all.subarray(0, firstCopy.length), firstCopy, `${dtype}: the first 4 kept`);
      for (let t = 0; t < 9; t++) {
        const map = dtype === 'float32' ? maps.subarray(t * c * h * w) : decodeHalf(data as Uint16Array, t * c * h * w, c * h * w);
        const expected = bruteDescriptor(map, c, h, w, 2);
        expected.forEach((v, i) => assert.ok(Math.abs(all[t * expected.length + i]! - v) < 1e-6, `${dtype} template ${t} element ${i}`));
      }
    }
  });

  test('the option is checked: k a positive integer, grid and layer in range, no unknown keys', () => {
    assert.deepEqual(resolveTemplateSelection({ k: 8 }, 3, 'o'), { k: 8, grid: 2, layer: 2 });
    assert.deepEqual(resolveTemplateSelection({ k: 8, grid: 1, layer: 0 }, 3, 'o'), { k: 8, grid: 1, layer: 0 });
    for (const bad of [{ k: 0 }, { k: 1.5 }, { k: '8' }, {}, { k: 4, grid: 0 }, { k: 4, layer: 3 }, { k: 4, kk: 1 }, null, [4], 4]) {
      assert.throws(() => resolveTemplateSelection(bad, 3, 'options.templateSelection'), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT' && /options\.templateSelection/.test(e.message), JSON.stringify(bad));
    }
  });
});

function decodeHalf(bits: Uint16Array, offset: number, length: number): Float32Array {
  // the store's own decoding is what descriptors see; a plain re-implementation of IEEE half
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    const b = bits[offset + i]!;
    const sign = b & 0x8000 ? -1 : 1;
    const exp = (b >> 10) & 0x1f;
    const frac = b & 0x3ff;
    out[i] = exp === 0 ? sign * 2 ** -14 * (frac / 1024) : exp === 31 ? (frac ? NaN : sign * Infinity) : sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return out;
}

