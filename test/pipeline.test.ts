/**
 * Pipelined prediction (Detector.predictMany) and predictions concurrent with
 * hot `add`, on the real backbone and real magnetic-tile images:
 *   - predictMany yields exactly what sequential predict gives, in input
 *     order, at every concurrency, with each failing input's error in its
 *     place, also with the backbone on a worker thread (backboneThread);
 *   - a prediction that overlaps an `add` sees a store of some whole count
 *     between the old and the new one (its result equals a prediction made
 *     against a store of exactly that many images), never a torn state; once
 *     `add` resolves, new predictions see every added image, so an added
 *     image scores ~0 against itself.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Detector, type Prediction } from '../src/detector/detector.js';
import { HetmmError } from '../src/errors.js';
import { TemplateStore } from '../src/store/index.js';
import { datasetsDir, defaultModelPath, listImages, tempDir } from './helpers/io-paths.js';

const tileRoot = path.join(datasetsDir, 'magnetic-tile/magnetic_tile');
const good = listImages(path.join(tileRoot, 'train/good'));
const defective = listImages(path.join(tileRoot, 'test/crack'));

const BASE_TEMPLATES = 4;
const tmp = tempDir('pipeline');
const notAnImage = path.join(tmp, 'not-an-image.png');
const missing = path.join(tmp, 'missing.png');

let detector: Detector;
/** features of the base templates and of the images added in the hot-update test */
const featuresOf = new Map<string, Float32Array[]>();

function storeOf(files: readonly string[]): TemplateStore {
  const store = TemplateStore.create(detector.backbone.identity, { dtype: 'float32' });
  for (const f of files) store.append(featuresOf.get(f)!, f);
  return store;
}

function assertSamePrediction(actual: Prediction, expected: Prediction, what: string): void {
  assert.equal(actual.file, expected.file, `${what}: file`);
  assert.equal(actual.templates, expected.templates, `${what}: templates`);
  assert.equal(actual.score, expected.score, `${what}: score`);
  assert.deepEqual(actual.anomalyMap, expected.anomalyMap, `${what}: anomalyMap`);
  assert.deepEqual(actual.pixelMap, expected.pixelMap, `${what}: pixelMap`);
}

before(async () => {
  writeFileSync(notAnImage, 'this is text, not a PNG');
  detector = await Detector.open({ model: defaultModelPath, preset: 'default', dtype: 'float32' });
  for (const f of [...good.slice(0, BASE_TEMPLATES + 3)]) featuresOf.set(f, (await detector.features(f)).features);
});

after(() => detector?.dispose());

describe('predictMany', () => {
  it('yields the sequential predictions in input order, errors in place, at every concurrency', async () => {
    detector.setStore(storeOf(good.slice(0, BASE_TEMPLATES)));
    const inputs = [defective[0]!, missing, good[20]!, notAnImage, defective[1]!, good[21]!];
    const sequential = new Map<string, Prediction>();
    for (const f of inputs) {
      if (f === missing || f === notAnImage) continue;
      sequential.set(f, await detector.predict(f));
    }
    // the inputs differ, so equal results cannot come from mixing them up
    assert.notEqual(sequential.get(defective[0]!)!.score, sequential.get(good[20]!)!.score);

    // backboneThread: decoding and the backbone on a worker thread with its own session
    const settings = [1, 2, 3, 8].map((concurrency) => ({ concurrency, backboneThread: false })).concat([1, 3].map((concurrency) => ({ concurrency, backboneThread: true })));
    for (const { concurrency, backboneThread } of settings) {
      const seen: string[] = [];
      for await (const r of detector.predictMany(inputs, { concurrency, backboneThread })) {
        const what = `concurrency ${concurrency}${backboneThread ? ' (backbone thread)' : ''}, ${path.basename(r.source)}`;
        seen.push(r.source);
        if (r.source === missing || r.source === notAnImage) {
          assert.equal(r.prediction, undefined, what);
          assert.ok(r.error instanceof HetmmError, `${what}: expected a HetmmError, got ${String(r.error)}`);
          assert.equal(r.error.code, r.source === missing ? 'E_IMAGE_READ' : 'E_IMAGE_DECODE', what);
          assert.ok(r.error.message.includes(r.source), `${what}: the error names the file: ${r.error.message}`);
        } else {
          assert.equal(r.error, undefined, what);
          assertSamePrediction(r.prediction!, sequential.get(r.source)!, what);
        }
      }
      assert.deepEqual(seen, inputs, `concurrency ${concurrency}${backboneThread ? ' (backbone thread)' : ''}: input order`);
    }
  });

  it('yields nothing for no inputs', async () => {
    const results = [];
    for await (const r of detector.predictMany([], { concurrency: 3 })) results.push(r);
    assert.deepEqual(results, []);
  });
});

describe('predict concurrent with add', () => {
  it('sees a whole store (old count, new count or in between), and every added image once add resolves', async () => {
    const base = good.slice(0, BASE_TEMPLATES);
    const added = good.slice(BASE_TEMPLATES, BASE_TEMPLATES + 3);
    const probe = added[added.length - 1]!; // the last image added
    const other = defective[2]!;

    // What a prediction against a store of exactly n images gives, n = base .. base + 3.
    const expected = new Map<number, { probe: Prediction; other: Prediction }>();
    for (let n = 0; n <= added.length; n++) {
      detector.setStore(storeOf([...base, ...added.slice(0, n)]));
      expected.set(BASE_TEMPLATES + n, { probe: await detector.predict(probe), other: await detector.predict(other) });
    }
    const before = expected.get(BASE_TEMPLATES)!.probe.score;
    assert.ok(before > 0.05, `the probe is not a template yet, so it scores clearly above 0 (got ${before})`);

    detector.setStore(storeOf(base));
    let addDone = false;
    const adding = detector.add(added).then((n) => {
      addDone = true;
      return n;
    });
    // Predictions started while add runs (at least one, several in flight at once).
    const during: Prediction[] = [];
    do {
      const batch = await Promise.all([detector.predict(probe), detector.predict(other)]);
      during.push(...batch);
    } while (!addDone);
    assert.equal(await adding, added.length);

    assert.ok(during.length >= 2);
    for (const p of during) {
      const n = p.templates;
      assert.ok(n >= BASE_TEMPLATES && n <= BASE_TEMPLATES + added.length, `templates ${n} outside [old, new]`);
      const want = p.file === probe ? expected.get(n)!.probe : expected.get(n)!.other;
      assertSamePrediction(p, want, `prediction during add with ${n} templates`);
    }

    const afterAdd = await detector.predict(probe);
    assert.equal(afterAdd.templates, BASE_TEMPLATES + added.length);
    assert.equal(detector.store.count, BASE_TEMPLATES + added.length);
    assert.ok(afterAdd.score >= -1e-5 && afterAdd.score < 1e-4, `an added image matches itself: score ${afterAdd.score} should be ~0`);
  });
});
