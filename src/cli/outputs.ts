/** Files written per predicted image: colour heat map overlay, raw map (.npy) and, with a threshold, a binary mask. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Prediction } from '../detector/detector.js';
import { encodeMaskPng, renderHeatmapOverlay, saveFloatMap } from '../image/index.js';

export interface WrittenFiles {
  readonly heatmap: string;
  readonly map: string;
  readonly mask?: string;
}

/**
 * Output names for a batch: the file stem, or parent_stem where two inputs
 * share a stem (MVTec's test/good/000.png and test/broken_large/000.png).
 */
export function outputStems(files: readonly string[]): string[] {
  const stem = (f: string): string => path.basename(f, path.extname(f));
  const counts = new Map<string, number>();
  for (const f of files) counts.set(stem(f), (counts.get(stem(f)) ?? 0) + 1);
  const used = new Set<string>();
  return files.map((f) => {
    let name = counts.get(stem(f))! > 1 ? `${path.basename(path.dirname(f))}_${stem(f)}` : stem(f);
    for (let k = 2; used.has(name); k++) name = `${stem(f)}_${k}`;
    used.add(name);
    return name;
  });
}

export { heatmapRange } from '../detector/threshold.js';

export async function writePredictionFiles(
  prediction: Prediction,
  outDir: string,
  stem: string,
  range: readonly [number, number],
): Promise<WrittenFiles> {
  await mkdir(outDir, { recursive: true });
  const { height: h, width: w } = prediction;
  const heatmap = path.join(outDir, `${stem}.heatmap.png`);
  const map = path.join(outDir, `${stem}.map.npy`);
  await writeFile(heatmap, await renderHeatmapOverlay(prediction.image, prediction.pixelMap, h, w, { range, alpha: 0.5 }));
  await saveFloatMap(map, prediction.anomalyMap, h, w);
  if (prediction.threshold === undefined) return { heatmap, map };
  const mask = new Uint8Array(h * w);
  for (let i = 0; i < mask.length; i++) mask[i] = prediction.pixelMap[i]! > prediction.threshold ? 1 : 0;
  const maskFile = path.join(outDir, `${stem}.mask.png`);
  await writeFile(maskFile, await encodeMaskPng(mask, h, w));
  return { heatmap, map, mask: maskFile };
}
