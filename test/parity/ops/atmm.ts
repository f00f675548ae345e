/**
 * Parity: the ATMM anomaly map from three layers, through the same path as
 * inference (backend matchLayer per layer, then scoreMap with a preset built
 * from the case's layer parameters and no post-processing).
 */
import type { FeatureStack } from '../../../src/kernels/contract.js';
import { scoreMap, type LayerParams, type Preset } from '../../../src/matching/index.js';
import { backendUnderTest } from '../match-common.js';
import type { CheckResult, ParityChecker } from '../types.js';
import { combineChecks, compareArrays, sliceLeading, tensorFromJson, tensorFromJson32 } from '../util.js';

interface FixtureLayer {
  forward_patch: number;
  backward_patch: number;
  alpha: number;
  lambda: number;
}

const check: ParityChecker = async (c) => {
  const params = c.params['layers'] as FixtureLayer[];
  const inputs = c.inputs['layers'] as Array<{ query: never; templates: never }>;
  const [outH, outW] = c.params['out_size'] as [number, number];
  const expected = tensorFromJson(c.expected['map'], 'expected.map');
  const layers = params.map(
    (p): LayerParams => ({ forwardPatch: p.forward_patch, backwardPatch: p.backward_patch, alpha: p.alpha, lambda: p.lambda }),
  );
  if (layers.length !== 3) return { ok: false, detail: `expected 3 layers, the case has ${layers.length}` };
  const preset: Preset = {
    name: `fixture ${c.file}`,
    layers: layers as [LayerParams, LayerParams, LayerParams],
    image: { kind: 'none' },
    pixel: { kind: 'none' },
  };
  const queries = inputs.map((l, i) => tensorFromJson32(l.query, `inputs.layers[${i}].query`));
  const templates = inputs.map((l, i): FeatureStack => {
    const t = tensorFromJson32(l.templates, `inputs.layers[${i}].templates`);
    return { dtype: 'float32', shape: t.shape as [number, number, number, number], data: t.data };
  });
  const backend = await backendUnderTest();
  const batch = queries[0]!.shape[0]!;
  const results: CheckResult[] = [];
  for (let b = 0; b < batch; b++) {
    const matches = await Promise.all(
      queries.map((q, i) => {
        const [, ch, h, w] = q.shape as [number, number, number, number];
        return backend.matchLayer({ shape: [ch, h, w], data: sliceLeading(q, b).data }, templates[i]!, layers[i]!);
      }),
    );
    const shapes = queries.map((q) => [q.shape[2]!, q.shape[3]!] as const);
    const scored = scoreMap(matches, shapes, preset, [outH, outW]);
    results.push(compareArrays(`map[${b}] (${backend.name})`, scored.anomalyMap, sliceLeading(expected, b).data, c.tol));
  }
  return combineChecks(results);
};
export default check;
