/**
 * Child process of test/native-loader.test.ts: loads the fast backend from
 * HETMM_NATIVE_PATH (a portable, generic-only build) and compares matchLayer
 * and pixelGram with the TypeScript reference. Prints one JSON line.
 */
import { loadBinding, loadedAddonPath } from '../../src/kernels/fast/binding.js';
import { loadFastBackend } from '../../src/kernels/fast/index.js';
import { pixelGramReference } from '../../src/kernels/reference/gram.js';
import { referenceBackend } from '../../src/kernels/reference/index.js';
import { randomUnitMaps } from './random.js';

const [n, c, h, w] = [3, 20, 9, 11];
const templates = { dtype: 'float32' as const, shape: [n, c, h, w] as const, data: randomUnitMaps(n, c, h, w, 7) };
const query = { shape: [c, h, w] as const, data: randomUnitMaps(1, c, h, w, 8) };
const fast = await loadFastBackend();
const options = { forwardPatch: 5, backwardPatch: 3 };
const [a, b] = await Promise.all([fast.matchLayer(query, templates, options), referenceBackend.matchLayer(query, templates, options)]);
let maxDiff = 0;
for (let i = 0; i < h * w; i++) maxDiff = Math.max(maxDiff, Math.abs(a.forward[i]! - b.forward[i]!), Math.abs(a.backward[i]! - b.backward[i]!));
const gram = new Float32Array(h * w * n * n);
const gramRef = new Float32Array(h * w * n * n);
await fast.pixelGram(templates, 0, h * w, gram);
pixelGramReference(templates, 0, h * w, gramRef);
for (let i = 0; i < gram.length; i++) maxDiff = Math.max(maxDiff, Math.abs(gram[i]! - gramRef[i]!));
console.log(JSON.stringify({ addon: loadedAddonPath(), info: loadBinding().info(), variant: fast.variant, maxDiff }));
