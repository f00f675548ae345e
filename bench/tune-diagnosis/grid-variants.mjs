// Grid subset (labels used for DIAGNOSIS only): real metrics of the official preset, the tune's choice and the
// variants between them, on the same features (float32 store of the 25 normals, float matching as `hetmm eval`).
import { Detector } from '../../dist/src/detector/detector.js';
import { readMvtecCategory } from '../../dist/src/eval/datasets.js';
import { aupro, imageAuroc, pixelAuroc } from '../../dist/src/metrics/index.js';
import { loadMask } from '../../dist/src/image/index.js';
import { parseLayerSpec, parsePostProcess } from '../../dist/src/matching/index.js';
const root = new URL('../../../shared/datasets/mvtec-grid-subset', import.meta.url).pathname;
const ds = await readMvtecCategory(root, 'grid');
const det = await Detector.open({});
await det.add(ds.trainFiles);
const variants = JSON.parse(process.env.VARIANTS ?? JSON.stringify({
  official: ['13x3,0.7,1', '9x1,0.7,0.5', '7x1,0.3,0.3', 'none'],
  tune: ['13x3,0.7,1', '9x1,0.7,0.5', '7x1,0.7,0.8', 'blur:2/13'],
  'tune, no blur': ['13x3,0.7,1', '9x1,0.7,0.5', '7x1,0.7,0.8', 'none'],
  'official + blur 2': ['13x3,0.7,1', '9x1,0.7,0.5', '7x1,0.3,0.3', 'blur:2/13'],
  'official, layer 3 .7/.8': ['13x3,0.7,1', '9x1,0.7,0.5', '7x1,0.7,0.8', 'none'],
  'official, layer 3 alpha .7': ['13x3,0.7,1', '9x1,0.7,0.5', '7x1,0.7,0.3', 'none'],
  'official, lambda3 .8': ['13x3,0.7,1', '9x1,0.7,0.5', '7x1,0.3,0.8', 'none'],
}));
const masks = [];
for (const s of ds.test) masks.push(s.label === 0 || !s.maskFile ? new Uint8Array(65536) : await loadMask(s.maskFile, [256, 256]));
const feats = [];
for (const s of ds.test) feats.push(await det.features(s.file));
for (const [name, [l1, l2, l3, pixel]] of Object.entries(variants)) {
  det.preset = { name, layers: [parseLayerSpec(l1), parseLayerSpec(l2), parseLayerSpec(l3)], image: { kind: 'none' }, pixel: parsePostProcess(pixel) };
  const maps = [], scores = [];
  for (const { image, features } of feats) { const r = det.scoreResults((await det.matchFeatures(features)).results, image); maps.push(r.pixelMap); scores.push(r.score); }
  const f = (x) => (x * 100).toFixed(2);
  console.log(name.padEnd(28), f(imageAuroc(scores, ds.test.map((s) => s.label)).value), f(pixelAuroc(maps, masks).value), f(aupro(maps, masks, { width: 256 }).value));
}
det.dispose();
