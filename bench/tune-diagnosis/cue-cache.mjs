// Caches, for the cue oracle (labels used for DIAGNOSIS only): 200 MT normals in a float16 store (int8 matching);
// for every STEP-th test tile the default preset's pixel map and score; for test tiles and the 200 normals the image
// at 64x64 (mean of 4x4 blocks, RGB) and each layer's per-pixel feature norm before L2 normalisation.
import { Detector } from '../../dist/src/detector/detector.js';
import { readMvtecCategory } from '../../dist/src/eval/datasets.js';
import { writeFileSync } from 'node:fs';
const ds = await readMvtecCategory(new URL('../../../shared/datasets/', import.meta.url).pathname + 'magnetic-tile', 'magnetic_tile');
const NT = 200, STEP = Number(process.env.STEP ?? 2), OUT = process.env.OUT ?? 'cue-';
const train = Array.from({ length: NT }, (_, i) => ds.trainFiles[Math.floor(((i + 0.5) * ds.trainFiles.length) / NT)]);
const test = ds.test.filter((_, i) => i % STEP === 0);
const det = await Detector.open({ dtype: 'float16', matchPrecision: 'int8' });
let norms = [];
const base = det.backbone.pixelNormaliser;
det.backbone.usePixelNormaliser((src, c, h, w, off = 0) => {
  const n = new Float32Array(h * w);
  for (let ch = 0; ch < c; ch++) { const b = off + ch * h * w; for (let p = 0; p < h * w; p++) n[p] += src[b + p] * src[b + p]; }
  for (let p = 0; p < h * w; p++) n[p] = Math.sqrt(n[p]);
  norms.push(n);
  return base(src, c, h, w, off);
});
const small = (img) => { const o = new Float32Array(3 * 64 * 64); for (let c = 0; c < 3; c++) for (let y = 0; y < 256; y++) for (let x = 0; x < 256; x++) o[c * 4096 + (y >> 2) * 64 + (x >> 2)] += img.data[c * 65536 + y * 256 + x] / 16; return o; };
const chunksImg = [], chunksNorm = [];
let t = performance.now();
for (const f of train) { const img = await det.loadImage(f); norms = []; const feats = await det.backbone.extract(img); det.store.append(feats, f); chunksImg.push(small(img)); chunksNorm.push(...norms); }
console.log('fit', (performance.now() - t) / 1000);
const maps = [], scores = [];
for (const s of test) {
  const img = await det.loadImage(s.file); norms = [];
  const { features } = await det.features(img);
  chunksImg.push(small(img)); chunksNorm.push(...norms);
  const sc = det.scoreResults((await det.matchFeatures(features)).results);
  maps.push(sc.pixelMap); scores.push(sc.score);
}
console.log('test', (performance.now() - t) / 1000);
const buf = (arrs) => Buffer.concat(arrs.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
writeFileSync(OUT + 'img.bin', buf(chunksImg));
writeFileSync(OUT + 'norm.bin', buf(chunksNorm));
writeFileSync(OUT + 'maps.bin', buf(maps));
writeFileSync(OUT + 'meta.json', JSON.stringify({ train, test: test.map((s) => ({ file: s.file, label: s.label, maskFile: s.maskFile })), scores, normShapes: det.backbone.identity.layers.map((l) => [l.height, l.width]) }));
det.dispose();
