/**
 * The installed-package test: `npm pack` (prepack builds the N-API prebuild),
 * install the tarball into a fresh project in the temp dir with install
 * scripts blocked and no ../shared beside it, fill HETMM_CACHE_DIR through a
 * loopback model host, then run the installed CLI (fit + predict on the
 * bottle images) and an ESM script importing 'hetmm'. Both must load the fast
 * backend (from the prebuild: nothing was compiled) and give the scores of
 * this checkout exactly.
 *
 * Runs after the other tests (npm test), not in parallel with them: prepack
 * rewrites dist/ and prebuilds/. Needs the npm registry for the dependencies
 * (allowed in CI); about 1-2 minutes.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { datasetsDir, repoRoot, tempDir } from '../helpers/io-paths.js';
import { startModelHost, type ModelHost } from '../helpers/model-host.js';

const exec = promisify(execFile);
const tmp = tempDir('installed');
const project = path.join(tmp, 'project');
const cache = path.join(tmp, 'cache');
const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle');
const train = path.join(bottle, 'train/good');
const testImages = ['broken_large/000.png', 'broken_large/003.png', 'good/000.png', 'good/004.png'].map((f) => path.join(bottle, 'test', f));
let host: ModelHost;
after(async () => {
  await host?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** The environment of a user's machine: nothing hetmm-specific but the cache. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HETMM_') && !k.startsWith('npm_')) env[k] = v;
  return { ...env, HETMM_CACHE_DIR: cache, ...extra };
}

before(async () => {
  mkdirSync(project, { recursive: true });
  // (prepack's build output shares stdout with --json, so the tarball is found by name)
  await exec('npm', ['pack', '--pack-destination', tmp], { cwd: repoRoot, maxBuffer: 1 << 26 });
  const tarball = path.join(tmp, readdirSync(tmp).find((f) => /^hetmm-.*\.tgz$/.test(f))!);
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  await exec('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: project, env: userEnv(), maxBuffer: 1 << 26 });
  host = await startModelHost();
});

const installedCli = (): string => path.join(project, 'node_modules', 'hetmm', 'dist', 'src', 'cli', 'main.js');

test('installed package: no build ran, the prebuild and no ../shared are there', () => {
  const pkg = path.join(project, 'node_modules', 'hetmm');
  assert.equal(existsSync(path.join(pkg, 'build')), false, 'nothing was compiled at install');
  assert.deepEqual(readdirSync(path.join(pkg, 'prebuilds', `${process.platform}-${process.arch}`)), ['hetmm.node']);
  assert.equal(existsSync(path.resolve(project, '../shared')), false);
});

test('installed package: the cache is filled through the loopback model host', async () => {
  const { stdout } = await exec(process.execPath, [installedCli(), 'models', 'pull', '--quiet'], { cwd: project, env: userEnv({ HETMM_MODEL_HOST: host.url }) });
  assert.equal(stdout.trim(), path.join(cache, 'resnet50v2-imagenet-l123.onnx'));
  assert.equal(host.requests, 1);
});

async function fitAndPredict(cli: string, cwd: string, env: NodeJS.ProcessEnv, store: string): Promise<{ fit: string; scores: number[]; stderr: string }> {
  const fit = await exec(process.execPath, [cli, 'fit', train, '-o', store, '--preset', 'bottle'], { cwd, env });
  const predict = await exec(process.execPath, [cli, 'predict', '-t', store, ...testImages, '--json'], { cwd, env });
  const scores = predict.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { score: number }).score);
  return { fit: fit.stdout, scores, stderr: fit.stderr + predict.stderr };
}

test('installed package: CLI and ESM import use the fast backend and score exactly as the checkout', async () => {
  const installed = await fitAndPredict(installedCli(), project, userEnv(), path.join(tmp, 'installed.hetmm'));
  assert.match(installed.fit, /backend fast/);
  assert.match(installed.stderr, /backend fast/);
  assert.doesNotMatch(installed.stderr, /HETMM_BACKEND_FALLBACK|reference backend/);
  assert.equal(host.requests, 1, 'the cached model is used, nothing downloaded again');

  const checkout = await fitAndPredict(path.join(repoRoot, 'dist', 'src', 'cli', 'main.js'), repoRoot, { ...process.env, HETMM_BACKEND: 'fast' }, path.join(tmp, 'checkout.hetmm'));
  assert.deepEqual(installed.scores, checkout.scores);
  assert.equal(installed.scores.length, testImages.length);

  const script = path.join(project, 'score.js');
  writeFileSync(
    script,
    `import { Detector, version } from 'hetmm';
const detector = await Detector.open({ store: ${JSON.stringify(path.join(tmp, 'installed.hetmm'))} });
const scores = [];
for (const file of ${JSON.stringify(testImages)}) scores.push((await detector.predict(file)).score);
console.log(JSON.stringify({ version, backend: detector.backend.name, scores }));
detector.dispose();
`,
  );
  const { stdout } = await exec(process.execPath, [script], { cwd: project, env: userEnv() });
  const esm = JSON.parse(stdout) as { version: string; backend: string; scores: number[] };
  assert.equal(esm.backend, 'fast');
  assert.deepEqual(esm.scores, checkout.scores);
});

test('installed package: the model npm package is found by package resolution, with no cache and no download', async () => {
  const { stdout: packed } = await exec(process.execPath, [path.join(repoRoot, 'scripts', 'pack-model.mjs'), tmp], { cwd: repoRoot });
  await exec('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', packed.trim()], { cwd: project, env: userEnv(), maxBuffer: 1 << 26 });
  const emptyCache = path.join(tmp, 'empty-cache');
  const env = userEnv({ HETMM_CACHE_DIR: emptyCache, HETMM_MODEL_HOST: host.url });
  const { stdout } = await exec(process.execPath, [installedCli(), 'models', 'verify', '--json'], { cwd: project, env });
  const verified = JSON.parse(stdout) as { path: string; source: string; ok: boolean };
  assert.equal(verified.source, 'package');
  assert.equal(verified.path, path.join(project, 'node_modules', '@hetmm', 'model-resnet50v2', 'resnet50v2-imagenet-l123.onnx'));
  assert.equal(verified.ok, true);
  const predict = await exec(process.execPath, [installedCli(), 'predict', '-t', path.join(tmp, 'installed.hetmm'), testImages[0]!, '--json'], { cwd: project, env });
  assert.ok(Number.isFinite((JSON.parse(predict.stdout) as { score: number }).score));
  assert.equal(existsSync(emptyCache), false, 'nothing was downloaded into the cache');
  assert.equal(host.requests, 1);
});
