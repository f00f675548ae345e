/** The reference backend: the semantics every other backend is tested against. */
import type { KernelBackend } from '../contract.js';
import { matchLayerReference } from './match.js';

export {
  backwardMatchPerTemplate,
  forwardMatchPerTemplate,
  matchLayerReference,
  matchPerTemplate,
  maxOverTemplates,
  validateMatchInputs,
} from './match.js';

export const referenceBackend: KernelBackend = {
  name: 'reference',
  // Synchronous work wrapped in a promise: the contract allows off-thread backends.
  matchLayer: (query, templates, options) => {
    try {
      return Promise.resolve(matchLayerReference(query, templates, options));
    } catch (e) {
      return Promise.reject(e);
    }
  },
};
