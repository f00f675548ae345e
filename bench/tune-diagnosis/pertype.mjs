import { readFileSync } from 'node:fs';
import { loadMask } from '../../dist/src/image/index.js';
import { pixelAuroc, aupro } from '../../dist/src/metrics/index.js';
import { upsampleBilinearAlignCorners } from '../../dist/src/matching/index.js';
const meta = JSON.parse(readFileSync(`cache-meta.json`));
const buf = readFileSync(`cache-${process.env.WI ?? 0}.bin`);
const f = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
const shapes = [[64, 64], [32, 32], [16, 16]];
const per = shapes.reduce((s, [h, w]) => s + 2 * h * w, 0);
const items = meta.items.map((it, i) => { let o = i * per; return { ...it, layers: shapes.map(([h, w]) => { const fw = f.subarray(o, o + h * w); o += h * w; const bw = f.subarray(o, o + h * w); o += h * w; return { fw, bw, h, w }; }) }; });
const test = items.filter((x) => x.kind === 'test');
const alpha = [0.3,0.3,0.3], lam = [1,1,0.8];
const combine = (it) => { const t = new Float64Array(65536); it.layers.forEach(({fw,bw,h,w},l) => { const low = new Float64Array(h*w); for (let i=0;i<h*w;i++) low[i]=lam[l]*(alpha[l]*(1-fw[i])+(1-alpha[l])*(1-bw[i])); const up=upsampleBilinearAlignCorners(low,h,w,256,256); for(let i=0;i<65536;i++) t[i]+=up[i]; }); return Float32Array.from(t); };
const maps = test.map(combine);
const masks = [];
for (const s of test) masks.push(s.label === 0 ? new Uint8Array(65536) : await loadMask(s.maskFile, [256, 256]));
const type = (s) => s.file.split('/').at(-2);
const goodIdx = test.map((s, i) => (s.label === 0 ? i : -1)).filter((i) => i >= 0);
const types = [...new Set(test.map(type))];
for (const t of types) {
  if (t === 'good') continue;
  const idx = test.map((s, i) => (type(s) === t ? i : -1)).filter((i) => i >= 0);
  const px = idx.reduce((s, i) => s + masks[i].reduce((a, b) => a + b, 0), 0);
  // this type's defective images + all good images
  const sel = [...idx, ...goodIdx];
  const pA = pixelAuroc(sel.map((i) => maps[i]), sel.map((i) => masks[i])).value;
  // pixels of the type's images only (defect vs normal pixels in the same images)
  const pIn = pixelAuroc(idx.map((i) => maps[i]), idx.map((i) => masks[i])).value;
  console.log(t, 'images', idx.length, 'defect px', px, 'mean area %', (100 * px / idx.length / 65536).toFixed(2), 'pA(vs all good+own)', (pA*100).toFixed(2), 'pA(own imgs)', (pIn*100).toFixed(2));
}
// good pixels: where are the high scores? row/col profile of mean good map
const mean = new Float64Array(65536); for (const i of goodIdx) for (let p = 0; p < 65536; p++) mean[p] += maps[i][p] / goodIdx.length;
const border = [], centre = []; for (let y = 0; y < 256; y++) for (let x = 0; x < 256; x++) (Math.min(x, y, 255 - x, 255 - y) < 16 ? border : centre).push(mean[y * 256 + x]);
const avg = (a) => a.reduce((s, v) => s + v, 0) / a.length;
console.log('good mean border16', avg(border).toFixed(4), 'centre', avg(centre).toFixed(4));
