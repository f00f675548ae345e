/**
 * Shared body of the forward_match / backward_match checkers: per_template
 * through the reference per-template functions, max through a KernelBackend
 * (the reference, or the HETMM_BACKEND-selected one when that is set, so the
 * fixtures also check a fast backend).
 */
import { setting } from '../../src/config.js';
import { getBackend } from '../../src/kernels/index.js';
import type { FeatureStack, KernelBackend, QueryMap } from '../../src/kernels/contract.js';
import { backwardMatchPerTemplate, forwardMatchPerTemplate } from '../../src/kernels/reference/index.js';
import type { CheckResult, ParityCase } from './types.js';
import { combineChecks, compareArrays, sliceLeading, tensorFromJson, tensorFromJson32 } from './util.js';

export async function backendUnderTest(): Promise<KernelBackend> {
  return getBackend(setting('backend') !== undefined ? 'auto' : 'reference');
}

export async function checkMatchCase(c: ParityCase, direction: 'forward' | 'backward'): Promise<CheckResult> {
  const patch = c.params['patch'] as number;
  const query = tensorFromJson32(c.inputs['query'], 'inputs.query');
  const tmpl = tensorFromJson32(c.inputs['templates'], 'inputs.templates');
  const expectedPer = tensorFromJson(c.expected['per_template'], 'expected.per_template');
  const expectedMax = tensorFromJson(c.expected['max'], 'expected.max');
  const [batch, channels, h, w] = query.shape as [number, number, number, number];
  const templates: FeatureStack = {
    dtype: 'float32',
    shape: tmpl.shape as [number, number, number, number],
    data: tmpl.data,
  };
  const backend = await backendUnderTest();
  const results: CheckResult[] = [];
  for (let b = 0; b < batch; b++) {
    const q: QueryMap = { shape: [channels, h, w], data: sliceLeading(query, b).data };
    const per =
      direction === 'forward' ? forwardMatchPerTemplate(q, templates, patch) : backwardMatchPerTemplate(q, templates, patch);
    results.push(compareArrays(`per_template[${b}]`, per, sliceLeading(expectedPer, b).data, c.tol));
    // the other direction's window is irrelevant here; 1 keeps it cheapest
    const options =
      direction === 'forward' ? { forwardPatch: patch, backwardPatch: 1 } : { forwardPatch: 1, backwardPatch: patch };
    const layer = await backend.matchLayer(q, templates, options);
    results.push(compareArrays(`max[${b}] (${backend.name})`, layer[direction], sliceLeading(expectedMax, b).data, c.tol));
  }
  return combineChecks(results);
}
