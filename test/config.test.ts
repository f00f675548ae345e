/**
 * src/config.ts (the one reader of process.env) and the backend registry's
 * precision and naming rules (src/kernels/registry.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cacheDir, configure, setting, settingSource, settingsMarkdownTable, SETTINGS } from '../src/config.js';
import { isHetmmError } from '../src/errors.js';
import type { KernelBackend } from '../src/kernels/contract.js';
import { createBackendRegistry } from '../src/kernels/index.js';
import { referenceBackend } from '../src/kernels/reference/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('config: README documents exactly the settings table', () => {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  assert.ok(readme.includes(settingsMarkdownTable()), 'README.md lacks the current settings table: paste settingsMarkdownTable() into "## Configuration"');
  const documented = [...readme.matchAll(/^\| `(HETMM_[A-Z_]+)` \|/gm)].map((m) => m[1]);
  assert.deepEqual(documented, Object.values(SETTINGS).map((s) => s.variable));
});

test('config: environment, empty values, configure() overrides and their source', () => {
  const env = { HETMM_BACKEND: 'fast', HETMM_MODEL: '' };
  assert.equal(setting('backend', env), 'fast');
  assert.equal(setting('model', env), undefined, 'an empty variable counts as unset');
  assert.equal(settingSource('backend'), 'HETMM_BACKEND');
  configure({ backend: 'reference' });
  try {
    assert.equal(setting('backend', env), 'reference');
    assert.equal(settingSource('backend'), 'configure({ backend })');
  } finally {
    configure({ backend: undefined });
  }
  assert.equal(setting('backend', env), 'fast');
  assert.throws(() => configure({ nope: 'x' } as never), (e: unknown) => isHetmmError(e) && e.code === 'E_ARGUMENT' && /nope/.test(e.message));
});

test('config: cache directory per platform, HETMM_CACHE_DIR wins', () => {
  const home = os.homedir();
  assert.equal(cacheDir({}, 'linux'), path.join(home, '.cache', 'hetmm'));
  assert.equal(cacheDir({ XDG_CACHE_HOME: '/xdg' }, 'linux'), path.join('/xdg', 'hetmm'));
  assert.equal(cacheDir({ XDG_CACHE_HOME: 'relative' }, 'linux'), path.join(home, '.cache', 'hetmm'), 'XDG says relative paths are ignored');
  assert.equal(cacheDir({}, 'darwin'), path.join(home, 'Library', 'Caches', 'hetmm'));
  assert.equal(cacheDir({ LOCALAPPDATA: 'C:\\Users\\u\\AppData\\Local' }, 'win32'), path.join('C:\\Users\\u\\AppData\\Local', 'hetmm', 'Cache'));
  assert.equal(cacheDir({ HETMM_CACHE_DIR: '/tmp/x' }, 'linux'), path.resolve('/tmp/x'));
});

function fake(name: string, precision?: 'float' | 'int8'): KernelBackend {
  return { name, ...(precision ? { precision } : {}), matchLayer: referenceBackend.matchLayer };
}

test('registry: any registered name is a preference; unknown names list the registered ones', async () => {
  const r = createBackendRegistry({ env: () => undefined, precisionEnv: () => undefined, warn: () => {} });
  r.registerBackend('reference', async () => referenceBackend, 0);
  r.registerBackend('gpu', async () => fake('gpu'), 5);
  assert.equal((await r.getBackend('gpu')).name, 'gpu');
  assert.equal((await r.getBackend()).name, 'gpu');
  await assert.rejects(r.getBackend('tpu'), (e: unknown) => isHetmmError(e) && e.code === 'E_ARGUMENT' && /auto, reference, gpu/.test(e.message));
});

test('registry: precision is a load option; a loader that ignores it does not pass for int8', async () => {
  const warnings: string[] = [];
  let envPrecision: string | undefined;
  const r = createBackendRegistry({ env: () => undefined, precisionEnv: () => envPrecision, warn: (m) => warnings.push(m) });
  const asked: string[] = [];
  r.registerBackend('reference', async ({ precision }) => {
    if (precision !== 'float') throw new Error('float only');
    return referenceBackend;
  }, 0);
  r.registerBackend('ignores', async () => fake('ignores'), 5);
  r.registerBackend('quant', async ({ precision }) => {
    asked.push(precision);
    return fake('quant', precision);
  }, 10);
  assert.equal((await r.getBackend('auto', { precision: 'int8' })).precision, 'int8');
  await assert.rejects(r.getBackend('ignores', { precision: 'int8' }), (e: unknown) => isHetmmError(e) && e.code === 'E_BACKEND' && /does not match in int8/.test(e.message));
  await assert.rejects(r.getBackend('reference', { precision: 'int8' }), (e: unknown) => isHetmmError(e) && /float only/.test(e.message));
  envPrecision = 'int8';
  assert.equal((await r.getBackend('quant')).precision, 'int8', 'HETMM_MATCH_PRECISION is the default precision');
  assert.equal((await r.getBackend('quant', { precision: 'float' })).precision ?? 'float', 'float', 'an explicit precision wins');
  envPrecision = 'int4';
  await assert.rejects(r.getBackend(), (e: unknown) => isHetmmError(e) && e.code === 'E_ARGUMENT' && /HETMM_MATCH_PRECISION but received "int4"/.test(e.message));
  assert.deepEqual(asked, ['int8', 'float'], 'one load per backend and precision');
  assert.deepEqual(warnings, []);
});
