/**
 * Parity: the evaluation metrics (image AUROC, pixel AUROC, HETMM's PRO in
 * percent, MVTec AUPRO as a fraction) on [M, H, W] maps and 0/1 masks.
 * Maps are rounded to float32, as the pipeline produces them.
 */
import { aupro, imageAuroc, pixelAuroc, proHetmm, type MetricResult } from '../../../src/metrics/index.js';
import type { CheckResult, ParityChecker } from '../types.js';
import { combineChecks, compareArrays, tensorFromJson, tensorFromJson32 } from '../util.js';

function compareMetric(name: string, actual: MetricResult, expected: unknown, tol: number): CheckResult {
  if (typeof expected !== 'number') return { ok: false, detail: `${name}: the case has no numeric expected value` };
  if (actual.value === null) return { ok: false, maxError: Infinity, detail: `${name}: got null (${actual.reason}), expected ${expected}` };
  return compareArrays(name, [actual.value], [expected], tol);
}

const check: ParityChecker = (c) => {
  const maps = tensorFromJson32(c.inputs['maps'], 'inputs.maps');
  const masks = tensorFromJson(c.inputs['masks'], 'inputs.masks');
  const labels = tensorFromJson(c.inputs['labels'], 'inputs.labels');
  const scores = tensorFromJson(c.inputs['scores'], 'inputs.scores');
  const [count, h, w] = maps.shape as [number, number, number];
  const size = h * w;
  const mapList: Float32Array[] = [];
  const maskList: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    mapList.push(maps.data.subarray(i * size, (i + 1) * size));
    maskList.push(Uint8Array.from(masks.data.subarray(i * size, (i + 1) * size)));
  }
  const steps = (c.params['pro_steps'] as number | undefined) ?? 300;
  const fprLimit = (c.params['fpr_limit'] as number | undefined) ?? 0.3;
  const imageLabels = Array.from(labels.data, (l) => (l === 1 ? 1 : 0) as 0 | 1);
  return combineChecks([
    compareMetric('image_auroc', imageAuroc(scores.data, imageLabels), c.expected['image_auroc'], c.tol),
    compareMetric('pixel_auroc', pixelAuroc(mapList, maskList), c.expected['pixel_auroc'], c.tol),
    compareMetric('pro_hetmm', proHetmm(mapList, maskList, { width: w, steps, fprLimit }), c.expected['pro_hetmm'], c.tol),
    compareMetric('aupro', aupro(mapList, maskList, { width: w, fprLimit }), c.expected['aupro'], c.tol),
  ]);
};
export default check;
