/**
 * Data-set readers on the real layouts in ../shared/datasets (counts from
 * its README) and on temporary folders with broken layouts.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { HetmmError } from '../src/errors.js';
import { listMvtecCategories, readFolderDataset, readMvtecCategory, type Dataset } from '../src/eval/datasets.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const datasets = path.resolve(repoRoot, '../shared/datasets');

function countBy(ds: Dataset): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of ds.test) out[s.defectType] = (out[s.defectType] ?? 0) + 1;
  return out;
}

function assertConsistent(ds: Dataset): void {
  const sorted = (xs: string[]) => [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  assert.deepEqual(ds.trainFiles, sorted([...ds.trainFiles]), 'train files sorted');
  for (const s of ds.test) {
    assert.equal(s.label, s.defectType === 'good' ? 0 : 1, s.file);
    assert.ok(existsSync(s.file), s.file);
    if (s.label === 1 && ds.hasMasks) {
      assert.ok(s.maskFile !== undefined && existsSync(s.maskFile), `mask of ${s.file}`);
      const stem = path.basename(s.file, path.extname(s.file));
      assert.ok([`${stem}_mask`, stem].includes(path.basename(s.maskFile, path.extname(s.maskFile))), s.maskFile);
      assert.equal(path.basename(path.dirname(s.maskFile)), s.defectType);
    } else {
      assert.equal(s.maskFile, undefined);
    }
  }
  // good first, then defect types in name order, files in name order within each
  const keys = ds.test.map((s) => `${s.defectType === 'good' ? '' : s.defectType}/${path.basename(s.file)}`);
  assert.deepEqual(keys, sorted([...keys]));
}

async function throwsDataset(p: Promise<unknown>, messagePart: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof HetmmError, String(e));
    assert.equal(e.code, 'E_DATASET');
    assert.match(e.message, messagePart);
    return true;
  });
}

describe('readMvtecCategory on ../shared/datasets', () => {
  const cases = [
    { set: 'magnetic-tile', category: 'magnetic_tile', train: 761, byType: { good: 191, blowhole: 115, break: 85, crack: 57, fray: 32, uneven: 103 }, naming: 'stem_mask' },
    { set: 'mvtec-bottle-xs', category: 'bottle', train: 5, byType: { good: 5, broken_large: 5 }, naming: 'stem_mask' },
    { set: 'mvtec-grid-subset', category: 'grid', train: 25, good: 3, defective: 11, naming: 'stem_mask' },
    { set: 'hazelnut-toy', category: 'hazelnut', train: 28, byType: { good: 6, colour: 17 }, naming: 'stem' },
  ] as const;
  for (const c of cases) {
    it(`${c.set}/${c.category}`, async () => {
      const ds = await readMvtecCategory(path.join(datasets, c.set), c.category);
      assert.equal(ds.name, c.category);
      assert.equal(ds.trainFiles.length, c.train);
      if ('byType' in c) assert.deepEqual(countBy(ds), c.byType);
      else {
        assert.equal(ds.test.filter((s) => s.label === 0).length, c.good);
        assert.equal(ds.test.filter((s) => s.label === 1).length, c.defective);
        assert.deepEqual(Object.keys(countBy(ds)), ['good', 'bent', 'broken', 'glue', 'metal_contamination', 'thread']);
      }
      assert.equal(ds.maskNaming, c.naming);
      assert.equal(ds.hasMasks, true);
      assertConsistent(ds);
      // the category folder itself gives the same listing, and listing is deterministic
      assert.deepEqual(await readMvtecCategory(path.join(datasets, c.set, c.category)), ds);
      assert.deepEqual(await listMvtecCategories(path.join(datasets, c.set)), [c.category]);
      assert.deepEqual(await listMvtecCategories(path.join(datasets, c.set, c.category)), [c.category]);
    });
  }

  it('rejects a root without categories and an unknown category', async () => {
    await throwsDataset(listMvtecCategories(datasets), /no MVTec AD category under .*datasets/);
    await throwsDataset(readMvtecCategory(path.join(datasets, 'mvtec-bottle-xs'), 'cable'), /no MVTec AD category at .*cable/);
    await throwsDataset(readMvtecCategory(path.join(datasets, 'mvtec-bottle-xs')), /pass a category name/);
  });
});

describe('broken layouts (temporary folders)', () => {
  let tmp = '';
  const touch = async (p: string) => {
    await mkdir(path.dirname(p), { recursive: true });
    await writeFile(p, '');
  };
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'hetmm-datasets-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('names the missing mask of a defective image', async () => {
    const cat = path.join(tmp, 'mvtec', 'widget');
    await touch(path.join(cat, 'train/good/000.png'));
    await touch(path.join(cat, 'test/good/000.png'));
    await touch(path.join(cat, 'test/scratch/000.png'));
    await touch(path.join(cat, 'test/scratch/001.png'));
    await touch(path.join(cat, 'ground_truth/scratch/000_mask.png'));
    await touch(path.join(cat, 'test/scratch/.DS_Store'));
    await touch(path.join(cat, 'test/scratch/notes.txt'));
    const expected = path.join(cat, 'ground_truth/scratch/001_mask.png').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    await throwsDataset(readMvtecCategory(path.join(tmp, 'mvtec'), 'widget'), new RegExp(`001\\.png: expected ${expected}`));
    await touch(path.join(cat, 'ground_truth/scratch/001.png'));
    const ds = await readMvtecCategory(cat);
    assert.equal(ds.maskNaming, 'mixed');
    assert.equal(ds.test.length, 3, 'non-image files are ignored');
  });

  it('rejects an empty training or test split', async () => {
    const cat = path.join(tmp, 'empty', 'thing');
    await mkdir(path.join(cat, 'train/good'), { recursive: true });
    await mkdir(path.join(cat, 'test/good'), { recursive: true });
    await throwsDataset(readMvtecCategory(cat), /empty training split: no images in .*train/);
    await touch(path.join(cat, 'train/good/a.jpg'));
    await throwsDataset(readMvtecCategory(cat), /empty test split/);
  });

  it('reads a folder layout with masks matched by stem', async () => {
    const root = path.join(tmp, 'own');
    for (let i = 0; i < 7; i++) await touch(path.join(root, 'ok', `n${i}.JPG`));
    await touch(path.join(root, 'bad', 'b1.png'));
    await touch(path.join(root, 'bad', 'b2.jpg'));
    await touch(path.join(root, 'masks', 'b1_mask.png'));
    await touch(path.join(root, 'masks', 'b2.png'));
    const ds = await readFolderDataset({ normalDir: path.join(root, 'ok'), abnormalDir: path.join(root, 'bad'), maskDir: path.join(root, 'masks') });
    // 7 normals, every 5th held out: n0 and n5 -> test, n1-4 and n6 -> train
    assert.deepEqual(ds.trainFiles.map((f) => path.basename(f)), ['n1.JPG', 'n2.JPG', 'n3.JPG', 'n4.JPG', 'n6.JPG']);
    assert.deepEqual(
      ds.test.map((s) => [path.basename(s.file), s.label, s.maskFile === undefined ? null : path.basename(s.maskFile)]),
      [['n0.JPG', 0, null], ['n5.JPG', 0, null], ['b1.png', 1, 'b1_mask.png'], ['b2.jpg', 1, 'b2.png']],
    );
    assert.equal(ds.maskNaming, 'mixed');
    assert.equal(ds.hasMasks, true);
    assert.equal(ds.name, 'ok');

    const noMasks = await readFolderDataset({ normalDir: path.join(root, 'ok'), abnormalDir: path.join(root, 'bad'), normalTestDir: path.join(root, 'ok'), holdOutEvery: 0 });
    assert.equal(noMasks.hasMasks, false);
    assert.equal(noMasks.maskNaming, 'none');
    assert.equal(noMasks.trainFiles.length, 7);
    assert.ok(noMasks.test.every((s) => s.maskFile === undefined));

    await touch(path.join(root, 'bad', 'b3.png'));
    await throwsDataset(
      readFolderDataset({ normalDir: path.join(root, 'ok'), abnormalDir: path.join(root, 'bad'), maskDir: path.join(root, 'masks') }),
      /missing ground-truth mask for defective image .*b3\.png: expected .*masks\/b3_mask\.png/,
    );
    await throwsDataset(readFolderDataset({ normalDir: path.join(root, 'nowhere') }), /cannot read normal directory .*nowhere/);
    await throwsDataset(
      readFolderDataset({ normalDir: path.join(root, 'ok'), abnormalDir: path.join(root, 'bad'), maskDir: path.join(root, 'no-masks') }),
      /mask directory .*no-masks does not exist/,
    );
    await throwsDataset(readFolderDataset({ normalDir: path.join(root, 'ok'), holdOutEvery: 0 }), /empty test split/);
    await assert.rejects(readFolderDataset({ normalDir: path.join(root, 'ok'), holdOutEvery: 1 }), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT');
  });
});
