/**
 * opticsFromSimilarity (what PTS runs) must be optics() on d = 1 - s bit for
 * bit: every field, on matrices with exact duplicates (zero and tiny signed
 * distances), ties, and both core-distance paths (the sorted-list pass for
 * small min_samples and the quickselect one).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { optics, opticsFromSimilarity, OpticsScratch } from '../src/selection/optics.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Gram of n random unit vectors in a few clusters, some exact duplicates, in float64. */
function similarityMatrix(n: number, dim: number, seed: number): Float64Array {
  const next = rng(seed);
  const centres = Array.from({ length: 4 }, () => Array.from({ length: dim }, () => next() * 2 - 1));
  const vectors: number[][] = [];
  for (let i = 0; i < n; i++) {
    if (i > 0 && next() < 0.15) {
      vectors.push(vectors[Math.floor(next() * i)]!.slice()); // an exact duplicate
      continue;
    }
    const c = centres[Math.floor(next() * centres.length)]!;
    const v = c.map((x) => x + (next() - 0.5) * 0.6);
    const norm = Math.hypot(...v);
    vectors.push(v.map((x) => x / norm));
  }
  const s = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += vectors[i]![k]! * vectors[j]![k]!;
      s[i * n + j] = dot;
    }
  }
  return s;
}

describe('opticsFromSimilarity = optics(1 - similarity)', () => {
  const cases = [
    { n: 120, minSamples: 2 },
    { n: 120, minSamples: 12 }, // sorted-list core distances
    { n: 300, minSamples: 30 },
    { n: 400, minSamples: 40 }, // quickselect core distances (min_samples > 32)
    { n: 20, minSamples: 5 }, // quickselect (n < 8 min_samples)
  ];
  cases.forEach(({ n, minSamples }, index) => {
    it(`N ${n}, min_samples ${minSamples}`, () => {
      const sim = similarityMatrix(n, 6, 17 + index);
      const dist = sim.map((x) => 1 - x);
      const expected = optics(dist, n, minSamples);
      const got = opticsFromSimilarity(sim, n, minSamples, new OpticsScratch(n));
      assert.ok(new Set(expected.labels).size > 1, 'the case should have clusters and/or noise');
      for (const field of ['labels', 'ordering', 'reachability', 'coreDistances', 'predecessor'] as const) {
        // Object.is per element: -0 and +0 must match too (the xi step reads the sign)
        const a = Array.from(expected[field] as ArrayLike<number>);
        const b = Array.from(got[field] as ArrayLike<number>);
        assert.equal(b.length, a.length, field);
        a.forEach((v, i) => assert.ok(Object.is(v, b[i]), `${field}[${i}]: ${b[i]} vs ${v}`));
      }
    });
  });
});
