// Caches the grey images (256x256, mean of RGB) of cue-cache.mjs's normals and test tiles for cue-oracle.mjs.
import { loadImage } from '../../dist/src/image/index.js';
import { readFileSync, writeFileSync } from 'node:fs';
const meta = JSON.parse(readFileSync('cue-meta.json'));
const files = [...meta.train, ...meta.test.map((s) => s.file)];
const out = [];
for (const f of files) { const im = await loadImage(f, { size: [256, 256] }); const g = new Float32Array(65536); for (let p = 0; p < 65536; p++) g[p] = (im.data[p] + im.data[65536 + p] + im.data[131072 + p]) / 3; out.push(Buffer.from(g.buffer)); }
writeFileSync('cue-gray.bin', Buffer.concat(out));
