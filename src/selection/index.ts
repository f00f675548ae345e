/** Template selection: OPTICS (scikit-learn exact) and PTS (`hetmm/selection`). */
export { optics, opticsCosine, opticsFromSimilarity, cosineDistanceMatrix, type OpticsResult } from './optics.js';
export { selectTemplates, ptsMinSamples, type SelectOptions, type SelectResult, type LayerSelection } from './pts.js';
export { compressStore, sheetName, type CompressOptions, type CompressResult, type PtsGramChoice, type PtsMeta } from './compress-store.js';
// template preselection (issue 23): the k nearest templates by a global descriptor
export { TemplateDescriptors, TemplateSelector, globalDescriptor, nearestTemplates, resolveTemplateSelection, type TemplateSelection } from './nearest-templates.js';
