import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { optics, opticsCosine, OpticsScratch, round15, cosineDistanceMatrix } from '../src/selection/optics.js';
import { HetmmError } from '../src/errors.js';

// dist/test/optics.test.js -> repo root
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface OpticsOutputs {
  labels: number[];
  ordering: number[];
  reachability: (number | null)[];
  core_distances: (number | null)[];
  predecessor: number[];
}
interface SklearnCase extends OpticsOutputs {
  name: string;
  n: number;
  dim: number;
  min_samples: number;
  points: number[];
  brute_agrees: boolean;
  brute?: OpticsOutputs;
}

const cases: SklearnCase[] = JSON.parse(readFileSync(path.join(repoRoot, 'test/data/optics/cases.json'), 'utf8'));
const inf = (v: number | null): number => (v === null ? Infinity : v);

test('generated cases cover the brief (N 2..100, min_samples 2..10)', () => {
  assert.ok(cases.length >= 20);
  assert.equal(Math.min(...cases.map((c) => c.n)), 2);
  assert.equal(Math.max(...cases.map((c) => c.n)), 100);
  assert.equal(Math.min(...cases.map((c) => c.min_samples)), 2);
  assert.equal(Math.max(...cases.map((c) => c.min_samples)), 10);
});

for (const c of cases) {
  test(`optics matches scikit-learn exactly: ${c.name} (n=${c.n}, dim=${c.dim}, m=${c.min_samples})`, () => {
    // where scikit-learn's ball tree (dim <= 15) misses a neighbour, compare with its brute-force result
    const expected = c.brute_agrees ? c : c.brute!;
    const r = opticsCosine(Float64Array.from(c.points), c.n, c.dim, c.min_samples);
    assert.deepEqual(Array.from(r.ordering), expected.ordering, 'ordering');
    assert.deepEqual(Array.from(r.coreDistances), expected.core_distances.map(inf), 'core distances');
    assert.deepEqual(Array.from(r.reachability), expected.reachability.map(inf), 'reachability');
    assert.deepEqual(Array.from(r.predecessor), expected.predecessor, 'predecessor');
    assert.deepEqual(Array.from(r.labels), expected.labels, 'labels');
    if (!c.brute_agrees) assert.deepEqual(Array.from(r.labels), c.labels, 'labels (ball tree)');
  });
}

test('a reused scratch gives the same results as fresh arrays, across sizes', () => {
  const scratch = new OpticsScratch(4);
  for (const c of [...cases].sort((a, b) => b.n - a.n).concat(cases)) {
    const d = cosineDistanceMatrix(Float64Array.from(c.points), c.n, c.dim);
    const fresh = optics(d, c.n, c.min_samples);
    const reused = optics(d, c.n, c.min_samples, scratch);
    assert.deepEqual(Array.from(reused.labels), Array.from(fresh.labels), c.name);
    assert.deepEqual(Array.from(reused.ordering), Array.from(fresh.ordering), c.name);
  }
});

test('round15 is numpy.around(x, 15): half to even, sign of zero kept', () => {
  // values chosen so x * 1e15 is exactly k + 0.5
  assert.equal(round15(2.5e-15), 2e-15);
  assert.equal(round15(3.5e-15), 4e-15);
  assert.equal(round15(-2.5e-15), -2e-15);
  assert.ok(Object.is(round15(-2.220446049250313e-16), -0));
  assert.ok(Object.is(round15(1.1e-16), 0));
  assert.equal(round15(Infinity), Infinity);
  assert.equal(round15(0.12345678901234567), 0.123456789012346);
});

test('the parity fixtures (../shared) match when present', () => {
  const dir = path.resolve(repoRoot, '../shared/fixtures/parity');
  for (const f of ['optics_1_0.json', 'optics_1_1.json', 'optics_1_2.json']) {
    let text: string;
    try {
      text = readFileSync(path.join(dir, f), 'utf8');
    } catch {
      continue;
    }
    const fx = JSON.parse(text);
    const [n, dim] = fx.inputs.points.shape as [number, number];
    const r = opticsCosine(Float64Array.from(fx.inputs.points.data as number[]), n, dim, fx.params.min_samples);
    assert.deepEqual(Array.from(r.labels), fx.expected.labels.data as number[], f);
  }
});

test('bad arguments are HetmmError E_ARGUMENT naming the value', () => {
  const d = new Float64Array(9);
  assert.throws(() => optics(d, 3, 1), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT' && /minSamples.*got 1/.test(e.message));
  assert.throws(() => optics(d, 3, 4), (e: unknown) => e instanceof HetmmError && /\[2, n = 3\], got 4/.test(e.message));
  assert.throws(() => optics(d, 4, 2), (e: unknown) => e instanceof HetmmError && /length 9/.test(e.message));
  assert.throws(() => optics(d, 3, 2.5), HetmmError);
});

/**
 * Steps 1-2 written plainly (sorted rows, argmin over the unprocessed in index
 * order, round15 on every candidate): the optimised code (row pre-filter,
 * compact unprocessed list, skipped rounding) must agree bit for bit at the
 * sizes PTS runs (N >= 128 takes the pre-filter path, which the 21
 * scikit-learn cases, N <= 100, do not reach).
 */
function plainGraph(d: Float64Array, n: number, m: number): { core: number[]; reach: number[]; pred: number[]; ordering: number[] } {
  const core = Array.from({ length: n }, (_, i) => round15(Array.from(d.subarray(i * n, i * n + n)).sort((a, b) => a - b)[m - 1]!));
  const reach = new Array<number>(n).fill(Infinity);
  const pred = new Array<number>(n).fill(-1);
  const done = new Array<boolean>(n).fill(false);
  const ordering: number[] = [];
  for (let step = 0; step < n; step++) {
    let p = -1;
    for (let j = 0; j < n; j++) if (!done[j] && (p < 0 || reach[j]! < reach[p]!)) p = j;
    done[p] = true;
    ordering.push(p);
    for (let j = 0; j < n; j++) {
      if (done[j]) continue;
      const dj = d[p * n + j]!;
      const r = round15(dj > core[p]! ? dj : core[p]!);
      if (r < reach[j]!) {
        reach[j] = r;
        pred[j] = p;
      }
    }
  }
  return { core, reach, pred, ordering };
}

test('large N (pre-filter path): core distances, ordering, reachability and predecessors equal the plain algorithm', () => {
  let seed = 7;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (const [n, dim, m, dupShare] of [[300, 8, 30, 0], [500, 16, 50, 0.2], [200, 4, 2, 0.3], [761, 32, 76, 0.05]] as const) {
    const points = new Float64Array(n * dim);
    const centres = Array.from({ length: 5 }, () => Array.from({ length: dim }, () => rand() - 0.5));
    for (let i = 0; i < n; i++) {
      const src = i > 0 && rand() < dupShare ? Math.floor(rand() * i) : -1;
      let norm = 0;
      for (let q = 0; q < dim; q++) {
        const v = src >= 0 ? points[src * dim + q]! : centres[i % 5]![q]! + (0.05 + 0.1 * (i % 3)) * (rand() - 0.5);
        points[i * dim + q] = v;
        norm += v * v;
      }
      if (src < 0) for (let q = 0; q < dim; q++) points[i * dim + q]! /= Math.sqrt(norm);
    }
    const d = cosineDistanceMatrix(points, n, dim);
    const fast = optics(d, n, m);
    const plain = plainGraph(d, n, m);
    const label = `n=${n} m=${m} duplicates=${dupShare}`;
    assert.deepEqual(Array.from(fast.coreDistances), plain.core, `core distances, ${label}`);
    assert.deepEqual(Array.from(fast.ordering), plain.ordering, `ordering, ${label}`);
    assert.deepEqual(Array.from(fast.reachability), plain.reach, `reachability, ${label}`);
    assert.deepEqual(Array.from(fast.predecessor), plain.pred, `predecessors, ${label}`);
  }
});
