/**
 * Per-stage CPU time per image (process CPU, every thread) next to the
 * stage's wall time, for the float32 pipeline and the int8 pipeline (int8
 * backbone + int8 matching), 60 templates, preset default, 256x256:
 * `node dist/bench/stage-cpu.js [--images N] [--templates K]`.
 * Stages run one after another on one image at a time, so each stage's
 * CPU time is its own: decode (sharp), backbone (onnxruntime + native L2
 * normalisation), match (three matchLayer calls), score (combination and
 * post-processing). Stores: the first K magnetic-tile train/good images; the
 * int8 backbone is quantised on them (hetmm quantize-model defaults).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { quantizeModel } from '../src/backbone/index.js';
import { Detector } from '../src/detector/detector.js';
import { loadImagesFrom } from '../src/image/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tile = path.resolve(repoRoot, '../shared/datasets/magnetic-tile/magnetic_tile');
const list = (dir: string): Promise<string[]> => loadImagesFrom([dir]);

const STAGES = ['decode', 'backbone', 'match', 'score'] as const;
type Stage = (typeof STAGES)[number];

async function measure(detector: Detector, images: readonly string[]): Promise<Record<Stage, { cpu: number; wall: number }>> {
  const sums = Object.fromEntries(STAGES.map((s) => [s, { cpu: 0, wall: 0 }])) as Record<Stage, { cpu: number; wall: number }>;
  const timed = async <T>(stage: Stage, run: () => Promise<T> | T): Promise<T> => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const out = await run();
    const c = process.cpuUsage(c0);
    sums[stage].wall += performance.now() - t0;
    sums[stage].cpu += (c.user + c.system) / 1000;
    return out;
  };
  for (const [i, file] of [...images.slice(0, 3), ...images].entries()) {
    const warm = i < 3;
    const image = await timed('decode', () => detector.loadImage(file));
    const { features } = await timed('backbone', () => detector.features(image));
    const { results } = await timed('match', () => detector.matchFeatures(features));
    await timed('score', () => detector.scoreResults(results));
    if (warm) for (const s of STAGES) sums[s] = { cpu: 0, wall: 0 };
  }
  for (const s of STAGES) sums[s] = { cpu: sums[s].cpu / images.length, wall: sums[s].wall / images.length };
  return sums;
}

async function main(): Promise<void> {
  const arg = (name: string, fallback: number): number => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? Number(process.argv[i + 1]) : fallback;
  };
  const count = arg('--images', 16);
  const templates = arg('--templates', 60);
  const train = await list(path.join(tile, 'train', 'good'));
  const test = [...(await list(path.join(tile, 'test', 'blowhole'))), ...train.slice(templates)].filter((_, i) => i % 5 === 0).slice(0, count);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hetmm-stage-cpu-'));
  try {
    const int8Model = path.join(dir, 'int8.onnx');
    await quantizeModel({ calibrate: train.slice(0, templates), output: int8Model });
    const rows: Array<[string, Record<Stage, { cpu: number; wall: number }>]> = [];
    for (const [label, model, precision] of [
      ['float32 backbone, float32 matching', undefined, 'float'],
      ['int8 backbone, int8 matching', int8Model, 'int8'],
    ] as const) {
      const detector = await Detector.open({ model, preset: 'default', backend: 'fast', matchPrecision: precision });
      await detector.add(train.slice(0, templates));
      rows.push([label, await measure(detector, test)]);
      detector.dispose();
    }
    console.log(`${test.length} images, ${templates} templates, ${os.availableParallelism()} CPUs, load average ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}\n`);
    console.log(`| pipeline | ${STAGES.map((s) => `${s} CPU / wall ms`).join(' | ')} | total CPU ms | img/s, CPU-time basis |`);
    console.log(`|---|${STAGES.map(() => '---:').join('|')}|---:|---:|`);
    for (const [label, r] of rows) {
      const cpu = STAGES.reduce((a, s) => a + r[s].cpu, 0);
      console.log(
        `| ${label} | ${STAGES.map((s) => `${r[s].cpu.toFixed(1)} / ${r[s].wall.toFixed(1)}`).join(' | ')} | ${cpu.toFixed(1)} | ${((os.availableParallelism() * 1000) / cpu).toFixed(1)} |`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exitCode = 1;
});
