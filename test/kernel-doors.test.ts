/**
 * The backend registry is the only door to a kernel backend:
 *   - a backend registered with registerBackend is chosen by name
 *     (Detector.open({ backend }), validated against the registry);
 *   - pipelines use the chosen backend's shared-memory matching: the
 *     reference's when it is the reference, and an E_BACKEND error saying
 *     why for a backend without it or one the threads cannot load, never a
 *     quiet switch to another backend;
 *   - the kernel thread count reaches the addon through configure({ threads })
 *     (passed at load), not through the addon reading the environment.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Detector, type Prediction } from '../src/detector/detector.js';
import type { KernelBackend } from '../src/kernels/contract.js';
import { createBackendRegistry, registerBackend, referenceBackend } from '../src/kernels/index.js';
import { expectHetmm } from './helpers/errors.js';
import { datasetsDir, defaultModelPath, listImages, tempDir } from './helpers/io-paths.js';

const tmp = tempDir('kernel-doors');
const good = listImages(path.join(datasetsDir, 'magnetic-tile/magnetic_tile/train/good'));

/** The reference's matching under another name, counting its calls; `shared`: with the shared-memory capability too. */
function renamedReference(name: string, shared: boolean): KernelBackend & { calls: number } {
  const backend = {
    name,
    calls: 0,
    matchLayer(...args: Parameters<KernelBackend['matchLayer']>) {
      backend.calls++;
      return referenceBackend.matchLayer(...args);
    },
    ...(shared ? { shareLayer: referenceBackend.shareLayer, matchSharedLayer: referenceBackend.matchSharedLayer } : {}),
  };
  return backend;
}

async function collect(run: AsyncIterable<{ source: string; prediction?: Prediction; error?: Error }>): Promise<{ source: string; prediction?: Prediction; error?: Error }[]> {
  const out = [];
  for await (const o of run) out.push(o);
  return out;
}

describe('registered backends by name', () => {
  const mine = renamedReference('mine-plain', false);
  const mineShared = renamedReference('mine-shared', true);
  let plain: Detector;
  let shared: Detector;
  let reference: Detector;
  const files = good.slice(10, 13);

  before(async () => {
    registerBackend('mine-plain', async () => mine, -1);
    registerBackend('mine-shared', async () => mineShared, -1);
    plain = await Detector.open({ model: defaultModelPath, backend: 'mine-plain', dtype: 'float32', threads: 1 });
    await plain.add(good.slice(0, 2));
    shared = await Detector.open({ model: defaultModelPath, backend: 'mine-shared', store: plain.store, threads: 1 });
    reference = await Detector.open({ model: defaultModelPath, backend: 'reference', store: plain.store, threads: 1 });
  });

  after(() => {
    for (const d of [plain, shared, reference]) d?.dispose();
  });

  it('Detector.open({ backend }) takes any registered name and matches with that backend', async () => {
    assert.equal(plain.backend, mine);
    const before = mine.calls;
    const p = await plain.predict(files[0]!);
    assert.ok(mine.calls > before, 'the registered backend matched');
    assert.equal(p.score, (await reference.predict(files[0]!)).score, 'the same numbers as the reference it wraps');
  });

  it("a backend is known by one name: a loader whose backend calls itself otherwise does not load", async () => {
    const r = createBackendRegistry({ env: () => undefined, precisionEnv: () => undefined, warn: () => undefined });
    r.registerBackend('alias', async () => referenceBackend, 0);
    await assert.rejects(r.getBackend('alias'), expectHetmm('E_BACKEND', 'named "reference", not "alias"'));
  });

  it('an unregistered name is E_ARGUMENT naming the registered ones, before anything loads', async () => {
    await assert.rejects(Detector.open({ model: defaultModelPath, backend: 'nobody' }), expectHetmm('E_ARGUMENT', 'options.backend', "'mine-plain'", "'fast'", 'nobody'));
  });

  it("pipelines with the reference use the reference's shared-memory matching (same scores as one pipeline)", async () => {
    const single = await collect(reference.predictMany(files));
    const piped = await collect(reference.predictMany(files, { pipelines: 2 }));
    assert.deepEqual(piped.map((o) => o.source), files);
    piped.forEach((o, i) => {
      assert.equal(o.error, undefined, o.error?.message);
      assert.ok(Math.abs(o.prediction!.score - single[i]!.prediction!.score) <= 1e-5, `${o.prediction!.score} vs ${single[i]!.prediction!.score}`);
    });
  });

  it('pipelines refuse a backend without shared-memory matching: E_BACKEND saying so, not a quiet switch to the reference', async () => {
    await assert.rejects(collect(plain.predictMany(files, { pipelines: 2 })), expectHetmm('E_BACKEND', '"mine-plain" kernel backend has no shared-memory matching'));
  });

  it('pipelines refuse a backend their threads cannot load by name: E_BACKEND saying why', async () => {
    await assert.rejects(collect(shared.predictMany(files, { pipelines: 2 })), expectHetmm('E_BACKEND', 'cannot load the "mine-shared" kernel backend'));
  });
});

describe('the kernel thread count reaches the addon at load', () => {
  const script = (lines: string): string => `
    import { configure } from ${JSON.stringify(new URL('../src/config.js', import.meta.url).href)};
    import { getBackend } from ${JSON.stringify(new URL('../src/kernels/index.js', import.meta.url).href)};
    ${lines}
    const fast = await getBackend('fast', { precision: 'float' });
    console.log(JSON.stringify({ threads: fast.threads }));
  `;
  function run(lines: string, env: Record<string, string | undefined>): { threads: number; stderr: string } {
    const file = path.join(tmp, `threads-${Math.random().toString(36).slice(2)}.mjs`);
    writeFileSync(file, script(lines));
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8', env: { ...process.env, HETMM_THREADS: undefined, ...env }, timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    return { threads: (JSON.parse(r.stdout.trim()) as { threads: number }).threads, stderr: r.stderr };
  }

  it('configure({ threads }) sets the pool size, over HETMM_THREADS', () => {
    assert.equal(run(`configure({ threads: '3' });`, { HETMM_THREADS: '2' }).threads, 3);
    assert.equal(run(`configure({ threads: '1' });`, {}).threads, 1);
  });

  it('HETMM_THREADS alone still sets it; a bad value is ignored with a warning', () => {
    assert.equal(run('', { HETMM_THREADS: '2' }).threads, 2);
    const bad = run(`configure({ threads: 'many' });`, {});
    assert.ok(bad.threads >= 1);
    assert.match(bad.stderr, /ignoring configure\(\{ threads \}\)=many/);
  });
});
