/**
 * Data-set readers: turn a folder layout into sorted, deterministic lists of
 * training (normal) images and labelled test images with their masks. They
 * only list files; decoding is the image module's job.
 *
 * Two layouts:
 * - MVTec AD: `<root>/<category>/train/good/*`, `test/good/*`,
 *   `test/<defect type>/*`, `ground_truth/<defect type>/<stem>_mask.png`.
 *   Some sets (e.g. the hazelnut toy set) name masks `<stem>.png` instead;
 *   both are accepted and `maskNaming` reports which was found.
 * - Folders for users' own data: a folder of normal images, optionally a
 *   folder of defective ones, of masks (matched by file stem) and of normal
 *   test images.
 *
 * Order is by file name in UTF-16 code-unit order (not locale order), so a
 * listing is the same on every machine; test lists have `good` first, then
 * the defect types in name order.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { HetmmError } from '../errors.js';
import { IMAGE_EXTENSIONS } from '../image/index.js';

/** Extensions (lower case) treated as images; everything else (readme, .DS_Store) is ignored. */

export interface TestSample {
  /** image path (absolute) */
  readonly file: string;
  /** 0 = normal, 1 = defective */
  readonly label: 0 | 1;
  /** `good` for normal images, else the defect type (folder name) */
  readonly defectType: string;
  /** ground-truth mask (absolute path), for defective images when masks exist */
  readonly maskFile?: string;
}

/**
 * How mask files were named: `stem_mask` (MVTec: 000.png -> 000_mask.png),
 * `stem` (same stem as the image), `mixed` (both occur), `none` (no masks).
 */
export type MaskNaming = 'stem_mask' | 'stem' | 'mixed' | 'none';

export interface Dataset {
  /** category name (MVTec) or the normal folder's name */
  readonly name: string;
  /** the category folder (MVTec) or the normal folder */
  readonly root: string;
  /** defect-free training images (the templates), absolute paths */
  readonly trainFiles: readonly string[];
  readonly test: readonly TestSample[];
  readonly maskNaming: MaskNaming;
  /** true when every defective test image has a mask: pixel-level metrics are possible */
  readonly hasMasks: boolean;
}

const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function isImageName(name: string): boolean {
  return !name.startsWith('.') && IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());
}

function stemOf(name: string): string {
  return path.basename(name, path.extname(name));
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Sorted image file names (not paths) of a directory; E_DATASET if it is not a readable directory. */
async function listImages(dir: string, role: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw new HetmmError('E_DATASET', `cannot read ${role} directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
  return entries
    .filter((d) => (d.isFile() || d.isSymbolicLink()) && isImageName(d.name))
    .map((d) => d.name)
    .sort(byCodeUnits);
}

async function listSubdirectories(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
    .map((d) => d.name)
    .sort(byCodeUnits);
}

/** A directory of masks indexed by file stem; `.png` preferred when a stem has several files. */
class MaskIndex {
  private readonly byStem = new Map<string, string>();
  private usedStemMask = false;
  private usedStem = false;

  private constructor(private readonly dir: string) {}

  static async open(dir: string): Promise<MaskIndex> {
    const index = new MaskIndex(dir);
    if (!(await isDirectory(dir))) return index; // no masks at all: every lookup reports the missing path
    for (const name of await listImages(dir, 'mask')) {
      const stem = stemOf(name);
      const known = index.byStem.get(stem);
      if (known === undefined || (path.extname(known).toLowerCase() !== '.png' && path.extname(name).toLowerCase() === '.png')) {
        index.byStem.set(stem, name);
      }
    }
    return index;
  }

  /** The mask of image `imageName`: `<stem>_mask.*` first, then `<stem>.*`; E_DATASET when neither exists. */
  find(imageName: string, imagePath: string): string {
    const stem = stemOf(imageName);
    const withSuffix = this.byStem.get(`${stem}_mask`);
    if (withSuffix !== undefined) {
      this.usedStemMask = true;
      return path.join(this.dir, withSuffix);
    }
    const plain = this.byStem.get(stem);
    if (plain !== undefined) {
      this.usedStem = true;
      return path.join(this.dir, plain);
    }
    throw new HetmmError(
      'E_DATASET',
      `missing ground-truth mask for defective image ${imagePath}: expected ${path.join(this.dir, `${stem}_mask.png`)} ` +
        `(or ${stem}.png in the same folder)`,
    );
  }

  naming(): MaskNaming {
    if (this.usedStemMask && this.usedStem) return 'mixed';
    if (this.usedStemMask) return 'stem_mask';
    if (this.usedStem) return 'stem';
    return 'none';
  }
}

function combineNaming(namings: readonly MaskNaming[]): MaskNaming {
  const found = new Set(namings.filter((n) => n !== 'none'));
  if (found.size === 0) return 'none';
  if (found.size === 1) return [...found][0]!;
  return 'mixed';
}

async function isMvtecCategory(dir: string): Promise<boolean> {
  return (await isDirectory(path.join(dir, 'train'))) && (await isDirectory(path.join(dir, 'test')));
}

/**
 * Category names under an MVTec AD root (folders holding `train/` and
 * `test/`), sorted. When `root` is itself a category folder, its own name
 * is the only category. E_DATASET when there is none.
 */
export async function listMvtecCategories(root: string): Promise<string[]> {
  const abs = path.resolve(root);
  if (!(await isDirectory(abs))) throw new HetmmError('E_DATASET', `data set root ${abs} is not a directory`);
  if (await isMvtecCategory(abs)) return [path.basename(abs)];
  const categories: string[] = [];
  for (const name of await listSubdirectories(abs)) {
    if (await isMvtecCategory(path.join(abs, name))) categories.push(name);
  }
  if (categories.length === 0) {
    throw new HetmmError(
      'E_DATASET',
      `no MVTec AD category under ${abs}: expected ${path.join(abs, '<category>', 'train', 'good')} and ${path.join(abs, '<category>', 'test')}`,
    );
  }
  return categories;
}

/**
 * One MVTec AD category. `root` is either the data-set root (then
 * `category` names the folder) or the category folder itself (then
 * `category` may be omitted or must equal its name).
 *
 * Throws HetmmError('E_DATASET') when the category is missing, when
 * train/good or the test split has no images, or when a defective test
 * image has no mask (the message names the expected mask path).
 */
export async function readMvtecCategory(root: string, category?: string): Promise<Dataset> {
  const abs = path.resolve(root);
  let dir: string;
  if (await isMvtecCategory(abs)) {
    if (category !== undefined && category !== path.basename(abs)) {
      dir = path.join(abs, category); // a category folder nested in another one: unusual but explicit
    } else {
      dir = abs;
    }
  } else if (category !== undefined) {
    dir = path.join(abs, category);
  } else {
    throw new HetmmError(
      'E_DATASET',
      `${abs} is not an MVTec AD category (no train/ and test/ folders); pass a category name or the category folder`,
    );
  }
  if (!(await isMvtecCategory(dir))) {
    throw new HetmmError('E_DATASET', `no MVTec AD category at ${dir}: expected ${path.join(dir, 'train', 'good')} and ${path.join(dir, 'test')}`);
  }
  const name = path.basename(dir);

  const trainDir = path.join(dir, 'train', 'good');
  const trainNames = (await isDirectory(trainDir)) ? await listImages(trainDir, 'train') : [];
  if (trainNames.length === 0) throw new HetmmError('E_DATASET', `empty training split: no images in ${trainDir}`);
  const trainFiles = trainNames.map((n) => path.join(trainDir, n));

  const testDir = path.join(dir, 'test');
  const types = (await listSubdirectories(testDir)).sort((a, b) => (a === 'good' ? -1 : b === 'good' ? 1 : byCodeUnits(a, b)));
  const test: TestSample[] = [];
  const namings: MaskNaming[] = [];
  for (const type of types) {
    const typeDir = path.join(testDir, type);
    const names = await listImages(typeDir, 'test');
    if (type === 'good') {
      for (const n of names) test.push({ file: path.join(typeDir, n), label: 0, defectType: 'good' });
      continue;
    }
    const masks = await MaskIndex.open(path.join(dir, 'ground_truth', type));
    for (const n of names) {
      const file = path.join(typeDir, n);
      test.push({ file, label: 1, defectType: type, maskFile: masks.find(n, file) });
    }
    namings.push(masks.naming());
  }
  if (test.length === 0) throw new HetmmError('E_DATASET', `empty test split: no images in the folders of ${testDir}`);
  return { name, root: dir, trainFiles, test, maskNaming: combineNaming(namings), hasMasks: true };
}

/** Layout of a user's own data. */
export interface FolderLayout {
  /** defect-free images; the templates (minus the held-out ones, see holdOutEvery) */
  readonly normalDir: string;
  /** defective test images */
  readonly abnormalDir?: string;
  /** masks of the defective images, matched by stem: `<stem>_mask.*` or `<stem>.*` */
  readonly maskDir?: string;
  /** defect-free test images; when given, all of normalDir is used for training */
  readonly normalTestDir?: string;
  /**
   * Without normalTestDir, every `holdOutEvery`-th normal image in name
   * order (index 0, k, 2k, ...) is held out as a normal test image, as this
   * project's magnetic-tile split does; 0 holds out none. Default 5.
   */
  readonly holdOutEvery?: number;
  /** a name for reports; default the normal folder's name */
  readonly name?: string;
}

/**
 * A data set from plain folders. Without a mask folder the test list has no
 * masks (`hasMasks` false): only image-level metrics apply.
 *
 * Throws HetmmError('E_DATASET') for an unreadable folder, an empty
 * training or test split, or a defective image without its mask (when a
 * mask folder is given); E_ARGUMENT for a bad holdOutEvery.
 */
export async function readFolderDataset(layout: FolderLayout): Promise<Dataset> {
  const holdOutEvery = layout.holdOutEvery ?? 5;
  if (!Number.isInteger(holdOutEvery) || holdOutEvery < 0 || holdOutEvery === 1) {
    throw new HetmmError(
      'E_ARGUMENT',
      `expected holdOutEvery to be 0 (none) or an integer >= 2, but received ${String(holdOutEvery)}`,
    );
  }
  const normalDir = path.resolve(layout.normalDir);
  const normalNames = await listImages(normalDir, 'normal');
  const trainFiles: string[] = [];
  const test: TestSample[] = [];
  if (layout.normalTestDir !== undefined) {
    const dir = path.resolve(layout.normalTestDir);
    for (const n of normalNames) trainFiles.push(path.join(normalDir, n));
    for (const n of await listImages(dir, 'normal test')) test.push({ file: path.join(dir, n), label: 0, defectType: 'good' });
  } else {
    normalNames.forEach((n, i) => {
      const file = path.join(normalDir, n);
      if (holdOutEvery > 0 && i % holdOutEvery === 0) test.push({ file, label: 0, defectType: 'good' });
      else trainFiles.push(file);
    });
  }
  if (trainFiles.length === 0) {
    throw new HetmmError('E_DATASET', `empty training split: no normal images left for training in ${normalDir}`);
  }
  let maskNaming: MaskNaming = 'none';
  let hasMasks = false;
  if (layout.abnormalDir !== undefined) {
    const dir = path.resolve(layout.abnormalDir);
    const names = await listImages(dir, 'abnormal');
    const masks = layout.maskDir !== undefined ? await MaskIndex.open(path.resolve(layout.maskDir)) : undefined;
    if (masks !== undefined && !(await isDirectory(path.resolve(layout.maskDir!)))) {
      throw new HetmmError('E_DATASET', `mask directory ${path.resolve(layout.maskDir!)} does not exist`);
    }
    for (const n of names) {
      const file = path.join(dir, n);
      const maskFile = masks?.find(n, file);
      test.push(maskFile !== undefined ? { file, label: 1, defectType: 'abnormal', maskFile } : { file, label: 1, defectType: 'abnormal' });
    }
    if (masks !== undefined) {
      maskNaming = masks.naming();
      hasMasks = true;
    }
  }
  if (test.length === 0) {
    throw new HetmmError(
      'E_DATASET',
      'empty test split: give abnormalDir or normalTestDir, or let holdOutEvery hold out some normal images',
    );
  }
  return { name: layout.name ?? path.basename(normalDir), root: normalDir, trainFiles, test, maskNaming, hasMasks };
}
