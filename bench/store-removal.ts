/**
 * What removing a normal costs (issue 21): a 60-template store of the default
 * backbone's shapes (7 MiB per image, float32, 420 MiB), one append and then
 * the removal of that image (the undo case: the tail), twice, then the removal
 * of a template in the middle (the kept rows are copied). Times in ms, and the
 * process's RSS. Run: node dist/bench/store-removal.js [DIR]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RESNET50_SHAPES } from './bench-util.js';
import { TemplateStore } from '../src/store/index.js';

const identity = RESNET50_SHAPES;
const features = (k: number): Float32Array[] => identity.layers.map((l) => new Float32Array(l.channels * l.height * l.width).fill((k % 7) / 7));
const timed = async (f: () => Promise<unknown>): Promise<number> => {
  const t0 = performance.now();
  await f();
  return Math.round(performance.now() - t0);
};

const dir = mkdtempSync(path.join(process.argv[2] ?? os.tmpdir(), 'hetmm-removal-'));
try {
  const file = path.join(dir, 's.hetmm');
  const fitted = TemplateStore.create(identity);
  for (let k = 0; k < 60; k++) fitted.append(features(k), `img${k}.png`);
  await fitted.save(file);
  const store = await TemplateStore.load(file);
  const out = { append: [] as number[], removeLast: [] as number[], removeMiddle: 0 };
  for (let i = 0; i < 2; i++) {
    out.append.push(await timed(() => store.appendToFile(file, [{ features: features(100 + i), file: `new${i}.png`, id: `new-${i}` }])));
    out.removeLast.push(await timed(() => store.removeFromFile(file, [`new-${i}`])));
  }
  out.removeMiddle = await timed(() => store.removeFromFile(file, [store.normals()[30]!.id]));
  console.log(JSON.stringify({ ...out, rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20), load: os.loadavg().map((x) => x.toFixed(2)) }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
