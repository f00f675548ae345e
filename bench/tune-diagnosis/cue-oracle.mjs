// Cue oracle (labels used for DIAGNOSIS only): does a low-resolution intensity / feature-norm cue, scored against the
// normals per pixel and added to the default map at its best weight, raise MT's pixel AUROC? Reads cue-cache.mjs output.
import { readFileSync } from 'node:fs';
import { loadMask } from '../../dist/src/image/index.js';
import { imageAuroc, pixelAuroc, aupro } from '../../dist/src/metrics/index.js';
import { mapMax, upsampleBilinearAlignCorners, gaussianBlur } from '../../dist/src/matching/index.js';
const P = process.env.CACHE ?? 'cue-';
const meta = JSON.parse(readFileSync(P + 'meta.json'));
const f32 = (name) => { const b = readFileSync(P + name); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };
const grayAll = f32('gray.bin'); const G0 = (i) => grayAll.subarray(i * 65536, (i + 1) * 65536); const G = (i) => { if (i >= 0) return G0(i); const g = G0(-1 - i), t = new Float32Array(65536); for (let y = 0; y < 256; y++) for (let x = 0; x < 256; x++) t[x * 256 + y] = g[y * 256 + x]; return t; };
const imgAll = f32('img.bin'), normAll = f32('norm.bin'), mapAll = f32('maps.bin');
const NT = meta.train.length, NS = meta.test.length;
const img = (i) => imgAll.subarray(i * 12288, (i + 1) * 12288); // i < NT: normals, then test
const shapes = meta.normShapes; const perNorm = shapes.reduce((s, [h, w]) => s + h * w, 0);
const fnorm = (i, l) => { let o = i * perNorm; for (let k = 0; k < l; k++) o += shapes[k][0] * shapes[k][1]; return normAll.subarray(o, o + shapes[l][0] * shapes[l][1]); };
const maps = Array.from({ length: NS }, (_, i) => mapAll.subarray(i * 65536, (i + 1) * 65536));
const labels = meta.test.map((s) => s.label);
const masks = [];
for (const s of meta.test) masks.push(s.label === 0 ? new Uint8Array(65536) : await loadMask(s.maskFile, [256, 256]));
// block mean of a 64x64 plane to (64/k)^2
const pool = (a, n, k) => { const m = n / k, o = new Float32Array(m * m); for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) o[((y / k) | 0) * m + ((x / k) | 0)] += a[y * n + x] / (k * k); return o; };
const gray = (i) => { const a = img(i), g = new Float32Array(4096); for (let p = 0; p < 4096; p++) g[p] = (a[p] + a[4096 + p] + a[8192 + p]) / 3; return g; };
const center = (a) => { let s = 0; for (const v of a) s += v; s /= a.length; return a.map((v) => v - s); };
const contrast = (i, k) => { const g = gray(i), m = pool(g, 64, k), sq = pool(g.map((v) => v * v), 64, k); return m.map((v, p) => Math.sqrt(Math.max(0, sq[p] - v * v))); };
const blockStat = (i, k, f) => { const g = G(i), m = 256 / k, o = new Float32Array(m * m); for (let y = 0; y < 256; y++) for (let x = 0; x < 256; x++) o[((y / k) | 0) * m + ((x / k) | 0)] += f(g, x, y) / (k * k); return o; };
const gx = (g, x, y) => x < 255 ? Math.abs(g[y * 256 + x + 1] - g[y * 256 + x]) : Math.abs(g[y * 256 + x] - g[y * 256 + x - 1]);
const gy = (g, x, y) => y < 255 ? Math.abs(g[(y + 1) * 256 + x] - g[y * 256 + x]) : Math.abs(g[y * 256 + x] - g[(y - 1) * 256 + x]);
const logc = (a) => center(a.map((v) => Math.log(v + 1e-3)));
const lstd = (i, k) => { const m = blockStat(i, k, (g, x, y) => g[y * 256 + x]), q = blockStat(i, k, (g, x, y) => g[y * 256 + x] ** 2); return m.map((v, p) => Math.sqrt(Math.max(0, q[p] - v * v))); };
// per-row profile over the full width, 32 rows of 8 px (log, centred on the image's median row), as a 32x32 map (constant per row)
const rowProf = (i, f) => { const g = G(i), r = new Float32Array(32); for (let y = 0; y < 256; y++) for (let x = 0; x < 256; x++) r[y >> 3] += f(g, x, y) / 2048; const l = r.map((v) => Math.log(v + 1e-3)); const med = Float32Array.from(l).sort()[16]; const o = new Float32Array(1024); for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) o[y * 32 + x] = l[y] - med; return o; };
const colProf = (i, f) => rowProf(-1 - i, f);
const transpose = (a) => { const o = new Float32Array(1024); for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) o[y * 32 + x] = a[x * 32 + y]; return o; };
// cue low-res maps for index i (normals 0..NT-1, test NT..)
const CUES = {
  b16: (i) => pool(gray(i), 64, 4), b8: (i) => pool(gray(i), 64, 8),
  b16c: (i) => center(pool(gray(i), 64, 4)), b8c: (i) => center(pool(gray(i), 64, 8)), b32c: (i) => center(pool(gray(i), 64, 2)),
  rgb16c: (i) => { const a = img(i); const o = []; for (let c = 0; c < 3; c++) o.push(...center(pool(a.subarray(c * 4096, (c + 1) * 4096), 64, 4))); return Float32Array.from(o); },
  n1: (i) => fnorm(i, 0), n2: (i) => fnorm(i, 1), n3: (i) => fnorm(i, 2),
  n1c: (i) => center(fnorm(i, 0)), n2c: (i) => center(fnorm(i, 1)), n3c: (i) => center(fnorm(i, 2)),
  n3rel: (i) => { const a = fnorm(i, 2); let s = 0; for (const v of a) s += v; s /= a.length; return a.map((v) => v / s); },
  gx16: (i) => logc(blockStat(i, 16, gx)), gy16: (i) => logc(blockStat(i, 16, gy)), gx8: (i) => logc(blockStat(i, 8, gx)), gx32: (i) => logc(blockStat(i, 32, gx)),
  gxy16: (i) => logc(blockStat(i, 16, (g, x, y) => gx(g, x, y) + gy(g, x, y))),
  std16: (i) => logc(lstd(i, 16)), std8: (i) => logc(lstd(i, 8)), m16: (i) => logc(blockStat(i, 16, (g, x, y) => g[y * 256 + x])),
  vec16: (i) => Float32Array.from([...logc(blockStat(i, 16, gx)), ...logc(blockStat(i, 16, gy)), ...logc(lstd(i, 16)), ...logc(blockStat(i, 16, (g, x, y) => g[y * 256 + x]))]),
  rowm: (i) => rowProf(i, (g, x, y) => g[y * 256 + x]), rowgx: (i) => rowProf(i, gx), rowgy: (i) => rowProf(i, gy),
  rowboth: (i) => Float32Array.from([...rowProf(i, (g, x, y) => g[y * 256 + x]), ...rowProf(i, gx)]),
  colgy: (i) => transpose(colProf(i, gy)), colgx: (i) => transpose(colProf(i, gx)),
  rcgy: (i) => Float32Array.from([...rowProf(i, gy), ...transpose(colProf(i, gy))]),
  rcg: (i) => Float32Array.from([...rowProf(i, gy), ...transpose(colProf(i, gx))]),
  rcgxy: (i) => { const f = (g, x, y) => gx(g, x, y) + gy(g, x, y); return Float32Array.from([...rowProf(i, f), ...transpose(colProf(i, f))]); },
  c16: (i) => contrast(i, 4), c16c: (i) => center(contrast(i, 4)),
};
const side = (a, cue) => cue.startsWith('rgb') ? Math.round(Math.sqrt(a.length / 3)) : cue.startsWith('vec') ? Math.round(Math.sqrt(a.length / 4)) : (cue === 'rowboth' || cue.startsWith('rc')) ? 32 : Math.round(Math.sqrt(a.length));
function cueMaps(name, how) {
  const fn = CUES[name];
  const nm = Array.from({ length: NT }, (_, i) => fn(i));
  const n = nm[0].length, mean = new Float64Array(n), sd = new Float64Array(n);
  for (const a of nm) for (let p = 0; p < n; p++) { mean[p] += a[p] / NT; }
  for (const a of nm) for (let p = 0; p < n; p++) { sd[p] += (a[p] - mean[p]) ** 2 / NT; }
  let gs = 0; for (let p = 0; p < n; p++) { sd[p] = Math.sqrt(sd[p]); gs += sd[p] / n; }
  const s = side(nm[0], name), ch = n / (s * s);
  return Array.from({ length: NS }, (_, t) => {
    const a = fn(NT + t), z = new Float32Array(s * s);
    if (how === 'nn' || how === 'nn0') { const r = how === 'nn' ? 1 : 0;
      for (let p = 0; p < n; p++) { const y = ((p % (s * s)) / s) | 0, x = p % s; let best = Infinity;
        for (const b of nm) for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) { const yy = y + dy, xx = x + dx; if (yy < 0 || xx < 0 || yy >= s || xx >= s) continue; const d = Math.abs(a[p] - b[p - (p % (s * s)) + yy * s + xx]); if (d < best) best = d; }
        z[p % (s * s)] += best / gs / ch; }
    } else
    for (let p = 0; p < n; p++) { let v = how === 'self' ? a[p] / gs : (a[p] - mean[p]) / (sd[p] + 0.5 * gs); v = how === 'pos' ? Math.max(v, 0) : how === 'neg' ? Math.max(-v, 0) : Math.abs(v); z[p % (s * s)] += v / ch; }
    return upsampleBilinearAlignCorners(z, s, s, 256, 256);
  });
}
const r2 = (x) => +(x * 100).toFixed(2);
const evalMaps = (ms, useMapScore) => ({ iA: r2(imageAuroc(useMapScore ? ms.map(mapMax) : meta.scores, labels).value), pA: r2(pixelAuroc(ms, masks).value), ap: r2(aupro(ms, masks, { width: 256 }).value) });
console.log('default', JSON.stringify(evalMaps(maps, false)));
const cues = JSON.parse(process.env.CUES ?? '["b16c","b8c","n3","n3c","c16c"]');
const weights = JSON.parse(process.env.W ?? '[0.01,0.02,0.05,0.1]');
if (!process.env.DUMP) for (const c of cues) for (const how of JSON.parse(process.env.HOW ?? '["abs"]')) {
  const cm = cueMaps(c, how);
  console.log(c, how, 'cue alone', JSON.stringify(evalMaps(cm, true)));
  for (const w of weights) { const ms = maps.map((m, i) => m.map((v, p) => v + w * cm[i][p])); console.log(c, how, w, JSON.stringify({ ...evalMaps(ms, false), iAmap: r2(imageAuroc(ms.map(mapMax), labels).value) })); }
}
if (process.env.DUMP) { const [c, how] = process.env.DUMP.split(':'); const cm = cueMaps(c, how); const { writeFileSync } = await import('node:fs'); writeFileSync('dump.bin', Buffer.concat(cm.map((m) => Buffer.from(Float32Array.from(m).buffer)))); }
