/**
 * Store format version 3 embeds a store's int8 backbone; version 2 kept it in
 * sidecar files. What the choice costs (docs/STORE_FORMAT.md): the store's
 * load time, a detector's open time and RSS, and RSS with N pipeline threads
 * (each its own onnxruntime session, started from the embedded model's bytes
 * or from the sidecar file), for the same 5-bottle int8 store both ways.
 * Each measurement is a fresh process.
 *   node dist/bench/embedded-model.js [--pipelines 2] [--repeat 3]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Detector } from '../src/detector/detector.js';
import { fitStore } from '../src/fit/fit-store.js';
import { TemplateStore } from '../src/store/index.js';
import { datasetsDir, listImages, tempDir } from '../test/helpers/io-paths.js';
import { writeSidecarStore } from '../test/helpers/store-fixtures.js';

const { values } = parseArgs({ options: { child: { type: 'string' }, pipelines: { type: 'string', default: '2' }, repeat: { type: 'string', default: '3' } } });
const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle');
const mib = (b: number): number => Math.round((b / 2 ** 20) * 10) / 10;

interface Sample {
  loadMs: number;
  openMs: number;
  rssOpen: number;
  rssPipelines: number;
  predictMs: number;
}

async function child(file: string, pipelines: number): Promise<Sample> {
  const t0 = performance.now();
  await TemplateStore.load(file);
  const loadMs = performance.now() - t0;
  const t1 = performance.now();
  const detector = await Detector.open({ store: file });
  const openMs = performance.now() - t1;
  const rssOpen = process.memoryUsage().rss;
  const images = [...listImages(path.join(bottle, 'test/good')), ...listImages(path.join(bottle, 'test/broken_large'))];
  const t2 = performance.now();
  for await (const r of detector.predictMany(images, { pipelines })) if (r.error !== undefined) throw r.error;
  const predictMs = performance.now() - t2;
  const rssPipelines = process.memoryUsage().rss;
  detector.dispose();
  return { loadMs, openMs, rssOpen, rssPipelines, predictMs };
}

if (values.child !== undefined) {
  console.log(JSON.stringify(await child(values.child, Number(values.pipelines))));
} else {
  const dir = tempDir('embedded-model');
  const embedded = path.join(dir, 'embedded', 'line.hetmm');
  const sidecar = path.join(dir, 'sidecar', 'line.hetmm');
  mkdirSync(path.dirname(embedded), { recursive: true });
  mkdirSync(path.dirname(sidecar), { recursive: true });
  const fitted = await fitStore({ preset: 'bottle' }, { files: listImages(path.join(bottle, 'train/good')), output: embedded, calibrationSamples: 2 });
  fitted.detector.dispose();
  await writeSidecarStore(embedded, sidecar);
  const self = fileURLToPath(import.meta.url);
  console.log(`load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; ${values.pipelines} pipelines; alternating runs`);
  const rows: Record<string, Sample[]> = { embedded: [], sidecar: [] };
  for (let r = 0; r < Number(values.repeat); r++) {
    for (const [mode, file] of [['embedded', embedded], ['sidecar', sidecar]] as const) {
      const out = spawnSync(process.execPath, [self, '--child', file, '--pipelines', values.pipelines], { encoding: 'utf8' });
      if (out.status !== 0) throw new Error(out.stderr);
      rows[mode]!.push(JSON.parse(out.stdout.trim().split('\n').pop()!) as Sample);
    }
  }
  const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const [mode, samples] of Object.entries(rows)) {
    const m = (k: keyof Sample): number => median(samples.map((s) => s[k]));
    console.log(
      `${mode.padEnd(9)} store load ${m('loadMs').toFixed(0)} ms, detector open ${m('openMs').toFixed(0)} ms, RSS ${mib(m('rssOpen'))} MiB; ` +
        `after ${values.pipelines} pipelines over 10 images RSS ${mib(m('rssPipelines'))} MiB (${m('predictMs').toFixed(0)} ms)`,
    );
  }
  console.log(`load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}
