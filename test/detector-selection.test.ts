/**
 * A detector with template preselection (issue 23, item 1): it matches
 * exactly the brute-force k nearest templates (bit for bit a store of just
 * those, one thread and pipelines), k >= N equals exact ATMM bit for bit,
 * leave-one-out, a hot update selectable at once, the store's
 * meta.templateSelection and the option's errors. On the unaligned hazelnut
 * set (12 of its 28 normals), float model.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Detector } from '../src/detector/detector.js';
import { HetmmError } from '../src/errors.js';
import { loadImagesFrom } from '../src/image/index.js';
import { TemplateStore } from '../src/store/index.js';
import { datasetsDir } from './helpers/io-paths.js';
import { bruteDescriptor, bruteTopK } from './helpers/selection-reference.js';

describe('a detector with template selection', () => {
  const category = path.join(datasetsDir, 'hazelnut-toy/hazelnut');
  let trainFiles: string[];
  let testFiles: string[];
  let exact: Detector;
  let features: Float32Array[][];

  before(async () => {
    trainFiles = (await loadImagesFrom([path.join(category, 'train/good')])).slice(0, 12);
    testFiles = (await loadImagesFrom([path.join(category, 'test/good'), path.join(category, 'test/colour')])).filter((_, i) => i % 4 === 0);
    exact = await Detector.open({ preset: 'hazelnut' });
    await exact.add(trainFiles);
    features = [];
    for (const f of trainFiles) features.push((await exact.features(f)).features);
  });

  after(() => exact.dispose());

  const withSelection = (k: number, grid = 2): Promise<Detector> => Detector.open({ store: exact.store, preset: 'hazelnut', templateSelection: { k, grid } });

  test('k >= N: every prediction equals exact ATMM bit for bit, on one thread and on pipelines', async () => {
    for (const k of [trainFiles.length, 1000]) {
      const selecting = await withSelection(k);
      assert.deepEqual(selecting.templateSelection, { k, grid: 2, layer: 2 });
      for (const file of testFiles) {
        const [a, b] = [await exact.predict(file), await selecting.predict(file)];
        assert.equal(b.score, a.score, `${file} k ${k}`);
        assert.deepEqual(b.anomalyMap, a.anomalyMap);
        assert.deepEqual(b.pixelMap, a.pixelMap);
        assert.equal(b.templates, trainFiles.length);
      }
      const piped = [];
      for await (const r of selecting.predictMany(testFiles, { pipelines: 2 })) piped.push(r.prediction!);
      for (const [i, file] of testFiles.entries()) assert.equal(piped[i]!.score, (await exact.predict(file)).score, `pipelines ${file} k ${k}`);
      selecting.dispose();
    }
  });

  test('k < N: matches exactly the brute-force k nearest templates (bit for bit a store of just those), on one thread and on pipelines', async () => {
    const layer = 2;
    const [, c, h, w] = exact.store.snapshot().layers[layer]!.shape;
    const descriptors = features.map((f) => bruteDescriptor(f[layer]!, c, h, w, 2));
    for (const k of [1, 3, 5]) {
      const selecting = await withSelection(k);
      const piped = [];
      for await (const r of selecting.predictMany(testFiles, { pipelines: 2 })) piped.push(r.prediction!);
      for (const [i, file] of testFiles.entries()) {
        const query = (await exact.features(file)).features;
        const chosen = bruteTopK(descriptors, bruteDescriptor(query[layer]!, c, h, w, 2), k);
        const just = await Detector.open({ preset: 'hazelnut' });
        for (const t of chosen) just.store.append(features[t]!, trainFiles[t]!);
        const expected = await just.predict(file);
        const actual = await selecting.predict(file);
        assert.equal(actual.templates, k, 'matched against k templates');
        assert.equal(actual.score, expected.score, `${file}: k ${k} chosen ${chosen.join(',')}`);
        assert.deepEqual(actual.anomalyMap, expected.anomalyMap);
        assert.equal(piped[i]!.templates, k);
        assert.equal(piped[i]!.score, expected.score, `pipelines ${file}: k ${k}`);
        just.dispose();
      }
      selecting.dispose();
    }
  });

  test('leave-one-out with selection never picks the left-out template and equals a store without it', async () => {
    const selecting = await withSelection(4);
    for (const exclude of [0, 5, trainFiles.length - 1]) {
      const out = await selecting.matchFeatures(features[exclude]!, { exclude });
      assert.equal(out.templates, 4);
      const store = TemplateStore.create(exact.store.identity);
      features.forEach((f, i) => i !== exclude && store.append(f, trainFiles[i]!));
      const without = await Detector.open({ store, preset: 'hazelnut', templateSelection: { k: 4 } });
      const expected = await without.matchFeatures(features[exclude]!);
      out.results.forEach((r, l) => {
        assert.deepEqual(r.forward, expected.results[l]!.forward, `exclude ${exclude} layer ${l} forward`);
        assert.deepEqual(r.backward, expected.results[l]!.backward, `exclude ${exclude} layer ${l} backward`);
      });
      without.dispose();
      const self = await selecting.matchFeatures(features[exclude]!);
      assert.ok(self.results[0]!.forward.every((v) => Math.abs(v - 1) < 1e-5), 'without exclusion the image finds itself');
      assert.ok(!out.results[0]!.forward.every((v) => Math.abs(v - 1) < 1e-5), 'with exclusion it does not');
    }
    selecting.dispose();
  });

  test('a hot update is described at once: the added image is its own nearest template', async () => {
    const store = TemplateStore.create(exact.store.identity);
    for (let i = 0; i < 6; i++) store.append(features[i]!, trainFiles[i]!);
    const selecting = await Detector.open({ store, preset: 'hazelnut', templateSelection: { k: 1 } });
    const added = trainFiles[9]!;
    const before = await selecting.predict(added);
    assert.ok(before.score > 0.01, 'not yet a template: some anomaly');
    await selecting.add([added]);
    const after = await selecting.predict(added);
    assert.equal(after.templates, 1);
    assert.ok(after.score < 1e-4, `matched against itself (score ${after.score})`);
    selecting.dispose();
  });

  test('a store\'s meta.templateSelection applies without the option; null turns it off; a bad one is E_STORE_FORMAT', async () => {
    const store = TemplateStore.create(exact.store.identity, { meta: { templateSelection: { k: 2 } } });
    for (let i = 0; i < 6; i++) store.append(features[i]!, trainFiles[i]!);
    const fromMeta = await Detector.open({ store, preset: 'hazelnut' });
    assert.deepEqual(fromMeta.templateSelection, { k: 2, grid: 2, layer: 2 });
    assert.equal((await fromMeta.predict(testFiles[0]!)).templates, 2);
    fromMeta.dispose();
    const off = await Detector.open({ store, preset: 'hazelnut', templateSelection: null });
    assert.equal(off.templateSelection, undefined);
    assert.equal((await off.predict(testFiles[0]!)).templates, 6);
    off.dispose();
    store.meta.templateSelection = { k: -1 };
    await assert.rejects(Detector.open({ store, preset: 'hazelnut' }), (e: unknown) => e instanceof HetmmError && e.code === 'E_STORE_FORMAT');
    await assert.rejects(Detector.open({ store, templateSelection: { k: 0 } as never }), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT');
  });
});
