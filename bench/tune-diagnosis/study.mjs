// Proxy vs real ranking of tune's candidates, per synthetic kind (labels used for this STUDY only, never by tune).
import { Detector } from '../../dist/src/detector/detector.js';
import { readMvtecCategory } from '../../dist/src/eval/datasets.js';
import { tunePreset } from '../../dist/src/fit/tune.js';
import { SYNTHETIC_KINDS } from '../../dist/src/fit/synthetic.js';
import { loadMask } from '../../dist/src/image/index.js';
import { imageAuroc, pixelAuroc, aupro } from '../../dist/src/metrics/index.js';
import { combineLayers, gaussianBlur, mapMax } from '../../dist/src/matching/index.js';
import { readFileSync, writeFileSync } from 'node:fs';
const [root, cat, NT, out] = process.argv.slice(2);
const windows = JSON.parse(process.env.WINDOWS);
const ds = await readMvtecCategory(root, cat);
const nt = Math.min(Number(NT), ds.trainFiles.length);
const train = Array.from({ length: nt }, (_, i) => ds.trainFiles[Math.floor(((i + 0.5) * ds.trainFiles.length) / nt)]);
const det = await Detector.open({ dtype: 'float16', matchPrecision: 'int8' });
let t = performance.now();
await det.add(train);
console.log('fit', ((performance.now() - t) / 1000).toFixed(1));
t = performance.now();
const r = await tunePreset(det, { seed: Number(process.env.SEED ?? 0), windows, kinds: SYNTHETIC_KINDS, budgetSeconds: 1e9, ...(process.env.HOLD ? { holdOut: Number(process.env.HOLD) } : {}) });
console.log('tune', ((performance.now() - t) / 1000).toFixed(1), r.record.summary);
const shapes = det.backbone.identity.layers.map((l) => [l.height, l.width]);
// real test matches per window setting (cached for MT)
let test, res;
const S = 4, mh = 64, mw = 64;
if (process.env.CACHE) {
  const meta = JSON.parse(readFileSync(`${process.env.CACHE}meta.json`));
  test = meta.items.filter((x) => x.kind === 'test');
  res = meta.windows.map((_, wi) => { const buf = readFileSync(`${process.env.CACHE}${wi}.bin`); const f = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4); const per = shapes.reduce((s, [h, w]) => s + 2 * h * w, 0); return test.map((_, i) => { let o = i * per; return shapes.map(([h, w]) => { const fw = f.subarray(o, o + h * w); o += h * w; const bw = f.subarray(o, o + h * w); o += h * w; return { forward: fw, backward: bw }; }); }); });
  if (JSON.stringify(meta.windows) !== JSON.stringify(windows)) throw new Error('cache windows differ');
} else {
  test = ds.test;
  const feats = []; for (const s of test) feats.push((await det.features(s.file)).features);
  res = [];
  for (const win of windows) { det.preset = { name: 'x', layers: win.map(([f, b]) => ({ forwardPatch: f, backwardPatch: b, alpha: 0.3, lambda: 1 })), image: { kind: 'none' }, pixel: { kind: 'none' } }; const rr = []; for (const f of feats) rr.push((await det.matchFeatures(f)).results); res.push(rr); }
}
const masks = [];
for (const s of test) { const m = s.label === 0 ? new Uint8Array(65536) : await loadMask(s.maskFile, [256, 256]); const o = new Uint8Array(mh * mw); for (let y = 0; y < mh; y++) for (let x = 0; x < mw; x++) o[y * mw + x] = m[y * S * 256 + x * S]; masks.push(o); }
const labels = test.map((s) => s.label);
const rows = [];
for (const c of r.table) {
  const wi = windows.findIndex((w) => w.every(([f, b], l) => c.preset.layers[l].forwardPatch === f && c.preset.layers[l].backwardPatch === b));
  const raw = res[wi].map((rr) => combineLayers(rr.map((x, l) => ({ forward: x.forward, backward: x.backward, height: shapes[l][0], width: shapes[l][1], alpha: c.preset.layers[l].alpha, lambda: c.preset.layers[l].lambda })), mh, mw));
  const px = c.preset.pixel;
  const maps = px.kind === 'blur' ? raw.map((m) => gaussianBlur(m, mh, mw, px.sigma / S, Math.max(3, Math.round(px.kernel / S)) | 1)) : raw;
  const real = { image_auroc: imageAuroc(raw.map(mapMax), labels).value, pixel_auroc: pixelAuroc(maps, masks).value, aupro: aupro(maps, masks, { width: mw }).value };
  rows.push({ preset: c.preset, proxy: c.proxy, perKind: c.perKind, real });
}
writeFileSync(out, JSON.stringify({ record: r.record, rows }));
const rank = (a) => { const idx = a.map((v, i) => [v, i]).sort((x, y) => x[0] - y[0]); const rk = new Array(a.length); let i = 0; while (i < idx.length) { let j = i; while (j + 1 < idx.length && idx[j + 1][0] === idx[i][0]) j++; for (let k = i; k <= j; k++) rk[idx[k][1]] = (i + j) / 2; i = j + 1; } return rk; };
const spearman = (a, b) => { const ra = rank(a), rb = rank(b); const n = a.length; const ma = ra.reduce((s, v) => s + v, 0) / n, mb = rb.reduce((s, v) => s + v, 0) / n; let num = 0, da = 0, db = 0; for (let i = 0; i < n; i++) { num += (ra[i] - ma) * (rb[i] - mb); da += (ra[i] - ma) ** 2; db += (rb[i] - mb) ** 2; } return num / Math.sqrt(da * db); };
const obj = (p) => (p.image_auroc + p.pixel_auroc + p.aupro) / 3;
const kinds = ['all', ...Object.keys(rows[0].perKind)];
const get = (row, k) => (k === 'all' ? row.proxy : row.perKind[k]);
console.log('kind      | rho(obj) rho(iA) rho(pA) rho(AUPRO) | proxy obj range');
for (const k of kinds) {
  const P = rows.map((x) => get(x, k));
  const f = (m) => spearman(P.map(m), rows.map((x) => m(x.real))).toFixed(2);
  const o = P.map(obj);
  console.log(k.padEnd(9), '|', f(obj), f((p) => p.image_auroc), f((p) => p.pixel_auroc), f((p) => p.aupro), '|', (Math.min(...o) * 100).toFixed(1), '-', (Math.max(...o) * 100).toFixed(1));
}
const bestReal = rows.reduce((a, b) => (obj(b.real) > obj(a.real) ? b : a));
console.log('best real', JSON.stringify(bestReal.real), JSON.stringify(bestReal.preset.layers), JSON.stringify(bestReal.preset.pixel));
det.dispose();
