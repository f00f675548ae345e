export type { MetricResult } from './result.js';
export { imageAuroc } from './image-auroc.js';
export { pixelAuroc } from './pixel-auroc.js';
export { aupro, type AuproOptions } from './aupro.js';
export { proHetmm, linspace, type ProHetmmOptions } from './pro-hetmm.js';
export { f1Max, pixelF1Max, type F1Max, type F1MaxResult } from './f1-max.js';
export { labelComponents8, type Components } from './connected-components.js';
export { radixSortFloat32 } from './radix-sort.js';
