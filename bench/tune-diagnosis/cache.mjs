// Caches MT match results (int8, 200 templates): test every STEP-th image, plus leave-one-out maps of NH stored normals
// and matches of NX extra train normals not in the store. Per window setting.
import { Detector } from '../../dist/src/detector/detector.js';
import { readMvtecCategory } from '../../dist/src/eval/datasets.js';
import { evenSample } from '../../dist/src/detector/calibrate.js';
import { writeFileSync } from 'node:fs';
const ds = await readMvtecCategory(new URL('../../../shared/datasets/', import.meta.url).pathname + 'magnetic-tile', 'magnetic_tile');
const NT = 200, STEP = Number(process.env.STEP ?? 2), NH = 40, NX = 40;
const trainIdx = Array.from({ length: NT }, (_, i) => Math.floor(((i + 0.5) * ds.trainFiles.length) / NT));
const train = trainIdx.map((i) => ds.trainFiles[i]);
const extra = ds.trainFiles.filter((_, i) => !trainIdx.includes(i)).filter((_, i, a) => i % Math.floor(a.length / NX) === 0).slice(0, NX);
const test = ds.test.filter((_, i) => i % STEP === 0);
const det = await Detector.open({ dtype: 'float16', matchPrecision: 'int8' });
let t = performance.now();
await det.add(train);
console.log('fit', (performance.now() - t) / 1000);
const held = evenSample(NT, NH);
const snap = det.store.snapshot();
const { float16ArrayToFloat32 } = await import('../../dist/src/store/index.js');
const stored = (i) => snap.layers.map((s) => { const [, c, h, w] = s.shape; const per = c * h * w; const sl = s.data.subarray(i * per, (i + 1) * per); return sl instanceof Float32Array ? sl : float16ArrayToFloat32(sl); });
const items = [];
for (const s of test) items.push({ kind: 'test', file: s.file, label: s.label, maskFile: s.maskFile, features: (await det.features(s.file)).features });
for (const f of extra) items.push({ kind: 'extra', file: f, features: (await det.features(f)).features });
for (const i of held) items.push({ kind: 'loo', file: train[i], exclude: i, features: stored(i) });
console.log('features', (performance.now() - t) / 1000, items.length);
const windows = JSON.parse(process.env.WINDOWS);
for (const [wi, win] of windows.entries()) {
  det.preset = { name: 'x', layers: win.map(([f, b]) => ({ forwardPatch: f, backwardPatch: b, alpha: 0.3, lambda: 1 })), image: { kind: 'none' }, pixel: { kind: 'none' } };
  t = performance.now();
  const chunks = [];
  for (const it of items) for (const r of (await det.matchFeatures(it.features, it.exclude === undefined ? {} : { exclude: it.exclude })).results) chunks.push(Buffer.from(r.forward.buffer, r.forward.byteOffset, r.forward.byteLength), Buffer.from(r.backward.buffer, r.backward.byteOffset, r.backward.byteLength));
  writeFileSync(`cache-${process.env.TAG ?? ''}${wi}.bin`, Buffer.concat(chunks));
  writeFileSync(`cache-${process.env.TAG ?? ''}meta.json`, JSON.stringify({ items: items.map(({ features, ...r }) => r), windows }));
  console.log('window', wi, (performance.now() - t) / 1000);
}
det.dispose();
