/**
 * Parity checker for op `optics`: scikit-learn OPTICS labels over unit
 * vectors with the cosine distance 1 - x.y. Labels must match exactly;
 * maxError is the number of mismatching labels.
 */
import type { CheckResult, JsonTensor, ParityCase, ParityChecker } from '../types.js';
import { opticsCosine } from '../../../src/selection/optics.js';

const check: ParityChecker = (c: ParityCase): CheckResult => {
  const points = c.inputs['points'] as JsonTensor;
  const expected = (c.expected['labels'] as JsonTensor).data;
  const [n, dim] = points.shape as [number, number];
  const minSamples = Number(c.params['min_samples']);
  const labels = opticsCosine(Float64Array.from(points.data), n, dim, minSamples).labels;
  let mismatches = 0;
  let first = -1;
  for (let i = 0; i < n; i++) {
    if (labels[i] !== expected[i]) {
      mismatches++;
      if (first < 0) first = i;
    }
  }
  if (mismatches === 0) return { ok: true, maxError: 0 };
  return {
    ok: false,
    maxError: mismatches,
    detail: `${mismatches}/${n} labels differ; first at point ${first}: expected ${expected[first]}, got ${labels[first]}`,
  };
};

export default check;
