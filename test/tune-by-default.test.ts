/**
 * Issue 20, item 1: a fit with no preset tunes it when there are enough
 * normals (MIN_TUNE_NORMALS) and says so with its time; fewer keep the
 * default preset, saying so; `--preset default` opts out. `eval --preset
 * auto` keeps an MVTec category's official preset and tunes the others.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { tuneFor } from '../src/eval/run.js';
import { fitStore } from '../src/fit/fit-store.js';
import { MIN_TUNE_NORMALS } from '../src/fit/tune.js';
import { loadImagesFrom } from '../src/image/index.js';
import { TemplateStore } from '../src/store/index.js';
import { runCli } from './helpers/cli.js';
import { datasetsDir, tempDir } from './helpers/io-paths.js';

const tmp = tempDir('tune-by-default');
const bottleGood = path.join(datasetsDir, 'mvtec-bottle-xs/bottle/train/good');

describe('hetmm fit with no preset', () => {
  it(`tunes with ${MIN_TUNE_NORMALS} normals and prints what it chose and how long it took`, async () => {
    const store = path.join(tmp, 'tuned.hetmm');
    // a one-window budget: the first window setting always runs, the budget stops the search after it
    const r = await runCli('fit', bottleGood, '-o', store, '--tune-budget', '1', '--precision', 'float', '--no-calibrate');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr + r.stdout, /preset tuning chose .* in \d+\.\d s of its 1 s budget/);
    const meta = (await TemplateStore.load(store)).meta as { tuning?: { seconds: number }; preset?: { name: string } };
    assert.ok(meta.tuning !== undefined && meta.tuning.seconds > 0, 'the store records the tuning');
    assert.equal(meta.preset?.name, 'tuned');
  });

  it(`keeps the default preset with fewer than ${MIN_TUNE_NORMALS} normals, and says so`, async () => {
    const files = (await loadImagesFrom([bottleGood])).slice(0, MIN_TUNE_NORMALS - 1);
    const store = path.join(tmp, 'few.hetmm');
    const r = await runCli('fit', ...files, '-o', store, '--precision', 'float', '--no-calibrate');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr + r.stdout, new RegExp(`preset default, not tuned: ${MIN_TUNE_NORMALS - 1} normal images, fewer than the ${MIN_TUNE_NORMALS}`));
    const meta = (await TemplateStore.load(store)).meta as { tuning?: unknown; preset?: { name: string } };
    assert.equal(meta.tuning, undefined);
    assert.equal(meta.preset?.name, 'default');
  });

  it('--preset default opts out', async () => {
    const store = path.join(tmp, 'default.hetmm');
    const r = await runCli('fit', bottleGood, '-o', store, '--preset', 'default', '--precision', 'float', '--no-calibrate');
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr + r.stdout, /tuning|not tuned/);
    const meta = (await TemplateStore.load(store)).meta as { tuning?: unknown; preset?: { name: string } };
    assert.equal(meta.tuning, undefined);
    assert.equal(meta.preset?.name, 'default');
  });

  it('the library decides the same: fitStore with options that name no preset tunes by the same rule', async () => {
    const files = (await loadImagesFrom([bottleGood])).slice(0, MIN_TUNE_NORMALS - 1);
    const notes: string[] = [];
    const fitted = await fitStore({ precision: 'float' }, { files, calibrate: false, onNote: (n) => notes.push(n) });
    try {
      assert.equal(fitted.tuning, undefined);
      assert.ok(notes.some((n) => n.includes('not tuned')), notes.join('\n'));
    } finally {
      fitted.detector.dispose();
    }
  });
});

describe('eval --preset auto', () => {
  it('keeps an official MVTec preset, tunes a category without one, and never tunes loaded stores or named presets', () => {
    assert.equal(tuneFor({}, 'bottle'), undefined);
    assert.deepEqual(tuneFor({}, 'magnetic_tile'), { minNormals: MIN_TUNE_NORMALS });
    assert.deepEqual(tuneFor({ preset: 'auto' }, 'my-part'), { minNormals: MIN_TUNE_NORMALS });
    assert.equal(tuneFor({ preset: 'default' }, 'my-part'), undefined);
    assert.equal(tuneFor({ templates: 'stores' }, 'my-part'), undefined);
    assert.equal(tuneFor({ tune: false }, 'my-part'), false);
    assert.deepEqual(tuneFor({ tune: (c) => c === 'a' }, 'a'), true);
  });
});
