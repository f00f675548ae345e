/**
 * The installed-package test: `npm pack` (prepack stages the N-API prebuild
 * and the demo set), then install the tarball into fresh projects in the temp
 * dir with no ../shared beside them, as a user would:
 *
 * - project `blocked`: `npm install --ignore-scripts`: the prebuild gives the
 *   fast backend; CLI and ESM import score exactly as the checkout; the
 *   typings resolve under node16, nodenext, bundler and node10; require()
 *   works; the model npm package is found by package resolution;
 * - project `scripts`: `npm install` with install scripts allowed and
 *   onnxruntime-node's GPU download switched off the documented way
 *   (ONNXRUNTIME_NODE_INSTALL=skip): exits 0, no EBADENGINE on a supported
 *   Node, and `npx hetmm demo` prints the README's table;
 * - both tarballs pass `npm publish --dry-run`.
 *
 * HETMM_CACHE_DIR is filled through a loopback model host. Runs after the
 * other tests (npm test), not in parallel with them. HETMM_TEST_TARBALL=PATH
 * installs that tarball instead of packing (CI packs once and installs it
 * under each Node line). Needs the npm registry for the dependencies (allowed
 * in CI); a few minutes.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { datasetsDir, repoRoot, tempDir } from '../helpers/io-paths.js';
import { startModelHost, type ModelHost } from '../helpers/model-host.js';

const exec = promisify(execFile);
const tmp = tempDir('installed');
/** installed with --ignore-scripts */
const project = path.join(tmp, 'project');
/** installed with install scripts allowed */
const scriptsProject = path.join(tmp, 'scripts-project');
const cache = path.join(tmp, 'cache');
const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle');
const train = path.join(bottle, 'train/good');
const testImages = ['broken_large/000.png', 'broken_large/003.png', 'good/000.png', 'good/004.png'].map((f) => path.join(bottle, 'test', f));
const rootPackage = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string }; exports: Record<string, unknown> };
let host: ModelHost;
let tarball: string;
let scriptsInstall: { stdout: string; stderr: string };
after(async () => {
  await host?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** The environment of a user's machine: nothing hetmm-specific but the cache. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HETMM_') && !k.startsWith('npm_') && !k.startsWith('ONNXRUNTIME_')) env[k] = v;
  return { ...env, HETMM_CACHE_DIR: cache, ...extra };
}

async function npmInstall(dir: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  return exec('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...args, tarball], { cwd: dir, env, maxBuffer: 1 << 26 });
}

/** What packing could leave behind: every untracked or ignored path, and the checkout's own addon build. */
async function workTreeState(): Promise<{ status: string; addon: number | undefined }> {
  const { stdout } = await exec('git', ['status', '--porcelain', '--ignored', '--untracked-files=normal'], { cwd: repoRoot });
  const addon = path.join(repoRoot, 'build', 'Release', 'hetmm_native.node');
  return { status: stdout, addon: existsSync(addon) ? statSync(addon).mtimeMs : undefined };
}
let packEffect: { before: Awaited<ReturnType<typeof workTreeState>>; after: Awaited<ReturnType<typeof workTreeState>> } | undefined;

before(async () => {
  const given = process.env.HETMM_TEST_TARBALL;
  if (given !== undefined && given !== '') tarball = path.resolve(given);
  else {
    const before = await workTreeState();
    // (prepack's build output shares stdout with --json, so the tarball is found by name)
    await exec('npm', ['pack', '--pack-destination', tmp], { cwd: repoRoot, maxBuffer: 1 << 26 });
    tarball = path.join(tmp, readdirSync(tmp).find((f) => /^hetmm-.*\.tgz$/.test(f))!);
    packEffect = { before, after: await workTreeState() };
  }
  const [, scripts] = await Promise.all([
    npmInstall(project, ['--ignore-scripts'], userEnv()),
    // the documented way to keep onnxruntime-node's postinstall from fetching GPU files (docs/INSTALL.md)
    npmInstall(scriptsProject, ['--foreground-scripts'], userEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip' })),
  ]);
  scriptsInstall = scripts;
  host = await startModelHost();
});

const installedCli = (): string => path.join(project, 'node_modules', 'hetmm', 'dist', 'src', 'cli', 'main.js');

test('installed package: no build ran, the prebuild and no ../shared are there', () => {
  const pkg = path.join(project, 'node_modules', 'hetmm');
  assert.equal(existsSync(path.join(pkg, 'build')), false, 'nothing was compiled at install');
  assert.deepEqual(readdirSync(path.join(pkg, 'prebuilds', `${process.platform}-${process.arch}`)), ['hetmm.node']);
  assert.equal(existsSync(path.resolve(project, '../shared')), false);
});

test('npm pack leaves nothing in the work tree and keeps the checkout\'s own addon build', () => {
  if (packEffect !== undefined) {
    assert.equal(packEffect.after.status, packEffect.before.status);
    assert.equal(packEffect.after.addon, packEffect.before.addon, 'build/Release/hetmm_native.node was not rebuilt');
  }
  // (with HETMM_TEST_TARBALL, CI packed this checkout before: what its pack left is checked)
  assert.equal(existsSync(path.join(repoRoot, 'prebuilds')), false);
  assert.equal(existsSync(path.join(repoRoot, 'demo')), false);
  assert.equal(existsSync(path.join(repoRoot, 'build', 'Release', 'hetmm_native.node')), true);
});

test('installed with scripts allowed: exits 0, hetmm\'s install script finds the prebuild, no EBADENGINE on a supported Node', () => {
  const log = scriptsInstall.stdout + scriptsInstall.stderr;
  const pkg = path.join(scriptsProject, 'node_modules', 'hetmm');
  assert.match(log, /hetmm@[^\s]+ install/, 'hetmm\'s install script ran');
  assert.match(log, /onnxruntime-node@[^\s]+ postinstall/, 'onnxruntime-node\'s postinstall ran (and skipped its download)');
  assert.doesNotMatch(log, /^hetmm: the native fast backend did not build/m);
  assert.equal(existsSync(path.join(pkg, 'build')), false, 'the prebuild loaded: nothing was compiled');
  assert.equal(existsSync(path.join(pkg, 'demo', 'ATTRIBUTION.md')), true);
  const semver = createRequire(path.join(repoRoot, 'package.json'))('semver') as { satisfies(v: string, range: string): boolean };
  if (semver.satisfies(process.versions.node, rootPackage.engines.node)) assert.doesNotMatch(log, /EBADENGINE/);
  // an unsupported Node (e.g. 20, the development machine's) is told so
  else assert.match(log, /EBADENGINE[\s\S]*package: 'hetmm@/);
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

let modelTarball = '';
test('installed package: the model npm package is found by package resolution, with no cache and no download', async () => {
  const { stdout: packed } = await exec(process.execPath, [path.join(repoRoot, 'scripts', 'pack-model.mjs'), tmp], { cwd: repoRoot });
  modelTarball = packed.trim();
  await exec('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', modelTarball], { cwd: project, env: userEnv(), maxBuffer: 1 << 26 });
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

/** The score table of the README's demo output: image, score, verdict. */
function readmeDemoTable(): { image: string; score: number; verdict: string }[] {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const block = /Output of `npx hetmm demo`[\s\S]*?```\n([\s\S]*?)```/.exec(readme);
  assert.ok(block, 'the README shows the demo output');
  return demoRows(block[1]!);
}

function demoRows(text: string): { image: string; score: number; verdict: string }[] {
  return [...text.matchAll(/^(\S+\/\S+)\s+(\d\.\d{4})\s+(DEFECT|OK)$/gm)].map((m) => ({ image: m[1]!, score: Number(m[2]), verdict: m[3]! }));
}

test('installed with scripts allowed: npx hetmm demo runs the bundled set and prints the README\'s table', async () => {
  const { stdout } = await exec('npx', ['--no-install', 'hetmm', 'demo', '-o', path.join(tmp, 'demo-out')], { cwd: scriptsProject, env: userEnv(), maxBuffer: 1 << 26 });
  assert.ok(stdout.includes(`from ${path.join(scriptsProject, 'node_modules', 'hetmm', 'demo', 'hazelnut')} `), stdout);
  assert.match(stdout, /backend fast/);
  assert.match(stdout, /every defective image scores above every good one/);
  const printed = demoRows(stdout);
  const readme = readmeDemoTable();
  assert.equal(printed.length, 23);
  assert.deepEqual(printed.map((r) => [r.image, r.verdict]), readme.map((r) => [r.image, r.verdict]));
  // the same scores up to the CPU: int8 matching runs where the CPU has AVX-512 VNNI, float matching elsewhere
  for (const [i, r] of printed.entries()) assert.ok(Math.abs(r.score - readme[i]!.score) <= 0.01, `${r.image}: ${r.score} vs README ${readme[i]!.score}`);
  assert.equal(host.requests, 1, 'the demo used the cached model');
});

test('installed package: the typings resolve under node16, nodenext, bundler and node10 for the root and every subpath', async () => {
  const subpaths = Object.keys(rootPackage.exports).filter((k) => k !== './package.json').map((k) => (k === '.' ? 'hetmm' : `hetmm/${k.slice(2)}`));
  const source = subpaths.map((s, i) => `import * as m${i} from '${s}';\nexport const k${i}: string[] = Object.keys(m${i});\n`).join('');
  writeFileSync(path.join(project, 'typings.ts'), source);
  const tsc = path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  const settings: Array<[string, string]> = [['node16', 'node16'], ['nodenext', 'nodenext'], ['bundler', 'esnext'], ['node10', 'commonjs']];
  for (const [moduleResolution, module] of settings) {
    const config = path.join(project, `tsconfig.${moduleResolution}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        // the project's own @types (e.g. @types/long, through protobufjs) and, standing in for the user's @types/node, the checkout's
        compilerOptions: { module, moduleResolution, target: 'es2022', strict: true, esModuleInterop: true, noEmit: true, skipLibCheck: false, typeRoots: [path.join(project, 'node_modules', '@types'), path.join(repoRoot, 'node_modules', '@types')] },
        files: ['typings.ts'],
      }),
    );
    const run = await exec(process.execPath, [tsc, '-p', config], { cwd: project, env: userEnv() }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? String(e) }));
    assert.equal(run.stdout.trim(), '', `moduleResolution ${moduleResolution}: ${run.stdout}`);
  }
});

test('installed package: require(\'hetmm\') from CommonJS works on this Node', async () => {
  const script = path.join(project, 'require.cjs');
  writeFileSync(script, "const hetmm = require('hetmm'); console.log(JSON.stringify({ version: hetmm.version, detector: typeof hetmm.Detector }));\n");
  const { stdout } = await exec(process.execPath, [script], { cwd: project, env: userEnv() });
  assert.deepEqual(JSON.parse(stdout), { version: JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version, detector: 'function' });
});

test('npm publish --dry-run passes for the hetmm and the model package tarballs', async () => {
  assert.ok(modelTarball !== '', 'the model package was packed above');
  for (const file of [tarball, modelTarball]) {
    const run = await exec('npm', ['publish', '--dry-run', file], { cwd: tmp, env: userEnv(), maxBuffer: 1 << 26 });
    assert.match(run.stdout + run.stderr, /\(dry-run\)/);
  }
});
