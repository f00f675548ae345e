import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { TemplateStore } from '../src/store/index.js';
import { Detector, INT8_BACKBONE_META } from '../src/detector/detector.js';
import { runCli } from './helpers/cli.js';
import { datasetsDir, tempDir } from './helpers/io-paths.js';
import { expectHetmm } from './helpers/errors.js';

const tmp = tempDir('precision');
const good = path.join(datasetsDir, 'mvtec-bottle-xs/bottle/train/good');
const defect = path.join(datasetsDir, 'mvtec-bottle-xs/bottle/test/broken_large/000.png');

test('fit --precision int8 quantises the backbone on the fitted images; predict --precision int8 runs it with int8 matching', async () => {
  const store = path.join(tmp, 'bottle.hetmm');
  const fit = await runCli('fit', good, '-o', store, '--precision', 'int8', '--preset', 'default', '--no-calibrate', '--quiet');
  assert.equal(fit.code, 0, fit.stderr);
  const loaded = await TemplateStore.load(store);
  assert.equal(loaded.meta[INT8_BACKBONE_META], 'embedded');
  assert.ok(!existsSync(path.join(tmp, 'bottle.int8.onnx')), 'the int8 model is inside the store, nothing beside it');
  // `--model STORE` names the model embedded in that store
  const model = store;
  assert.equal(loaded.identity.name, 'resnet50v2-imagenet-l123-int8');

  const int8 = await runCli('predict', '-t', store, defect, '--json', '--quiet', '--precision', 'int8');
  assert.equal(int8.code, 0, int8.stderr);
  const int8Score = (JSON.parse(int8.stdout) as { score: number }).score;
  // The same store with the int8 backbone and float matching: close, not equal (int8 matching rounds).
  const floatMatch = await runCli('predict', '-t', store, defect, '--json', '--quiet', '--model', model);
  assert.equal(floatMatch.code, 0, floatMatch.stderr);
  const floatScore = (JSON.parse(floatMatch.stdout) as { score: number }).score;
  assert.notEqual(int8Score, floatScore);
  assert.ok(Math.abs(int8Score - floatScore) < 5e-3, `${int8Score} vs ${floatScore}`);

  // Without --precision the store's own precision applies: int8 end to end, the same score.
  const implicit = await runCli('predict', '-t', store, defect, '--json', '--quiet');
  assert.equal(implicit.code, 0, implicit.stderr);
  assert.equal((JSON.parse(implicit.stdout) as { score: number }).score, int8Score);
  // --precision float loads the float backbone: its identity differs from the store's.
  const mixed = await runCli('predict', '-t', store, defect, '--quiet', '--precision', 'float');
  assert.equal(mixed.code, 4, mixed.stderr);
  assert.match(mixed.stderr, /int8/);
  await assert.rejects(Detector.open({ store, precision: 'float' }), expectHetmm('E_STORE_MISMATCH'));
  for (const d of [await Detector.open({ store, precision: 'int8' }), await Detector.open({ store })]) {
    assert.equal(d.backbone.modelPath, `${store}#int8-${loaded.identity.modelSha256.slice(0, 16)}`);
    assert.equal(d.backend.precision, 'int8');
    d.dispose();
  }
});

test('--precision: bad values and contradictions are usage errors; --int8 is an alias', async () => {
  const store = path.join(tmp, 'none.hetmm');
  const bad = await runCli('predict', '-t', store, defect, '--precision', 'int4');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--precision float or int8/);
  const both = await runCli('predict', '-t', store, defect, '--precision', 'float', '--int8');
  assert.equal(both.code, 2);
  assert.match(both.stderr, /contradicts/);
});

test('precision options: every command takes the whole-pipeline precision; --int8 is its alias', async () => {
  const { precisionOption } = await import('../src/cli/options.js');
  assert.deepEqual(precisionOption({ int8: true }), { precision: 'int8' });
  assert.deepEqual(precisionOption({ precision: 'float' }), { precision: 'float' });
  assert.deepEqual(precisionOption({}), {});
  assert.throws(() => precisionOption({ precision: 'half' }), expectHetmm('E_ARGUMENT', '--precision float or int8'));
});
