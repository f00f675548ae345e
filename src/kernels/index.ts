/**
 * The kernels' public surface (hetmm/kernels): the contract's types, the
 * backend registry (./registry.ts) and the reference backend. Code outside
 * src/kernels reaches a backend only through getBackend (the fast backend's
 * module is private to this folder: test/architecture.test.ts).
 */
export type {
  BackendLoadOptions,
  FeatureDType,
  FeatureStack,
  KernelBackend,
  MatchOptions,
  MatchPrecision,
  MatchResult,
  QueryMap,
  SharedLayer,
} from './contract.js';
export {
  createBackendRegistry,
  getBackend,
  listBackends,
  registerBackend,
  type BackendLoader,
  type BackendPreference,
  type BackendRegistry,
  type GetBackendOptions,
  type RegistryOptions,
} from './registry.js';
export { referenceBackend } from './reference/index.js';
export { checkTemplateIndices, gatherTemplates, matchLayerAt, matchSharedLayerAt } from './subset.js';
