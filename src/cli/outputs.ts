/** Files written per predicted image: colour heat map overlay, raw map (.npy) and, with a threshold, a binary mask. */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Prediction } from '../detector/detector.js';
import { storedThreshold } from '../detector/threshold.js';
import { HetmmError } from '../errors.js';
import { encodeFloatMap, encodeMaskPng, renderHeatmapOverlay } from '../image/index.js';

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
  await ensureOutputDir(outDir);
  const { height: h, width: w } = prediction;
  const heatmap = path.join(outDir, `${stem}.heatmap.png`);
  const map = path.join(outDir, `${stem}.map.npy`);
  await writeOutputFile(heatmap, await renderHeatmapOverlay(prediction.image, prediction.pixelMap, h, w, { range, alpha: 0.5 }));
  await writeOutputFile(map, encodeFloatMap(prediction.anomalyMap, h, w));
  if (prediction.threshold === undefined) return { heatmap, map };
  const mask = new Uint8Array(h * w);
  for (let i = 0; i < mask.length; i++) mask[i] = prediction.pixelMap[i]! > prediction.threshold ? 1 : 0;
  const maskFile = path.join(outDir, `${stem}.mask.png`);
  await writeOutputFile(maskFile, await encodeMaskPng(mask, h, w));
  return { heatmap, map, mask: maskFile };
}

function writeError(file: string, e: unknown): HetmmError {
  const code = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
  const words: Record<string, string> = {
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    EACCES: 'permission denied',
    EROFS: 'read-only file system',
    ENOTDIR: 'a path component is not a directory',
    EEXIST: 'exists and is not a directory',
    EISDIR: 'is a directory',
  };
  return new HetmmError('E_WRITE', `cannot write '${file}': ${code}${words[code] ? ` (${words[code]})` : ''}`, { cause: e });
}

/**
 * Creates the output directory and its parents, one level at a time (Node's
 * recursive mkdir loops forever on paths like /proc/x). E_WRITE naming the
 * path when it cannot be a directory.
 */
export async function ensureOutputDir(dir: string): Promise<void> {
  const absolute = path.resolve(dir);
  const info = await stat(absolute).catch(() => undefined);
  if (info?.isDirectory()) return;
  if (info !== undefined) throw writeError(dir, Object.assign(new Error('EEXIST'), { code: 'EEXIST' }));
  const parent = path.dirname(absolute);
  if (parent !== absolute) await ensureOutputDir(parent);
  try {
    await mkdir(absolute);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST' && (await stat(absolute).catch(() => undefined))?.isDirectory()) return;
    throw writeError(dir, e);
  }
}

/**
 * Writes a whole output file or nothing: to a temp file beside it, then
 * renamed over it. E_WRITE (exit 5) naming the file on failure (disk full,
 * permissions); the temp file is removed.
 */
export async function writeOutputFile(file: string, bytes: Uint8Array): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  let handle;
  try {
    handle = await open(temp, 'wx');
    let done = 0;
    while (done < bytes.length) done += (await handle.write(bytes, done, bytes.length - done)).bytesWritten;
    await handle.close();
    handle = undefined;
    await rename(temp, file);
  } catch (e) {
    await handle?.close().catch(() => undefined);
    await rm(temp, { force: true }).catch(() => undefined);
    throw writeError(file, e);
  }
}


