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
