/** Files written per predicted image: colour heat map overlay, raw map (.npy) and, with a threshold, a binary mask. */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Prediction } from '../detector/detector.js';
import { HetmmError } from '../errors.js';
import { encodeFloatMap, encodeMaskPng, renderHeatmapOverlay, resizeBilinearFloat } from '../image/index.js';

export interface WrittenFiles {
  readonly heatmap: string;
  readonly map: string;
  readonly mask?: string;
  /** [height, width] of the written heat map, map and mask */
  readonly size: readonly [number, number];
}

/** 'original': outputs at the input image's own size (overlays line up with it); 'model': at the backbone's input size. */
export type MapSize = 'original' | 'model';

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

/**
 * Writes the heat map overlay, the raw map (.npy) and, with a threshold, the
 * mask. At mapSize 'original' (the default) the maps are resampled to the
 * image file's size first (bilinear, as PIL), and the threshold is applied
 * to the resampled pixel map, so the mask, the overlay and the map all line
 * up with the input image.
 */
export async function writePredictionFiles(
  prediction: Prediction,
  outDir: string,
  stem: string,
  range: readonly [number, number],
  options: { mapSize?: MapSize } = {},
): Promise<WrittenFiles> {
  await ensureOutputDir(outDir);
  const { height: h, width: w } = prediction;
  const original = (options.mapSize ?? 'original') === 'original' && prediction.image.source !== '<buffer>';
  const [H, W] = original ? [prediction.image.originalHeight, prediction.image.originalWidth] : [h, w];
  const resize = (map: Float32Array): Float32Array => (H === h && W === w ? map : Float32Array.from(resizeBilinearFloat(map, h, w, 1, H, W)));
  const pixelMap = resize(prediction.pixelMap);
  const heatmap = path.join(outDir, `${stem}.heatmap.png`);
  const map = path.join(outDir, `${stem}.map.npy`);
  await writeOutputFile(
    heatmap,
    await renderHeatmapOverlay(original ? prediction.image.source : prediction.image, pixelMap, H, W, {
      range,
      alpha: 0.5,
      outSize: original ? 'original' : 'model',
    }),
  );
  await writeOutputFile(map, encodeFloatMap(resize(prediction.anomalyMap), H, W));
  if (prediction.threshold === undefined) return { heatmap, map, size: [H, W] };
  const mask = new Uint8Array(H * W);
  for (let i = 0; i < mask.length; i++) mask[i] = pixelMap[i]! > prediction.threshold ? 1 : 0;
  const maskFile = path.join(outDir, `${stem}.mask.png`);
  await writeOutputFile(maskFile, await encodeMaskPng(mask, H, W));
  return { heatmap, map, mask: maskFile, size: [H, W] };
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
 * Fails now (E_WRITE naming why) when `file` could not be written: its
 * folder is missing, not a folder or not writable, or it is a folder.
 * Commands check their output paths before the work starts.
 */
export async function checkOutputFile(file: string): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const info = await stat(dir).catch(() => undefined);
  if (info === undefined) throw new HetmmError('E_WRITE', `cannot write '${file}': the folder '${dir}' does not exist`);
  if (!info.isDirectory()) throw new HetmmError('E_WRITE', `cannot write '${file}': '${dir}' is not a folder`);
  await access(dir, constants.W_OK).catch((e: unknown) => {
    throw writeError(file, e);
  });
  if ((await stat(file).catch(() => undefined))?.isDirectory() === true) throw writeError(file, Object.assign(new Error('EISDIR'), { code: 'EISDIR' }));
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


