/**
 * int8 end to end is the default of what builds a deployable store (hetmm
 * fit, the library's fitStore given detector options): the backbone is
 * quantised on the normals and embedded in the store (format version 3, one
 * file); the threshold comes from that same pipeline (calibration parity);
 * predict, serve and queue workers run it (uploads and hot updates
 * included); a version 2 store with sidecar files still loads, and without
 * them fails with one clear error naming the missing file; a store fitted
 * with precision 'float' stays the float reference. Small stores (4 bottle
 * images) keep quantisation and fitting to a few seconds.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { Detector, INT8_BACKBONE_META } from '../src/detector/detector.js';
import { leaveOneOutScores } from '../src/detector/calibrate.js';
import { fitStore, type FitStoreResult } from '../src/fit/fit-store.js';
import { SharedDirBlobStore } from '../src/queue/blob-store.js';
import { QueueClient } from '../src/queue/client.js';
import { createServer } from '../src/server/index.js';
import { TemplateStore } from '../src/store/index.js';
import { runCli } from './helpers/cli.js';
import { expectHetmm } from './helpers/errors.js';
import { datasetsDir, listImages, tempDir } from './helpers/io-paths.js';
import { TestRedis, redisAvailable } from './helpers/redis-server.js';
import { addNormal, auth, postImage, startServer, TEST_TOKEN, type RunningServer } from './helpers/server.js';
import { writeSidecarStore } from './helpers/store-fixtures.js';
import { startWorker, type WorkerProcess } from './helpers/worker-process.js';

const tmp = tempDir('int8-default');
const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle');
const train = listImages(path.join(bottle, 'train/good'));
const broken = listImages(path.join(bottle, 'test/broken_large'))[0]!;
const goodTest = listImages(path.join(bottle, 'test/good'))[0]!;
const int8File = path.join(tmp, 'line.hetmm');
const floatFile = path.join(tmp, 'ref.hetmm');
/** the same templates as a version 2 store with sidecar files (as hetmm wrote int8 stores before format version 3) */
const legacyFile = path.join(tmp, 'legacy', 'old.hetmm');
const sidecars = ['old.int8.onnx', 'old.int8.json'];
let fitted: FitStoreResult;

/** The store copied into `dir` (a deployment elsewhere): one file. */
function copyDeployment(dir: string): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(int8File, path.join(dir, 'line.hetmm'));
  return path.join(dir, 'line.hetmm');
}

/** The version 2 store and some of its sidecar files copied into `dir`. */
function copyLegacy(dir: string, withSidecars: readonly string[]): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(legacyFile, path.join(dir, 'old.hetmm'));
  for (const f of withSidecars) copyFileSync(path.join(path.dirname(legacyFile), f), path.join(dir, f));
  return path.join(dir, 'old.hetmm');
}

before(async () => {
  fitted = await fitStore({ preset: 'bottle' }, { files: train.slice(0, 4), output: int8File, calibrationSamples: 4 });
  mkdirSync(path.dirname(legacyFile), { recursive: true });
  await writeSidecarStore(int8File, legacyFile);
  const reference = await fitStore({ preset: 'bottle', precision: 'float' }, { files: train.slice(0, 2), output: floatFile, calibrate: false });
  reference.detector.dispose();
});

after(() => fitted?.detector.dispose());

test('fitStore defaults to int8 end to end: the backbone quantised on the normals and embedded in the store, the threshold from that pipeline', async () => {
  assert.equal(fitted.precision, 'int8');
  // one file: format version 3 with the model inside, nothing beside it
  assert.deepEqual(readdirSync(tmp).filter((f) => f.startsWith('line')), ['line.hetmm']);
  assert.equal(readFileSync(int8File).readUInt32LE(8), 3);
  const stored = await TemplateStore.load(int8File);
  assert.equal(fitted.int8Backbone?.bytes, stored.model?.bytes.length);
  assert.equal(fitted.int8Backbone?.sha256, stored.identity.modelSha256);
  assert.equal(stored.model?.sha256, stored.identity.modelSha256);
  assert.ok(stored.model!.bytes.length > 1e6);
  assert.equal(fitted.int8Backbone?.calibrationImages, 4);
  assert.ok(fitted.seconds.quantize > 0);
  assert.equal(stored.meta[INT8_BACKBONE_META], 'embedded');
  assert.equal(stored.identity.name, 'resnet50v2-imagenet-l123-int8');

  // Opened by file, the store runs its int8 backbone and the matching calibration used: the stored
  // leave-one-out scores are exactly what the reopened pipeline computes (calibration parity).
  const reopened = await Detector.open({ store: int8File });
  try {
    assert.equal(reopened.backbone.modelPath, `${int8File}#int8-${stored.model!.sha256.slice(0, 16)}`);
    const matching = reopened.backend.precision ?? 'float';
    assert.equal(matching, fitted.detector.backend.precision ?? 'float');
    assert.equal(stored.meta.threshold !== undefined, true);
    const threshold = stored.meta.threshold as { scores: number[]; method: string };
    assert.equal(threshold.method.includes('int8 matching'), matching === 'int8', threshold.method);
    assert.deepEqual((await leaveOneOutScores(reopened)).scores, threshold.scores);
    // the detector fitStore returns predicts like the reopened store
    assert.equal((await reopened.predict(broken)).score, (await fitted.detector.predict(broken)).score);
  } finally {
    reopened.dispose();
  }
});

test('precision float fits the float reference (no model inside, version 2); predict follows each store', async () => {
  assert.equal(readFileSync(floatFile).readUInt32LE(8), 2);
  assert.equal((await TemplateStore.load(floatFile)).model, undefined);
  const float = await Detector.open({ store: floatFile });
  try {
    assert.equal(float.store.identity.name, 'resnet50v2-imagenet-l123');
    const r = await runCli('predict', '-t', floatFile, broken, '--json', '--quiet');
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { score: number }).score, (await float.predict(broken)).score);
  } finally {
    float.dispose();
  }
  const r = await runCli('predict', '-t', int8File, broken, '--json', '--quiet');
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { score: number }).score, (await fitted.detector.predict(broken)).score);
  const info = await runCli('info', int8File);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, /precision {2}int8 end to end \(int8 backbone embedded, \d+\.\d MiB\)/);
});

test('a version 2 store with sidecar files still loads (also through a symlink in another directory); copied without them it fails with one clear error naming the missing file (library, predict, info, serve)', async () => {
  const whole = copyLegacy(path.join(tmp, 'whole'), sidecars);
  const d = await Detector.open({ store: whole });
  assert.equal(d.backbone.modelPath, path.join(tmp, 'whole', 'old.int8.onnx'));
  assert.equal((await d.predict(broken)).score, (await fitted.detector.predict(broken)).score);
  d.dispose();
  const info = await runCli('info', whole);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, /precision {2}int8 end to end \(int8 backbone old\.int8\.onnx \+ old\.int8\.json beside the store\)/);
  // finding 5: a symlink elsewhere finds the sidecars beside its target
  mkdirSync(path.join(tmp, 'links'), { recursive: true });
  const link = path.join(tmp, 'links', 'linked.hetmm');
  symlinkSync(whole, link);
  const r = await runCli('predict', '-t', link, broken, '--json', '--quiet');
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { score: number }).score, (await fitted.detector.predict(broken)).score);

  const bare = copyLegacy(path.join(tmp, 'bare'), []);
  const half = copyLegacy(path.join(tmp, 'half'), ['old.int8.onnx']);
  await assert.rejects(Detector.open({ store: bare }), expectHetmm('E_MODEL_NOT_FOUND', 'old.int8.onnx', 'old.int8.json', 'bare'));
  await assert.rejects(Detector.open({ store: half }), expectHetmm('E_MODEL_NOT_FOUND', `'${path.join(tmp, 'half', 'old.int8.json')}' is missing`));
  for (const argv of [['predict', '-t', bare, broken], ['info', bare]]) {
    const r = await runCli(...argv);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /^hetmm \w+: error: template store .* was fitted with the int8 backbone old\.int8\.onnx, but .* missing/);
    assert.ok(!/\n\s+at /.test(r.stderr), r.stderr);
  }
  await assert.rejects(createServer({ stores: [bare], logger: false }), expectHetmm('E_MODEL_NOT_FOUND', 'old.int8.onnx'));
});

test('compress keeps an int8 store int8: its backbone scores the recalibration and is embedded in the output (a version 2 store\'s sidecar model too)', async () => {
  const model = (await TemplateStore.load(int8File)).model!;
  for (const source of [int8File, legacyFile]) {
    const dir = path.join(tmp, `compressed-${path.basename(source, '.hetmm')}`);
    const out = path.join(dir, 'small.hetmm');
    mkdirSync(dir, { recursive: true });
    const r = await runCli('compress', '-t', source, '--size', '2', '-o', out, '--quiet');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readdirSync(dir), ['small.hetmm']);
    const small = await Detector.open({ store: out });
    try {
      assert.equal(small.store.meta[INT8_BACKBONE_META], 'embedded');
      assert.ok(Buffer.from(small.store.model!.bytes).equals(Buffer.from(model.bytes)));
      assert.equal(small.store.count, 2);
      const method = (small.store.meta.threshold as { method: string }).method;
      assert.match(method, /against the PTS sheets/);
      // recalibrated with the matching its predictions use (the line service's rule for an int8 store)
      assert.equal(method.includes('int8 matching'), (small.backend.precision ?? 'float') === 'int8', method);
      assert.ok((await small.predict(broken)).score > 0.5);
    } finally {
      small.dispose();
    }
  }
});

test('eval --templates runs a store fitted int8 end to end with its int8 backbone; --precision float refuses it', async () => {
  const dir = path.join(tmp, 'eval');
  mkdirSync(dir, { recursive: true });
  copyFileSync(int8File, path.join(dir, 'bottle.hetmm')); // the store carries its int8 backbone
  const r = await runCli('eval', '--data', path.dirname(bottle), '--templates', dir, '--json', '-', '--quiet');
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { categories: Array<{ name: string; image_auroc: number; templates: number }> };
  assert.equal(report.categories[0]!.templates, 4);
  assert.equal(report.categories[0]!.image_auroc, 1);
  const float = await runCli('eval', '--data', path.dirname(bottle), '--templates', dir, '--precision', 'float', '--quiet');
  assert.equal(float.code, 4, float.stderr);
  assert.match(float.stderr, /int8/);
});

describe('serve with an int8 store and a float store side by side', () => {
  let server: RunningServer;
  let served: string;
  before(async () => {
    served = copyDeployment(path.join(tmp, 'serve'));
    // --model is the float backbone (float stores, new lines); the int8 store still runs its own
    server = await startServer({ stores: [served, floatFile], token: TEST_TOKEN });
  });
  after(async () => {
    await server?.close();
  });

  it('predicts over HTTP as the in-process detectors do, and a hot update is embedded with the int8 backbone', async () => {
    const lines = (await (await fetch(`${server.base}/v1/lines`)).json()) as { lines: Array<{ name: string; precision: string; backbone: string }> };
    const byName = new Map(lines.lines.map((l) => [l.name, l]));
    assert.equal(byName.get('line')?.precision, 'int8');
    assert.equal(byName.get('line')?.backbone, 'resnet50v2-imagenet-l123-int8');
    assert.equal(byName.get('ref')?.precision, 'float');

    const predictOver = async (line: string, file: string): Promise<{ score: number; templates: number }> => {
      const r = await postImage(server.base, line, readFileSync(file), '?maps=none');
      assert.equal(r.status, 200, await r.clone().text());
      return (await r.json()) as { score: number; templates: number };
    };
    assert.equal((await predictOver('line', broken)).score, (await fitted.detector.predict(broken)).score);
    const float = await Detector.open({ store: floatFile });
    try {
      assert.equal((await predictOver('ref', broken)).score, (await float.predict(broken)).score);
    } finally {
      float.dispose();
    }

    // hot update: the fifth training image, embedded on the line's int8 feature thread and appended to the file
    const added = train[4]!;
    const before = (await predictOver('line', added)).score;
    const up = await addNormal(server.base, 'line', readFileSync(added), 'added.png', auth);
    assert.equal(up.status, 200, await up.clone().text());
    assert.equal(((await up.json()) as { templates: number }).templates, 5);
    const after = await predictOver('line', added);
    assert.equal(after.templates, 5);
    // it matches itself (int8 rounding leaves a few 1e-3): embedded by the same int8 backbone as the store's
    assert.ok(after.score < 1e-2 && before > 0.1, `${before} -> ${after.score}`);
    // and the file now holds exactly what an in-process int8 detector computes from it
    const local = await Detector.open({ store: served });
    try {
      assert.equal(local.store.count, 5);
      assert.equal((await local.predict(added)).score, after.score);
      assert.equal((await local.predict(goodTest)).score, (await predictOver('line', goodTest)).score);
    } finally {
      local.dispose();
    }
  });

  it('precision float refuses an int8 store (no float/int8 mixing)', async () => {
    await assert.rejects(createServer({ stores: [served], precision: 'float', logger: false }), expectHetmm('E_STORE_MISMATCH', 'int8'));
  });
});

test('a line created over HTTP is int8 end to end (quantised on a thread on the uploads, embedded in its one file); ?precision=float fits the float model; deleting removes the file', async () => {
  const dataDir = path.join(tmp, 'lines');
  const server = await startServer({ dataDir, token: TEST_TOKEN });
  try {
    const create = async (query: string): Promise<Set<string>> => {
      const form = new FormData();
      for (const file of train.slice(0, 3)) form.append('images', new Blob([new Uint8Array(readFileSync(file))], { type: 'image/png' }), path.basename(file));
      const r = await fetch(`${server.base}/v1/lines?${query}`, { method: 'POST', headers: auth, body: form });
      assert.equal(r.status, 202, await r.clone().text());
      const { job } = (await r.json()) as { job: { url: string } };
      const stages = new Set<string>();
      for (;;) {
        const state = (await (await fetch(`${server.base}${job.url}`)).json()) as { state: string; progress: { stage: string }; error?: unknown };
        stages.add(state.progress.stage);
        if (state.state === 'done') return stages;
        assert.equal(state.state, 'running', JSON.stringify(state));
        await new Promise((res) => setTimeout(res, 50));
      }
    };
    assert.ok((await create('name=made&preset=bottle')).has('quantize'));
    assert.deepEqual(readdirSync(dataDir).filter((f) => f.startsWith('made')), ['made.hetmm']);
    assert.equal((await TemplateStore.load(path.join(dataDir, 'made.hetmm'))).model?.sha256.length, 64);
    const info = (await (await fetch(`${server.base}/v1/lines/made`)).json()) as { precision: string; backbone: string };
    assert.deepEqual([info.precision, info.backbone], ['int8', 'resnet50v2-imagenet-l123-int8']);
    const served = (await (await postImage(server.base, 'made', readFileSync(broken), '?maps=none')).json()) as { score: number };
    const local = await Detector.open({ store: path.join(dataDir, 'made.hetmm') });
    try {
      assert.match(local.backbone.modelPath, /made\.hetmm#int8-[0-9a-f]{16}$/);
      assert.equal(served.score, (await local.predict(broken)).score);
    } finally {
      local.dispose();
    }
    assert.ok(!(await create('name=plain&preset=bottle&precision=float')).has('quantize'));
    assert.equal((await TemplateStore.load(path.join(dataDir, 'plain.hetmm'))).model, undefined);
    assert.equal(((await (await fetch(`${server.base}/v1/lines/plain`)).json()) as { precision: string }).precision, 'float');
    assert.equal((await fetch(`${server.base}/v1/lines/made`, { method: 'DELETE', headers: auth })).status, 204);
    assert.ok(!existsSync(path.join(dataDir, 'made.hetmm')));
  } finally {
    await server.close();
  }
});

describe('queue workers with an int8 store (real redis-server)', { skip: redisAvailable || process.env.CI ? false : 'no redis-server installed (CI installs it and never skips)' }, () => {
  let redis: TestRedis;
  let worker: WorkerProcess | undefined;
  let client: QueueClient | undefined;
  const dataDir = path.join(tmp, 'queue');
  before(async () => {
    copyDeployment(dataDir);
    redis = await TestRedis.start();
    worker = await startWorker(redis.url, dataDir, { args: ['--threads', '1'] });
    client = await QueueClient.open({ redisUrl: redis.url, blobs: new SharedDirBlobStore(path.join(dataDir, '.blobs')) });
  });
  after(async () => {
    await client?.close();
    if (worker !== undefined && worker.child.exitCode === null) worker.child.kill('SIGKILL');
    await worker?.exited;
    await redis?.stop();
  });

  it('predicts and embeds hot updates with the store int8 backbone, bit for bit like in-process', async () => {
    const image = (file: string): { bytes: Buffer; name: string } => ({ bytes: readFileSync(file), name: path.basename(file) });
    const first = await client!.predict('line', image(broken));
    assert.equal(first.score, (await fitted.detector.predict(broken)).score);
    const added = train[4]!;
    const update = await client!.addNormals('line', [image(added)]);
    assert.equal(update.templates, 5);
    const self = await client!.predict('line', image(added));
    assert.ok(self.score < 1e-2, String(self.score));
    const local = await Detector.open({ store: path.join(dataDir, 'line.hetmm') });
    try {
      assert.equal(local.store.count, 5);
      assert.equal(self.score, (await local.predict(added)).score);
    } finally {
      local.dispose();
    }
  });
});
