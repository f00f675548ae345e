/** Parity: same-size 2-D Gaussian blur with zero padding (fixture files blur_*.json). */
import { gaussianBlur } from '../../../src/matching/index.js';
import type { CheckResult, ParityChecker } from '../types.js';
import { combineChecks, compareArrays, sliceLeading, tensorFromJson } from '../util.js';

const check: ParityChecker = (c) => {
  const sigma = c.params['sigma'] as number;
  const kernel = c.params['kernel'] as number;
  const input = tensorFromJson(c.inputs['map'], 'inputs.map');
  const expected = tensorFromJson(c.expected['map'], 'expected.map');
  const [batch, h, w] = input.shape as [number, number, number];
  const results: CheckResult[] = [];
  for (let b = 0; b < batch; b++) {
    const out = gaussianBlur(sliceLeading(input, b).data, h, w, sigma, kernel);
    results.push(compareArrays(`map[${b}]`, out, sliceLeading(expected, b).data, c.tol));
  }
  return combineChecks(results);
};
export default check;
