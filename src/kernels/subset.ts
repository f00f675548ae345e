/**
 * Matching against some of a layer's templates (template preselection,
 * src/selection/nearest-templates.ts): the backend's matchLayerAt /
 * matchSharedLayerAt capability when it has one (the fast backend passes
 * the indices to its kernels: no copy), else a gathered copy of just those
 * templates through the plain matchLayer / matchSharedLayer. Either way the
 * result is matchLayer's on a stack of only those templates: Fwd and Bwd are
 * maxima over templates, so the order of the indices does not matter.
 */
import { HetmmError } from '../errors.js';
import type { FeatureStack, KernelBackend, MatchOptions, MatchResult, QueryMap, SharedLayer } from './contract.js';

/** Checks template indices against a stack of `n` templates (E_ARGUMENT naming the first bad one). */
export function checkTemplateIndices(indices: Int32Array, n: number): void {
  if (!(indices instanceof Int32Array) || indices.length === 0) {
    throw new HetmmError('E_ARGUMENT', `Expected a non-empty Int32Array of template indices but received ${indices instanceof Int32Array ? 'an empty one' : typeof indices}`);
  }
  for (let i = 0; i < indices.length; i++) {
    const t = indices[i]!;
    if (t < 0 || t >= n) throw new HetmmError('E_ARGUMENT', `Expected template indices in [0, ${n - 1}] but indices[${i}] is ${t}`);
  }
}

/** A new stack holding templates `indices` of `stack`, in that order. */
export function gatherTemplates(stack: FeatureStack, indices: Int32Array): FeatureStack {
  const [n, c, h, w] = stack.shape;
  checkTemplateIndices(indices, n);
  const per = c * h * w;
  const data = stack.data instanceof Float32Array ? new Float32Array(indices.length * per) : new Uint16Array(indices.length * per);
  indices.forEach((t, i) => data.set(stack.data.subarray(t * per, (t + 1) * per), i * per));
  return { dtype: stack.dtype, shape: [indices.length, c, h, w], data };
}

/** `backend`'s matchLayer against templates `indices` of `templates` only. */
export function matchLayerAt(backend: KernelBackend, query: QueryMap, templates: FeatureStack, indices: Int32Array, options: MatchOptions): Promise<MatchResult> {
  if (backend.matchLayerAt !== undefined) return backend.matchLayerAt(query, templates, indices, options);
  return backend.matchLayer(query, gatherTemplates(templates, indices), options);
}

/** `backend`'s matchSharedLayer against templates `indices` of a shared layer only. */
export function matchSharedLayerAt(backend: KernelBackend, layer: SharedLayer, query: QueryMap, indices: Int32Array, options: MatchOptions): MatchResult {
  if (backend.matchSharedLayerAt !== undefined) return backend.matchSharedLayerAt(layer, query, indices, options);
  if (backend.matchSharedLayer === undefined || layer.kind !== 'float') {
    throw new HetmmError('E_BACKEND', `the "${backend.name}" kernel backend cannot match some templates of a shared ${layer.kind} layer (no matchSharedLayerAt)`);
  }
  return backend.matchSharedLayer({ ...layer, stack: gatherTemplates(layer.stack, indices) }, query, options);
}
