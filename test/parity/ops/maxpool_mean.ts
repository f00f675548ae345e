/** Parity: max-pool (window = stride = k, floor) then mean of the pooled maxima. */
import { maxPoolMean } from '../../../src/matching/index.js';
import type { ParityChecker } from '../types.js';
import { compareArrays, sliceLeading, tensorFromJson } from '../util.js';

const check: ParityChecker = (c) => {
  const kernel = c.params['kernel'] as number;
  const input = tensorFromJson(c.inputs['map'], 'inputs.map');
  const expected = tensorFromJson(c.expected['score'], 'expected.score');
  const [batch, h, w] = input.shape as [number, number, number];
  const scores = Array.from({ length: batch }, (_, b) => maxPoolMean(sliceLeading(input, b).data, h, w, kernel));
  return compareArrays('score', scores, expected.data, c.tol);
};
export default check;
