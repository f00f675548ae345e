/**
 * Building blocks live behind subpaths: metrics, image I/O, kernels.
 * A custom kernel backend registers by name and is then selectable with
 * HETMM_BACKEND=mine or getBackend('mine').
 */
import { getBackend, registerBackend, type KernelBackend } from 'hetmm';
import { imageAuroc, pixelAuroc } from 'hetmm/metrics';
import { loadImage } from 'hetmm/image';
import { referenceBackend } from 'hetmm/kernels';
import { MVTEC_PRESETS } from 'hetmm/matching';
import { optics } from 'hetmm/selection';
import { TemplateStore } from 'hetmm/store';
import { readMvtecCategory } from 'hetmm/eval';

const auroc = imageAuroc([0.1, 0.2, 0.9], [0, 0, 1]);
console.log(auroc, typeof pixelAuroc, typeof loadImage, MVTEC_PRESETS.bottle.name, typeof optics, typeof TemplateStore, typeof readMvtecCategory);

const mine: KernelBackend = { name: 'mine', matchLayer: (q, t, o) => referenceBackend.matchLayer(q, t, o) };
registerBackend('mine', async ({ precision }) => {
  if (precision !== 'float') throw new Error('float only');
  return mine;
}, 1);
console.log((await getBackend('mine')).name);
