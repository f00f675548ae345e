import assert from 'node:assert/strict';
import { symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { test } from 'node:test';
import {
  Backbone,
  DEFAULT_BACKBONE,
  l2NormalisePixels,
  loadBackboneDescription,
  resolveModelPath,
} from '../src/backbone/index.js';
import { loadImage } from '../src/image/index.js';
import { datasetsDir, defaultModelPath, repoRoot, tempDir } from './helpers/io-paths.js';
import { expectHetmm } from './helpers/errors.js';

/** From ../shared/models/README.md, not computed by hetmm. */
const README_SHA256 = 'a5cf6993e6443f99be82a1bdb8b0194cddabeb889240ec75e7064ca50d179452';
const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle/train/good/000.png');
const bottle2 = path.join(datasetsDir, 'mvtec-bottle-xs/bottle/train/good/001.png');
const tmp = tempDir('backbone');
// an empty cache: a model pulled into the user's cache must not change what these tests see
const noEnv = { HETMM_CACHE_DIR: path.join(tmp, 'no-cache') };

test('resolveModelPath: --model, HETMM_MODEL, default relative to cwd then package root', () => {
  assert.equal(resolveModelPath({ model: defaultModelPath, env: noEnv }).path, defaultModelPath);
  assert.equal(resolveModelPath({ env: { ...noEnv, HETMM_MODEL: defaultModelPath } }).path, defaultModelPath);
  const fromCwd = resolveModelPath({ env: noEnv, cwd: repoRoot });
  assert.equal(fromCwd.path, defaultModelPath);
  assert.deepEqual(fromCwd.tried, [path.join(noEnv.HETMM_CACHE_DIR, 'resnet50v2-imagenet-l123.onnx'), defaultModelPath]);
  const viaRoot = resolveModelPath({ env: noEnv, cwd: tmp, packageRoot: repoRoot });
  assert.equal(viaRoot.path, defaultModelPath);
  assert.deepEqual(viaRoot.tried.slice(1), [path.resolve(tmp, '../shared/models/resnet50v2-imagenet-l123.onnx'), defaultModelPath]);
});

test('resolveModelPath: not found lists every path tried and how to supply one', () => {
  const other = path.join(tmp, 'pkg');
  assert.throws(
    () => resolveModelPath({ env: noEnv, cwd: tmp, packageRoot: other }),
    expectHetmm(
      'E_MODEL_NOT_FOUND',
      path.resolve(tmp, '../shared/models/resnet50v2-imagenet-l123.onnx'),
      path.resolve(other, '../shared/models/resnet50v2-imagenet-l123.onnx'),
      '--model PATH',
      'HETMM_MODEL=PATH',
    ),
  );
  const missing = path.join(tmp, 'missing.onnx');
  assert.throws(() => resolveModelPath({ model: missing, env: noEnv }), expectHetmm('E_MODEL_NOT_FOUND', missing, '--model'));
  assert.throws(() => resolveModelPath({ env: { HETMM_MODEL: missing } }), expectHetmm('E_MODEL_NOT_FOUND', missing, 'HETMM_MODEL'));
});

test('l2NormalisePixels: unit vectors per pixel, zero vectors stay zero', () => {
  // C=2, H=1, W=3: pixels (3,4), (0,0), (-1e-13, 0)
  const out = l2NormalisePixels(new Float32Array([3, 0, -1e-13, 4, 0, 0]), 2, 1, 3);
  assert.ok(Math.abs(out[0] - 0.6) < 1e-7 && Math.abs(out[3] - 0.8) < 1e-7);
  assert.equal(out[1], 0);
  assert.equal(out[4], 0);
  assert.ok(Math.abs(out[2] - -0.1) < 1e-7, `tiny vector divided by 1e-12: ${out[2]}`);
});

test('real model: identity, shapes, unit norms, determinism, batch = loop; timing', async (t) => {
  const backbone = await Backbone.load({ model: defaultModelPath });
  try {
    assert.equal(backbone.identity.modelSha256, README_SHA256);
    assert.equal(backbone.identity.name, DEFAULT_BACKBONE.name);
    assert.deepEqual(backbone.identity.inputSize, [256, 256]);
    assert.deepEqual(
      backbone.identity.layers.map((l) => [l.name, l.channels, l.height, l.width, l.stride]),
      [
        ['layer1', 256, 64, 64, 4],
        ['layer2', 512, 32, 32, 8],
        ['layer3', 1024, 16, 16, 16],
      ],
    );
    assert.equal(backbone.dynamicBatch, false, 'the shipped model has a fixed batch dimension of 1');
    const img = await loadImage(bottle);
    const features = await backbone.extract(img);
    assert.deepEqual(features.map((f) => f.length), [256 * 64 * 64, 512 * 32 * 32, 1024 * 16 * 16]);
    backbone.identity.layers.forEach((l, i) => {
      const plane = l.height * l.width;
      for (let p = 0; p < plane; p++) {
        let s = 0;
        for (let c = 0; c < l.channels; c++) s += features[i][c * plane + p] ** 2;
        assert.ok(Math.abs(Math.sqrt(s) - 1) < 1e-5, `${l.name} pixel ${p} norm ${Math.sqrt(s)}`);
      }
      // not a degenerate output: pixels differ from each other
      assert.notEqual(features[i][0], features[i][plane - 1]);
    });
    const again = await backbone.extract(img);
    features.forEach((f, i) => assert.deepEqual(again[i], f));
    const img2 = await loadImage(bottle2);
    const batch = await backbone.extractBatch([img, img2]);
    const single2 = await backbone.extract(img2);
    batch[0].forEach((f, i) => assert.deepEqual(f, features[i]));
    batch[1].forEach((f, i) => assert.deepEqual(f, single2[i]));
    assert.notDeepEqual(batch[0][2], batch[1][2]);

    // the same session is shared by a second load
    const second = await Backbone.load({ model: defaultModelPath });
    assert.deepEqual(second.identity, backbone.identity);
    await second.dispose();
    assert.deepEqual((await backbone.extract(img))[2], features[2], 'still usable after the other handle is disposed');

    await assert.rejects(backbone.extract(await loadImage(bottle, { size: [128, 128] })), expectHetmm('E_ARGUMENT', '128x128', '256x256'));

    const runs = 10;
    const start = process.hrtime.bigint();
    for (let i = 0; i < runs; i++) await backbone.extract(img);
    const ms = Number(process.hrtime.bigint() - start) / 1e6 / runs;
    t.diagnostic(`extract 256x256: ${ms.toFixed(1)} ms per image (mean of ${runs}, threads=default)`);
    assert.ok(ms < 5000);
  } finally {
    await backbone.dispose();
  }
});

test('a bogus .onnx file is E_MODEL_INVALID naming the file', async () => {
  const bogus = path.join(tmp, 'bogus.onnx');
  writeFileSync(bogus, randomBytes(2048));
  await assert.rejects(Backbone.load({ model: bogus }), expectHetmm('E_MODEL_INVALID', bogus));
});

test('a description that does not fit the model is E_MODEL_INVALID naming what was found', async () => {
  await assert.rejects(
    Backbone.load({ model: defaultModelPath, description: { ...DEFAULT_BACKBONE, outputNames: ['layer1', 'layer2', 'layer4'] } }),
    expectHetmm('E_MODEL_INVALID', 'layer4', 'layer1, layer2, layer3'),
  );
  await assert.rejects(
    Backbone.load({ model: defaultModelPath, description: { ...DEFAULT_BACKBONE, inputName: 'image' } }),
    expectHetmm('E_MODEL_INVALID', "'image'", '[input]'),
  );
  await assert.rejects(
    Backbone.load({ model: defaultModelPath, description: { ...DEFAULT_BACKBONE, strides: [4, 8, 32] } }),
    expectHetmm('E_MODEL_INVALID', 'layer3', '[1,1024,16,16]', 'stride 32'),
  );
});

test('backbone description JSON: sidecar <model>.json, validation errors', async () => {
  const dir = tempDir('sidecar');
  const model = path.join(dir, 'custom.onnx');
  symlinkSync(defaultModelPath, model);
  writeFileSync(path.join(dir, 'custom.json'), JSON.stringify({ ...DEFAULT_BACKBONE, name: 'my-net', inputSize: [128, 192] }));
  const b = await Backbone.load({ model, threads: 1 });
  try {
    assert.equal(b.identity.name, 'my-net');
    assert.deepEqual(b.identity.inputSize, [128, 192]);
    assert.deepEqual(b.identity.layers.map((l) => [l.height, l.width]), [[32, 48], [16, 24], [8, 12]]);
    const f = await b.extract(await loadImage(bottle, { size: [128, 192] }));
    assert.equal(f[2].length, 1024 * 8 * 12);
  } finally {
    await b.dispose();
  }
  const bad = path.join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ ...DEFAULT_BACKBONE, std: [0.2, 0, 0.2] }));
  await assert.rejects(loadBackboneDescription(bad), expectHetmm('E_ARGUMENT', 'bad.json', 'std'));
  writeFileSync(bad, '{"name": ');
  await assert.rejects(loadBackboneDescription(bad), expectHetmm('E_ARGUMENT', 'not valid JSON'));
  writeFileSync(bad, JSON.stringify({ ...DEFAULT_BACKBONE, outputNames: ['a', 'a', 'b'] }));
  await assert.rejects(loadBackboneDescription(bad), expectHetmm('E_ARGUMENT', 'distinct'));
  await assert.rejects(Backbone.load({ model: defaultModelPath, threads: 0 }), expectHetmm('E_ARGUMENT', 'threads'));
});
