/**
 * How the native addon is found and checked (src/kernels/fast/binding.ts):
 * HETMM_NATIVE_PATH, node-gyp-build's search order, the ABI version, and a
 * portable build (x86 SIMD compiled out, as on arm64) that still works.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { configure } from '../src/config.js';
import { isHetmmError } from '../src/errors.js';
import { findAddon, loadBinding, NATIVE_ABI_VERSION } from '../src/kernels/fast/binding.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'hetmm-native-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('loader: HETMM_NATIVE_PATH naming a missing file is an E_BACKEND error naming it', () => {
  configure({ nativePath: path.join(tmp, 'nope.node') });
  try {
    assert.throws(() => loadBinding(), (e: unknown) => isHetmmError(e) && e.code === 'E_BACKEND' && e.message.includes('nope.node'));
  } finally {
    configure({ nativePath: undefined });
  }
});

test('loader: an addon with another ABI version is refused as stale', () => {
  const fake = path.join(tmp, 'stale.cjs');
  writeFileSync(fake, 'module.exports = { abi: 0, info() {}, matchLayer() {}, pixelGram() {} };');
  configure({ nativePath: fake });
  try {
    assert.throws(
      () => loadBinding(),
      (e: unknown) => isHetmmError(e) && e.code === 'E_BACKEND' && e.message.includes(`ABI version 0, but this hetmm needs ${NATIVE_ABI_VERSION}`),
    );
  } finally {
    configure({ nativePath: undefined });
  }
});

test('loader: build/Release first, then prebuilds/<platform>-<arch>; neither gives the fix in words', () => {
  const pkg = path.join(tmp, 'pkg');
  const prebuilt = path.join(pkg, 'prebuilds', `${process.platform}-${process.arch}`);
  mkdirSync(prebuilt, { recursive: true });
  writeFileSync(path.join(pkg, 'package.json'), '{"name":"hetmm"}');
  assert.throws(() => findAddon(pkg), (e: unknown) => isHetmmError(e) && /no prebuilt addon .* matches/.test(e.message) && /npm rebuild hetmm/.test(e.message));
  writeFileSync(path.join(prebuilt, 'hetmm.node'), '');
  assert.equal(findAddon(pkg), path.join(prebuilt, 'hetmm.node'));
  mkdirSync(path.join(pkg, 'build', 'Release'), { recursive: true });
  writeFileSync(path.join(pkg, 'build', 'Release', 'hetmm_native.node'), '');
  assert.equal(findAddon(pkg), path.join(pkg, 'build', 'Release', 'hetmm_native.node'));
});

test('loader: the checkout loads an addon with the current ABI version', () => {
  assert.equal(loadBinding().abi, NATIVE_ABI_VERSION);
});

test('portable build: with the x86 SIMD compiled out (as on arm64) the generic variant matches the reference', async () => {
  const headers = path.resolve(path.dirname(process.execPath), '..', 'include', 'node');
  assert.ok(existsSync(path.join(headers, 'node_api.h')), `Node headers not found at ${headers} (needed to build the addon)`);
  const addon = path.join(tmp, 'portable.node');
  const cc = process.env['CC'] || 'cc';
  // every C source the addon is built from, as binding.gyp lists them
  const gyp = JSON.parse(readFileSync(path.join(repoRoot, 'binding.gyp'), 'utf8')) as { targets: { sources: string[] }[] };
  const sources = gyp.targets[0]!.sources.map((s) => path.join(repoRoot, s));
  await run(cc, ['-shared', '-fPIC', '-O2', '-std=gnu11', '-fno-strict-aliasing', '-Wall', '-Werror', '-Wno-psabi', '-Wno-unused-function',
    '-DHETMM_NO_X86_SIMD', `-I${headers}`, ...sources, '-o', addon, '-lpthread']);
  const { stdout } = await run(process.execPath, [path.join(here, 'helpers', 'portable-addon-check.js')], {
    env: { ...process.env, HETMM_NATIVE_PATH: addon, HETMM_FAST_VARIANT: '' },
  });
  const r = JSON.parse(stdout) as { addon: string; info: { variants: string[]; int8: boolean }; variant: string; maxDiff: number };
  assert.equal(r.addon, addon);
  assert.deepEqual(r.info.variants, ['generic']);
  assert.equal(r.info.int8, false);
  assert.equal(r.variant, 'generic');
  assert.ok(r.maxDiff < 1e-5, `max difference from the reference ${r.maxDiff}`);
});
