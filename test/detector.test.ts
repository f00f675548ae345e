/**
 * Detector internals that the CLI tests don't pin: leave-one-out matching
 * (views either side of the excluded image, max-merged) equals matching a
 * store that never had the image, and batch reservation keeps capacity exact.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Detector } from '../src/detector/detector.js';
import { loadImagesFrom } from '../src/image/index.js';
import { datasetsDir } from './helpers/io-paths.js';

const trainDir = path.join(datasetsDir, 'mvtec-bottle-xs/bottle/train/good');
let full: Detector;
let files: string[];

before(async () => {
  files = await loadImagesFrom([trainDir]);
  full = await Detector.open({ preset: 'bottle' });
  await full.add(files);
});

after(() => full.dispose());

test('leave-one-out equals a store without that image, for every position', async () => {
  const features = await Promise.all(files.map(async (f) => (await full.features(f)).features));
  for (let exclude = 0; exclude < files.length; exclude++) {
    const without = await Detector.open({ preset: 'bottle' });
    for (let i = 0; i < files.length; i++) if (i !== exclude) without.store.append(features[i]!, files[i]!);
    const expected = await without.matchFeatures(features[exclude]!);
    const actual = await full.matchFeatures(features[exclude]!, { exclude });
    assert.equal(actual.templates, files.length - 1);
    for (let l = 0; l < expected.results.length; l++) {
      assert.deepEqual(actual.results[l]!.forward, expected.results[l]!.forward, `layer ${l} forward, exclude ${exclude}`);
      assert.deepEqual(actual.results[l]!.backward, expected.results[l]!.backward, `layer ${l} backward, exclude ${exclude}`);
    }
    // Without the exclusion the image finds itself: similarity 1 everywhere.
    const self = await full.matchFeatures(features[exclude]!);
    assert.ok(self.results[0]!.forward.every((v) => Math.abs(v - 1) < 1e-5));
    without.dispose();
  }
});

test('reserve allocates exactly, and appends past a snapshot leave it intact', async () => {
  const d = await Detector.open();
  d.store.reserve(3);
  const before = d.store.bytes;
  const { features } = await d.features(files[0]!);
  d.store.append(features, files[0]!);
  const snap = d.store.snapshot();
  d.store.append(features, files[1]!);
  d.store.append(features, files[2]!);
  assert.equal(d.store.bytes, before, 'no reallocation within the reserved capacity');
  assert.equal(snap.count, 1);
  assert.equal(d.store.count, 3);
  assert.throws(() => d.store.reserve(-1), /non-negative integer/);
  d.dispose();
});
