/**
 * One durable hot update on a 60-template float32 store with the default
 * backbone's shapes (420 MiB): a full rewrite (temp + fsync + rename, what
 * `add` did before format version 2) against a locked append record.
 * Synthetic features; no model needed.  node dist/bench/store-hot-update.js [templates]
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RESNET50_SHAPES } from './bench-util.js';
import { TemplateStore } from '../src/store/index.js';

const identity = RESNET50_SHAPES;

const templates = Number(process.argv[2] ?? '60');
const features = identity.layers.map((l) => new Float32Array(l.channels * l.height * l.width).fill(0.01));
const store = TemplateStore.create(identity);
for (let i = 0; i < templates; i++) store.append(features, `img${i}.png`);
const dir = mkdtempSync(path.join(os.tmpdir(), 'hetmm-bench-store-'));
const file = path.join(dir, 's.hetmm');
try {
  await store.save(file);
  console.log(`store: ${templates} templates, ${(statSync(file).size / 2 ** 20).toFixed(0)} MiB; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const loaded = await TemplateStore.load(file);
  for (let round = 0; round < 3; round++) {
    let t = performance.now();
    loaded.append(features, `full${round}.png`);
    await loaded.save(file);
    const full = performance.now() - t;
    t = performance.now();
    await loaded.appendToFile(file, [{ features, file: `record${round}.png` }]);
    const record = performance.now() - t;
    console.log(`round ${round}: full durable rewrite ${full.toFixed(0)} ms, locked append record ${record.toFixed(0)} ms (${(full / record).toFixed(0)}x)`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
