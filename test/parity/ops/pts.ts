/**
 * Parity checker for op `pts`: per pixel, OPTICS labels (exact) and the K
 * selected sheets (within tol). The fixture templates are float64, finer than
 * a FeatureStack (float32/float16) holds, so the checker builds each pixel's
 * float64 Gram itself (channels summed in order, like the reference Gram) and
 * runs the library's per-pixel selection, selectAtPixel.
 */
import type { CheckResult, JsonTensor, ParityCase, ParityChecker } from '../types.js';
import { selectAtPixel, PtsPixelScratch, ptsMinSamples } from '../../../src/selection/pts.js';

const check: ParityChecker = (c: ParityCase): CheckResult => {
  const templates = c.inputs['templates'] as JsonTensor;
  const expectedLabels = (c.expected['labels'] as JsonTensor).data;
  const expectedSheets = c.expected['selected'] as JsonTensor;
  const [n, ch, h, w] = templates.shape as [number, number, number, number];
  const k = Number(c.params['size']);
  const hw = h * w;
  const x = templates.data;
  const { minSamples } = ptsMinSamples(n, k);
  if (c.params['min_samples'] !== undefined && Number(c.params['min_samples']) !== minSamples) {
    return { ok: false, detail: `fixture min_samples ${c.params['min_samples']} != N // K = ${minSamples}` };
  }
  const kept = Math.min(k, n);
  if (expectedSheets.shape[0] !== kept) {
    return { ok: false, detail: `expected ${expectedSheets.shape[0]} sheets, PTS keeps min(K, N) = ${kept}` };
  }
  const gram = new Float64Array(n * n);
  const scratch = new PtsPixelScratch(n);
  const labels = new Int32Array(n);
  const chosen = new Int32Array(k);
  let labelMismatches = 0;
  let maxError = 0;
  let firstProblem = '';
  for (let p = 0; p < hw; p++) {
    for (let i = 0; i < n; i++) {
      for (let j = i; j < n; j++) {
        let dot = 0;
        for (let q = 0; q < ch; q++) dot += x[(i * ch + q) * hw + p]! * x[(j * ch + q) * hw + p]!;
        gram[i * n + j] = dot;
        gram[j * n + i] = dot;
      }
    }
    if (n <= k) {
      for (let s = 0; s < n; s++) chosen[s] = s;
      labels.fill(-1); // not computed when all are kept
    } else {
      selectAtPixel(gram, 0, n, k, minSamples, scratch, labels, chosen);
    }
    for (let i = 0; i < n && n > k; i++) {
      if (labels[i] !== expectedLabels[i * hw + p]) {
        labelMismatches++;
        if (!firstProblem) firstProblem = `labels differ at pixel ${p}, image ${i}: expected ${expectedLabels[i * hw + p]}, got ${labels[i]}`;
      }
    }
    for (let s = 0; s < kept; s++) {
      for (let q = 0; q < ch; q++) {
        const err = Math.abs(x[(chosen[s]! * ch + q) * hw + p]! - expectedSheets.data[(s * ch + q) * hw + p]!);
        if (err > maxError) maxError = err;
        if (err > c.tol && !firstProblem) firstProblem = `sheet ${s} differs at pixel ${p} (chose image ${chosen[s]}), error ${err}`;
      }
    }
  }
  const ok = labelMismatches === 0 && maxError <= c.tol;
  return ok ? { ok, maxError } : { ok, maxError: labelMismatches > 0 ? labelMismatches : maxError, detail: `${labelMismatches} label mismatches; ${firstProblem}` };
};

export default check;
