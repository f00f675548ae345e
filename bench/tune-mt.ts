/**
 * Preset tuning on Magnetic Tile (docs/TUNING.md, docs/RESULTS.md):
 * `node dist/bench/tune-mt.js [NORMALS] [OUT.json]` (default 200 normals).
 * A float16 store of NORMALS evenly spaced train/good tiles, int8 matching;
 * tunePreset (seed 0, default budget) timed; then `default` and the tuned
 * preset scored on the whole test set (583 tiles) with the library's
 * metrics. Labels are used only for those final metrics.
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Detector } from '../src/detector/detector.js';
import { readMvtecCategory } from '../src/eval/datasets.js';
import { aupro, imageAuroc, pixelAuroc } from '../src/metrics/index.js';
import { tunePreset } from '../src/fit/tune.js';
import { loadMask } from '../src/image/index.js';
import type { MatchResult } from '../src/kernels/contract.js';
import { DEFAULT_PRESET, type Preset } from '../src/matching/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const root = path.resolve(repoRoot, '../shared/datasets/magnetic-tile');

function log(...parts: unknown[]): void {
  console.log(new Date().toISOString().slice(11, 19), 'load', loadavg().map((x) => x.toFixed(1)).join(' '), ...parts);
}

async function main(): Promise<void> {
  const normals = Number(process.argv[2] ?? 200);
  const out = process.argv[3];
  const ds = await readMvtecCategory(root, 'magnetic_tile');
  const train = Array.from({ length: normals }, (_, i) => ds.trainFiles[Math.floor(((i + 0.5) * ds.trainFiles.length) / normals)]!);
  const detector = await Detector.open({ dtype: 'float16', matchPrecision: 'int8' });
  let t = performance.now();
  await detector.add(train);
  log(`fit ${normals} normals`, ((performance.now() - t) / 1000).toFixed(1), 's');
  t = performance.now();
  const tuned = await tunePreset(detector, { seed: 0 });
  const tuneSeconds = (performance.now() - t) / 1000;
  log('tune', tuneSeconds.toFixed(1), 's:', tuned.record.summary, tuned.notes.join('; '));

  const presets: Record<'default' | 'tune', Preset> = { default: DEFAULT_PRESET, tune: tuned.preset };
  const sameWindows = DEFAULT_PRESET.layers.every(
    (l, i) => l.forwardPatch === tuned.preset.layers[i]!.forwardPatch && l.backwardPatch === tuned.preset.layers[i]!.backwardPatch,
  );
  const maps = { default: [] as Float32Array[], tune: [] as Float32Array[] };
  const scores = { default: [] as number[], tune: [] as number[] };
  t = performance.now();
  for (const sample of ds.test) {
    const { image, features } = await detector.features(sample.file);
    let results: MatchResult[] = [];
    for (const key of ['default', 'tune'] as const) {
      detector.preset = presets[key];
      if (!(key === 'tune' && sameWindows)) results = (await detector.matchFeatures(features)).results;
      const scored = detector.scoreResults(results, image);
      maps[key].push(scored.pixelMap);
      scores[key].push(scored.score);
    }
  }
  log('predict', ds.test.length, 'images', ((performance.now() - t) / 1000).toFixed(1), 's');
  const [h, w] = detector.backbone.identity.inputSize;
  const masks: Uint8Array[] = [];
  for (const s of ds.test) masks.push(s.label === 0 || s.maskFile === undefined ? new Uint8Array(h * w) : await loadMask(s.maskFile, [h, w]));
  const labels = ds.test.map((s) => s.label);
  const metrics: Record<string, unknown> = {};
  for (const key of ['default', 'tune'] as const) {
    metrics[key] = {
      image_auroc: imageAuroc(scores[key], labels).value,
      pixel_auroc: pixelAuroc(maps[key], masks).value,
      aupro: aupro(maps[key], masks, { width: w }).value,
    };
    log(key, JSON.stringify(metrics[key]));
  }
  if (out !== undefined) writeFileSync(out, JSON.stringify({ normals, tuneSeconds, record: tuned.record, preset: tuned.preset, ...metrics }, null, 1));
  detector.dispose();
}

await main();
