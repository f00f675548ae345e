/**
 * The model store (src/models): resolution order, download from a loopback
 * host verified by sha256, atomic cache writes, and the CLI's `models`
 * command and exit code 4 when no model is anywhere. No test leaves loopback.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { isHetmmError } from '../src/errors.js';
import { cachedModelPath, locateModel, MODELS, modelEntry, pullModel, resolveModel, verifyModelFile } from '../src/models/index.js';
import { datasetsDir, defaultModelPath, repoRoot, tempDir } from './helpers/io-paths.js';
import { deadHostUrl, startModelHost } from './helpers/model-host.js';

const tmp = tempDir('models');
after(() => rmSync(tmp, { recursive: true, force: true }));
const entry = modelEntry();
const nowhere = path.join(tmp, 'nowhere');
/** an environment where the model is nowhere local */
const emptyEnv = (cache: string) => ({ HETMM_CACHE_DIR: cache, HETMM_MODELS_DIR: nowhere });
const noPackage = () => undefined;
const leftovers = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.part')) : []);

test('manifest: the shipped entry matches the development model file', async () => {
  assert.equal(MODELS[0]!.name, entry.name);
  assert.deepEqual(await verifyModelFile(entry, defaultModelPath), { ok: true });
});

test('locate: cache, then local models directory, then the npm package; sizes are checked', () => {
  const cache = path.join(tmp, 'order-cache');
  const pkg = path.join(tmp, 'order-pkg');
  mkdirSync(cache, { recursive: true });
  mkdirSync(pkg, { recursive: true });
  symlinkSync(defaultModelPath, path.join(pkg, entry.file));
  const env = emptyEnv(cache);
  const viaPackage = locateModel({ env, resolvePackage: (name) => (name === entry.npmPackage ? pkg : undefined) });
  assert.equal(viaPackage.source, 'package');
  assert.deepEqual(viaPackage.tried, [path.join(cache, entry.file), path.join(nowhere, entry.file), path.join(pkg, entry.file)]);
  const local = locateModel({ env: { HETMM_CACHE_DIR: cache, HETMM_MODELS_DIR: path.dirname(defaultModelPath) }, resolvePackage: noPackage });
  assert.equal(local.source, 'local');
  writeFileSync(path.join(cache, entry.file), 'partial');
  assert.equal(locateModel({ env, resolvePackage: () => pkg }).source, 'package', 'a cache file of the wrong size is passed over');
  rmSync(path.join(cache, entry.file));
  symlinkSync(defaultModelPath, path.join(cache, entry.file));
  assert.equal(locateModel({ env, resolvePackage: () => pkg }).source, 'cache');
  assert.throws(
    () => locateModel({ env, resolvePackage: noPackage, name: 'nope' }),
    (e: unknown) => isHetmmError(e) && e.code === 'E_ARGUMENT' && /resnet50v2-imagenet-l123/.test(e.message),
  );
});

test('locate: not found says the three ways to get the model today, and that its npm package is not on the registry yet', () => {
  const cache = path.join(tmp, 'advice-cache');
  assert.throws(
    () => locateModel({ env: emptyEnv(cache), resolvePackage: noPackage }),
    (e: unknown) => {
      assert.ok(isHetmmError(e) && e.code === 'E_MODEL_NOT_FOUND');
      const m = e.message;
      assert.match(m, new RegExp(`copy ${entry.file} \\(sha256 ${entry.sha256}\\) to ${path.join(cache, entry.file).replace(/[/.]/g, '\\$&')}`));
      assert.match(m, /HETMM_MODEL_HOST=URL hetmm models pull resnet50v2-imagenet-l123/);
      assert.match(m, /set HETMM_MODEL=PATH \(or --model PATH\)/);
      // the package is not published: the advice must not send users to the registry for it
      assert.doesNotMatch(m, /install the npm package @hetmm\/model-resnet50v2[,.]/);
      assert.match(m, /@hetmm\/model-resnet50v2 is not on the npm registry yet/);
      assert.match(m, /npm run pack:model/);
      assert.equal(m.split('\n').length, 1);
      return true;
    },
  );
});

test('download: verified, written atomically into the cache; the next resolve uses the cache', async () => {
  const host = await startModelHost();
  try {
    const cache = path.join(tmp, 'ok-cache');
    const env = emptyEnv(cache);
    const progress: number[] = [];
    const got = await resolveModel({ env, resolvePackage: noPackage, host: host.url, onProgress: (r) => progress.push(r) });
    assert.equal(got.source, 'download');
    assert.equal(got.path, cachedModelPath(entry, { env }));
    assert.deepEqual(await verifyModelFile(entry, got.path), { ok: true });
    assert.equal(progress.at(-1), -1, 'progress ends with the done signal');
    assert.ok(progress.includes(entry.size));
    const again = await resolveModel({ env, resolvePackage: noPackage, host: host.url });
    assert.equal(again.source, 'cache');
    assert.equal(host.requests, 1, 'the second resolve does not download');
    assert.deepEqual(leftovers(cache), []);
  } finally {
    await host.close();
  }
});

test('download: a wrong checksum and a truncated transfer leave nothing in the cache', async () => {
  const host = await startModelHost('corrupt');
  try {
    const cache = path.join(tmp, 'bad-cache');
    const target = path.join(cache, entry.file);
    await assert.rejects(
      pullModel(entry, { host: host.url, target, onProgress: () => {} }),
      (e: unknown) => isHetmmError(e) && e.code === 'E_MODEL_INVALID' && e.message.includes(`expects ${entry.sha256}`) && /nothing was written/.test(e.message),
    );
    host.mode = 'truncate';
    await assert.rejects(
      pullModel(entry, { host: host.url, target, onProgress: () => {} }),
      (e: unknown) => isHetmmError(e) && e.code === 'E_MODEL_NOT_FOUND' && /the transfer ended after \d+ of 34280173 bytes/.test(e.message),
    );
    assert.equal(existsSync(target), false);
    assert.deepEqual(leftovers(cache), []);
  } finally {
    await host.close();
  }
});

test('download: a host that is down gives one line saying what to do', async () => {
  const url = await deadHostUrl();
  const cache = path.join(tmp, 'down-cache');
  await assert.rejects(
    resolveModel({ env: emptyEnv(cache), resolvePackage: noPackage, host: url }),
    (e: unknown) =>
      isHetmmError(e) && e.code === 'E_MODEL_NOT_FOUND' && e.message.startsWith(`could not reach ${url}/${entry.file} (ECONNREFUSED); copy ${entry.file}`) &&
      e.message.includes(path.join(cache, entry.file)) && e.message.includes('HETMM_MODEL') && !e.message.includes('\n'),
  );
});

const cli = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
async function runCliProcess(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, HETMM_MODEL: '', HETMM_MODEL_HOST: '', ...env }, cwd: tmp }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('download: concurrent pulls of one model, in one process and in two, end with one good file', async () => {
  const host = await startModelHost();
  try {
    const cache = path.join(tmp, 'concurrent-cache');
    const target = path.join(cache, entry.file);
    const [a, b] = await Promise.all([pullModel(entry, { host: host.url, target, onProgress: () => {} }), pullModel(entry, { host: host.url, target, onProgress: () => {} })]);
    assert.equal(a, b);
    assert.equal(host.requests, 1, 'one process shares one download');
    rmSync(target);
    const env = { HETMM_CACHE_DIR: cache, HETMM_MODEL_HOST: host.url };
    const runs = await Promise.all([runCliProcess(['models', 'pull', entry.name, '--quiet'], env), runCliProcess(['models', 'pull', entry.name, '--quiet'], env)]);
    for (const r of runs) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), target);
    }
    assert.deepEqual(await verifyModelFile(entry, target), { ok: true });
    assert.deepEqual(leftovers(cache), []);
    const verify = await runCliProcess(['models', 'verify'], { HETMM_CACHE_DIR: cache });
    assert.equal(verify.code, 0, verify.stderr);
    assert.match(verify.stdout, /^ok .* \(cache, sha256/);
  } finally {
    await host.close();
  }
});

test('CLI: no model anywhere and no host: exit 4 with one line; with a loopback host fit downloads once, predict reuses the cache', async () => {
  const cache = path.join(tmp, 'cli-cache');
  const env = { HETMM_CACHE_DIR: cache, HETMM_MODELS_DIR: nowhere };
  const good = path.join(datasetsDir, 'mvtec-bottle-xs/bottle/train/good');
  const store = path.join(tmp, 'cli.hetmm');
  const offline = await runCliProcess(['predict', '-t', store, path.join(good, '000.png')], env);
  assert.equal(offline.code, 4, offline.stderr);
  assert.equal(offline.stderr.trim().split('\n').length, 1, offline.stderr);
  assert.match(offline.stderr, /model not found: .*copy resnet50v2-imagenet-l123\.onnx .* or set HETMM_MODEL=PATH/);
  const host = await startModelHost();
  try {
    const online = { ...env, HETMM_MODEL_HOST: host.url };
    const fit = await runCliProcess(['fit', path.join(good, '000.png'), path.join(good, '001.png'), '-o', store, '--quiet'], online);
    assert.equal(fit.code, 0, fit.stderr);
    assert.equal(host.requests, 1);
    const predict = await runCliProcess(['predict', '-t', store, path.join(good, '002.png'), '--json'], online);
    assert.equal(predict.code, 0, predict.stderr);
    assert.ok(Number.isFinite((JSON.parse(predict.stdout) as { score: number }).score));
    assert.equal(host.requests, 1, 'the second run does not download');
    const where = await runCliProcess(['models', 'path'], env);
    assert.equal(where.stdout.trim(), path.join(cache, entry.file));
  } finally {
    await host.close();
  }
});
