// Offline (labels used for DIAGNOSIS only): real MT metrics of normalisation variants on cached match results.
import { readFileSync } from 'node:fs';
import { loadMask } from '../../dist/src/image/index.js';
import { imageAuroc, pixelAuroc, aupro } from '../../dist/src/metrics/index.js';
import { gaussianBlur, mapMax, upsampleBilinearAlignCorners } from '../../dist/src/matching/index.js';
const TAG = process.env.TAG ?? '';
const meta = JSON.parse(readFileSync(`cache-${TAG}meta.json`));
const wi = Number(process.env.WI ?? 0);
const buf = readFileSync(`cache-${TAG}${wi}.bin`);
const f = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
const shapes = [[64, 64], [32, 32], [16, 16]];
const per = shapes.reduce((s, [h, w]) => s + 2 * h * w, 0);
const items = meta.items.map((it, i) => { let o = i * per; return { ...it, layers: shapes.map(([h, w]) => { const fw = f.subarray(o, o + h * w); o += h * w; const bw = f.subarray(o, o + h * w); o += h * w; return { fw, bw, h, w }; }) }; });
const test = items.filter((x) => x.kind === 'test');
const normSrc = items.filter((x) => x.kind === (process.env.NORM ?? 'loo'));
const masks = [];
for (const s of test) masks.push(s.label === 0 ? new Uint8Array(65536) : await loadMask(s.maskFile, [256, 256]));
const labels = test.map((s) => s.label);
// per-layer low-res term maps: a = 1-fw, b = 1-bw
const termStats = (src, l) => {
  const n = src[0].layers[l].h * src[0].layers[l].w;
  const st = {};
  for (const key of ['fw', 'bw']) {
    const mean = new Float64Array(n), sq = new Float64Array(n);
    for (const it of src) { const m = it.layers[l][key]; for (let i = 0; i < n; i++) { const v = 1 - m[i]; mean[i] += v; sq[i] += v * v; } }
    for (let i = 0; i < n; i++) { mean[i] /= src.length; sq[i] = Math.sqrt(Math.max(0, sq[i] / src.length - mean[i] ** 2)); }
    let gm = 0, gs = 0; for (let i = 0; i < n; i++) { gm += mean[i]; gs += sq[i]; } gm /= n; gs /= n;
    st[key] = { mean, std: sq, gm, gs };
  }
  return st;
};
const stats = [0, 1, 2].map((l) => termStats(normSrc, l));
function combine(it, v) {
  const total = new Float64Array(65536);
  for (let l = 0; l < 3; l++) {
    const { fw, bw, h, w } = it.layers[l]; const n = h * w; const st = stats[l];
    const low = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let a = 1 - fw[i], b = 1 - bw[i];
      if (v.norm === 'pixel') { a = (a - st.fw.mean[i]) / (st.fw.std[i] + v.eps * st.fw.gs); b = (b - st.bw.mean[i]) / (st.bw.std[i] + v.eps * st.bw.gs); }
      else if (v.norm === 'pixelmean') { a -= st.fw.mean[i]; b -= st.bw.mean[i]; }
      else if (v.norm === 'layer') { a = (a - st.fw.gm) / st.fw.gs; b = (b - st.bw.gm) / st.bw.gs; }
      else if (v.norm === 'layerscale') { a = a / st.fw.gm; b = b / st.bw.gm; }
      low[i] = v.lam[l] * (v.alpha[l] * a + (1 - v.alpha[l]) * b);
    }
    const up = upsampleBilinearAlignCorners(low, h, w, 256, 256);
    for (let i = 0; i < 65536; i++) total[i] += up[i];
  }
  return Float32Array.from(total);
}
// combined-map per-pixel stats (256x256) from normals
let cstat;
const variants = JSON.parse(process.env.VARIANTS);
for (const v0 of variants) {
  const v = { alpha: [0.3, 0.3, 0.3], lam: [1, 1, 0.8], eps: 0, sigma: 0, ...v0 };
  let raw = test.map((it) => combine(it, v));
  if (v.cnorm) {
    const nm = normSrc.map((it) => combine(it, v));
    const mean = new Float64Array(65536), sd = new Float64Array(65536);
    for (const m of nm) for (let i = 0; i < 65536; i++) { mean[i] += m[i]; sd[i] += m[i] * m[i]; }
    let gs = 0; for (let i = 0; i < 65536; i++) { mean[i] /= nm.length; sd[i] = Math.sqrt(Math.max(0, sd[i] / nm.length - mean[i] ** 2)); gs += sd[i]; } gs /= 65536;
    raw = raw.map((m) => m.map((x, i) => v.cnorm === 'z' ? (x - mean[i]) / (sd[i] + v.eps * gs) : x - mean[i]));
  }
  if (v.gadd) raw = raw.map((m) => { let st; if (v.gstat === 'max') st = mapMax(m); else if (v.gstat === 'top') { const s = Float32Array.from(m).sort(); st = s[Math.floor(s.length * 0.99)]; } else { let a = 0; for (const x of m) a += x; st = a / m.length; } return m.map((x) => x + v.gadd * st); });
  const scores = raw.map(mapMax);
  const maps = v.sigma ? raw.map((m) => gaussianBlur(m, 256, 256, v.sigma, 2 * Math.ceil(3 * v.sigma) + 1)) : raw;
  const iA = imageAuroc(scores, labels).value, pA = pixelAuroc(maps, masks).value, ap = aupro(maps, masks, { width: 256 }).value;
  console.log(JSON.stringify({ ...v0, iA: +(iA * 100).toFixed(2), pA: +(pA * 100).toFixed(2), ap: +(ap * 100).toFixed(2) }));
}
