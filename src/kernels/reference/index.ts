/** The reference backend: the semantics every other backend is tested against. */
import { l2NormalisePixels } from '../../backbone/backbone.js';
import { HetmmError } from '../../errors.js';
import type { KernelBackend } from '../contract.js';
import { matchLayerReference } from './match.js';
import { checkNormaliseInputs, shareFloatLayer } from './shared.js';
import { gatherTemplates } from '../subset.js';

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

  l2NormalisePixels: (src, channels, height, width, offset = 0) => {
    checkNormaliseInputs(src, channels, height, width, offset);
    return l2NormalisePixels(src, channels, height, width, offset);
  },

  shareLayer: (stack, _options, previous) => shareFloatLayer(stack, previous),

  matchSharedLayer: (layer, query, options) => {
    if (layer.kind !== 'float') throw new HetmmError('E_BACKEND', 'the reference backend matches in float only, and this layer was shared int8-quantised');
    return matchLayerReference(query, layer.stack, options);
  },

  // the definition of matching against some templates: matchLayer on a stack of just those
  matchLayerAt: (query, templates, indices, options) => {
    try {
      return Promise.resolve(matchLayerReference(query, gatherTemplates(templates, indices), options));
    } catch (e) {
      return Promise.reject(e);
    }
  },
};
