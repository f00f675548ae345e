/**
 * Single-threaded pipelines (Detector.predictMany({ pipelines }), hetmm
 * predict --pipelines):
 *   - the native caller-thread kernels (matchLayerHere, matchLayerInt8Here,
 *     via shareLayer/matchSharedLayer) against the TypeScript references and
 *     the pooled kernels, float32, float16 and int8, templates in shared memory;
 *   - on the real model and real magnetic-tile images: the same predictions
 *     as the single pipeline (float and int8 matching), in input order, each
 *     failing input's error in its place; a consumer that stops early; the
 *     pool kept between runs;
 *   - no hanging process: a script that never disposes its detector exits;
 *   - the CLI prints the same lines (scores, labels, order, exit code) and
 *     writes the same maps with --pipelines 2 as with --pipelines 1, on a
 *     store `hetmm fit` makes by default (int8 end to end: int8 backbone and
 *     int8 matching; the library tests above use a float32 store with float
 *     and int8 matching).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { after, before, describe, it } from 'node:test';
import { pipelinesOption, AUTO_PIPELINES_MIN_IMAGES } from '../src/cli/pipelines-option.js';
import { Detector, type Prediction } from '../src/detector/detector.js';
import { HetmmError } from '../src/errors.js';
import type { FeatureStack, MatchOptions, QueryMap, SharedLayer } from '../src/kernels/contract.js';
import { loadBinding } from '../src/kernels/fast/binding.js';
import { loadFastBackend, matchLayerInt8Reference, quantizeQueryInt8, quantizeTemplatesInt8 } from '../src/kernels/fast/index.js';
import { referenceBackend } from '../src/kernels/reference/index.js';
import { float32ArrayToFloat16 } from '../src/store/float16.js';
import { runCli } from './helpers/cli.js';
import { datasetsDir, defaultModelPath, listImages, repoRoot, tempDir } from './helpers/io-paths.js';
import { randomUnitMaps } from './helpers/random.js';

const tmp = tempDir('pipelines');

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, atol: number, rtol: number): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Math.abs(a - e) > atol + rtol * Math.abs(e)) assert.fail(`${label}[${i}]: ${a} vs ${e}`);
  }
}

interface Case {
  readonly n: number;
  readonly c: number;
  readonly h: number;
  readonly w: number;
  readonly f: number;
  readonly b: number;
  readonly dtype: 'float32' | 'float16';
}

function inputs(k: Case, seed: number): { query: QueryMap; templates: FeatureStack; options: MatchOptions } {
  const data = randomUnitMaps(k.n, k.c, k.h, k.w, seed);
  const query = { shape: [k.c, k.h, k.w] as const, data: randomUnitMaps(1, k.c, k.h, k.w, seed + 1) };
  const templates: FeatureStack =
    k.dtype === 'float16' ? { dtype: 'float16', shape: [k.n, k.c, k.h, k.w], data: float32ArrayToFloat16(data) } : { dtype: 'float32', shape: [k.n, k.c, k.h, k.w], data };
  return { query, templates, options: { forwardPatch: k.f, backwardPatch: k.b } };
}

const caseName = (k: Case): string => `N${k.n} C${k.c} ${k.h}x${k.w} f${k.f} b${k.b} ${k.dtype}`;

describe('caller-thread kernels (matchSharedLayer)', () => {
  const floatCases: Case[] = [
    { n: 1, c: 9, h: 7, w: 13, f: 5, b: 3, dtype: 'float32' }, // N = 1, width not a multiple of 16
    { n: 4, c: 32, h: 8, w: 32, f: 3, b: 5, dtype: 'float32' },
    { n: 3, c: 17, h: 9, w: 16, f: 7, b: 3, dtype: 'float16' }, // float16 with a wide window (scratch conversion)
    { n: 2, c: 6, h: 5, w: 20, f: 1, b: 1, dtype: 'float16' },
  ];
  for (const [index, k] of floatCases.entries()) {
    it(`float: equals the pooled kernel bit for bit and the reference within 1e-5: ${caseName(k)}`, async () => {
      const { query, templates, options } = inputs(k, 40 + index);
      const fast = await loadFastBackend();
      const layer = fast.shareLayer(templates, options);
      assert.equal(layer.kind, 'float');
      assert.ok(layer.kind === 'float' && layer.stack.data.buffer instanceof SharedArrayBuffer, 'templates in shared memory');
      const here = fast.matchSharedLayer(layer, query, options);
      const pooled = await fast.matchLayer(query, templates, options);
      assert.deepEqual(here.forward, pooled.forward, 'forward vs pooled');
      assert.deepEqual(here.backward, pooled.backward, 'backward vs pooled');
      const reference = await referenceBackend.matchLayer(query, templates, options);
      assertClose(here.forward, reference.forward, 'forward vs reference', 1e-5, 1e-5);
      assertClose(here.backward, reference.backward, 'backward vs reference', 1e-5, 1e-5);
    });
  }

  const int8Skip = loadBinding().info().int8 === true ? false : 'this CPU has no AVX-512 VNNI (int8 matching unavailable)';
  const int8Cases: Case[] = [
    { n: 3, c: 10, h: 6, w: 32, f: 5, b: 3, dtype: 'float32' },
    { n: 1, c: 64, h: 16, w: 16, f: 7, b: 3, dtype: 'float32' },
    { n: 5, c: 19, h: 16, w: 16, f: 7, b: 3, dtype: 'float16' },
  ];
  for (const [index, k] of int8Cases.entries()) {
    it(`int8: equals the pooled kernel bit for bit and the int8 reference within 1e-6: ${caseName(k)}`, { skip: int8Skip }, async () => {
      const { query, templates, options } = inputs(k, 70 + index);
      const fast8 = await loadFastBackend({ precision: 'int8' });
      const layer = fast8.shareLayer(templates, options);
      assert.equal(layer.kind, 'int8');
      assert.ok(layer.kind === 'int8' && layer.templates.data.buffer instanceof SharedArrayBuffer && layer.templates.scale.buffer instanceof SharedArrayBuffer);
      const here = fast8.matchSharedLayer(layer, query, options);
      const pooled = await fast8.matchLayer(query, templates, options);
      assert.deepEqual(here.forward, pooled.forward, 'forward vs pooled');
      assert.deepEqual(here.backward, pooled.backward, 'backward vs pooled');
      const reference = matchLayerInt8Reference(quantizeQueryInt8(query), quantizeTemplatesInt8(templates), k.n, options);
      assertClose(here.forward, reference.forward, 'forward vs int8 reference', 1e-6, 1e-5);
      assertClose(here.backward, reference.backward, 'backward vs int8 reference', 1e-6, 1e-5);
    });
  }

  // a hot update shares only its own templates: into the earlier copy when it has room, rows other threads read untouched
  for (const precision of ['float', 'int8'] as const) {
    it(`${precision}: sharing a grown stack after an earlier share adds only the new templates and matches as a fresh share`, { skip: precision === 'int8' ? int8Skip : false }, async () => {
      const k: Case = { n: 7, c: 12, h: 8, w: 16, f: 5, b: 3, dtype: 'float32' };
      const { query, templates, options } = inputs(k, 90);
      const fast = await loadFastBackend({ precision });
      const view = (n: number): FeatureStack => ({ ...templates, shape: [n, k.c, k.h, k.w] });
      const buffersOf = (layer: SharedLayer): ArrayBufferLike[] => (layer.kind === 'int8' ? [layer.templates.data.buffer, layer.templates.scale.buffer, layer.templates.sum.buffer] : [layer.stack.data.buffer]);
      const first = fast.shareLayer(view(2), options);
      const firstResult = fast.matchSharedLayer(first, query, options);
      const grown = fast.shareLayer(view(3), options, first); // doubles: 3 > 2
      assert.notDeepEqual(buffersOf(grown), buffersOf(first), 'a larger copy');
      const inPlace = fast.shareLayer(view(4), options, grown); // room for 4
      assert.deepEqual(buffersOf(inPlace), buffersOf(grown), 'the new template went into the same shared memory');
      const again = fast.shareLayer(view(7), options, inPlace);
      for (const [n, layer] of [[3, grown], [4, inPlace], [7, again]] as const) {
        const fresh = fast.shareLayer(view(n), options);
        assert.equal(layer.kind, fresh.kind);
        assert.deepEqual(fast.matchSharedLayer(layer, query, options), fast.matchSharedLayer(fresh, query, options), `${n} templates`);
      }
      assert.deepEqual(fast.matchSharedLayer(first, query, options), firstResult, 'the first share still matches its 2 templates alone');
    });
  }

  it('int8 sharing falls back to float for shapes the int8 kernel does not handle', { skip: int8Skip }, async () => {
    const { templates, options } = inputs({ n: 2, c: 8, h: 4, w: 20, f: 3, b: 3, dtype: 'float32' }, 9);
    assert.equal((await loadFastBackend({ precision: 'int8' })).shareLayer(templates, options).kind, 'float'); // width not a multiple of 16
  });
});

const tileRoot = path.join(datasetsDir, 'magnetic-tile/magnetic_tile');
const good = listImages(path.join(tileRoot, 'train/good'));
const cracks = listImages(path.join(tileRoot, 'test/crack'));
const notAnImage = path.join(tmp, 'not-an-image.jpg');
const missing = path.join(tmp, 'missing.jpg');

/** Scores are the same computation on the same kernels; the backbone runs with 1 onnxruntime thread instead of several. */
function assertSamePrediction(actual: Prediction, expected: Prediction, what: string): void {
  assert.equal(actual.file, expected.file, `${what}: file`);
  assert.equal(actual.templates, expected.templates, `${what}: templates`);
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), `${what}: the same fields`);
  assertClose([actual.score], [expected.score], `${what}: score`, 1e-6, 1e-5);
  assertClose(actual.anomalyMap, expected.anomalyMap, `${what}: anomalyMap`, 1e-5, 1e-4);
  assertClose(actual.pixelMap, expected.pixelMap, `${what}: pixelMap`, 1e-5, 1e-4);
  assert.deepEqual(actual.image.data, expected.image.data, `${what}: image`);
  assert.deepEqual(Object.keys(actual.timings).sort(), ['backbone', 'decode', 'match', 'score'], `${what}: timings`);
}

describe('predictMany({ pipelines })', () => {
  let float: Detector;
  let int8: Detector | undefined;
  const inputsWithErrors = [cracks[0]!, missing, good[20]!, notAnImage, cracks[1]!, good[21]!, cracks[2]!];

  before(async () => {
    writeFileSync(notAnImage, 'this is text, not a JPEG');
    float = await Detector.open({ model: defaultModelPath, preset: 'default', dtype: 'float32' });
    await float.add(good.slice(0, 4));
    if (loadBinding().info().int8 === true) int8 = await Detector.open({ model: defaultModelPath, store: float.store, matchPrecision: 'int8' });
  });

  after(() => {
    float?.dispose();
    int8?.dispose();
  });

  for (const which of ['float', 'int8'] as const) {
    it(`${which} matching: the single pipeline's predictions, in input order, errors in place`, async (t) => {
      const detector = which === 'float' ? float : int8;
      if (detector === undefined) return t.skip('this CPU has no AVX-512 VNNI');
      const single = new Map<string, { prediction?: Prediction; error?: Error }>();
      for await (const r of detector.predictMany(inputsWithErrors)) single.set(r.source, r);
      assert.notEqual(single.get(cracks[0]!)!.prediction!.score, single.get(good[20]!)!.prediction!.score);
      const seen: string[] = [];
      for await (const r of detector.predictMany(inputsWithErrors, { pipelines: 2 })) {
        const what = `${which}, ${path.basename(r.source)}`;
        seen.push(r.source);
        const expected = single.get(r.source)!;
        if (expected.error !== undefined) {
          assert.equal(r.prediction, undefined, what);
          assert.ok(r.error instanceof HetmmError, `${what}: expected a HetmmError, got ${String(r.error)}`);
          assert.equal(r.error.code, (expected.error as HetmmError).code, what);
          assert.equal(r.error.code, r.source === missing ? 'E_IMAGE_READ' : 'E_IMAGE_DECODE', what);
          assert.equal(r.error.message, expected.error.message, what);
        } else {
          assert.equal(r.error, undefined, `${what}: ${r.error?.message}`);
          assertSamePrediction(r.prediction!, expected.prediction!, what);
        }
      }
      assert.deepEqual(seen, inputsWithErrors, 'input order');
    });
  }

  it('a consumer that stops early loses nothing for the next run (the pipelines are kept), and a grown store is seen', async () => {
    const files = [cracks[3]!, good[22]!, cracks[4]!, good[23]!, cracks[5]!];
    for await (const r of float.predictMany(files, { pipelines: 2 })) {
      assert.equal(r.source, files[0]);
      break;
    }
    const first: Prediction[] = [];
    for await (const r of float.predictMany(files, { pipelines: 2 })) first.push(r.prediction!);
    assert.deepEqual(first.map((p) => p.file), files);
    assert.ok(first.every((p) => p.templates === 4));
    // a prediction after `add` matches the grown store: the added image now scores ~0 against itself
    await float.add([files[1]!]);
    const again: Prediction[] = [];
    for await (const r of float.predictMany(files, { pipelines: 2 })) again.push(r.prediction!);
    assert.ok(again.every((p) => p.templates === 5));
    assert.ok(again[1]!.score < 1e-3 && first[1]!.score > 1e-2, `${again[1]!.score} vs ${first[1]!.score}`);
  });

  it("a preset's band cue reaches the pixel maps as in the single pipeline", async () => {
    const plainPreset = float.preset;
    const files = [cracks[8]!, good[24]!];
    const withoutBands: Prediction[] = [];
    for await (const r of float.predictMany(files, { pipelines: 2 })) withoutBands.push(r.prediction!);
    float.preset = { ...plainPreset, name: 'with bands', bands: { weight: 0.5, mean: new Array(64).fill(0), sd: new Array(64).fill(0.1) } };
    try {
      const single: Prediction[] = [];
      for await (const r of float.predictMany(files)) single.push(r.prediction!);
      const piped: Prediction[] = [];
      for await (const r of float.predictMany(files, { pipelines: 2 })) piped.push(r.prediction!);
      for (const [i, p] of piped.entries()) {
        assertSamePrediction(p, single[i]!, `bands, ${path.basename(p.file)}`);
        assert.notDeepEqual(p.pixelMap, withoutBands[i]!.pixelMap, 'the cue changed the pixel map');
      }
    } finally {
      float.preset = plainPreset;
    }
  });

  it('does not keep the predictions it has yielded (a long run must not grow with its length)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const files = [cracks[9]!, good[25]!, cracks[10]!, good[26]!, cracks[11]!, good[27]!, cracks[12]!, good[28]!, cracks[13]!, good[29]!];
    const yielded: WeakRef<Float32Array>[] = [];
    let i = 0;
    for await (const r of float.predictMany(files, { pipelines: 2 })) {
      yielded.push(new WeakRef(r.prediction!.pixelMap));
      if (++i < files.length) continue;
      // the run is still open (this is its last outcome): earlier predictions are only the run's to keep
      await new Promise((resolve) => setImmediate(resolve));
      gc();
      const kept = yielded.slice(0, -1).filter((w) => w.deref() !== undefined).length;
      assert.equal(kept, 0, `${kept} of ${files.length - 1} yielded predictions still held by the run`);
    }
    assert.equal(i, files.length);
  });

  it('rejects bad options', async () => {
    await assert.rejects(float.predictMany([good[0]!], { pipelines: 0 }).next(), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT');
    await assert.rejects(float.predictMany([good[0]!], { pipelines: 1.5 }).next(), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT');
    await assert.rejects(
      float.predictMany([good[0]!], { pipelines: 2, backboneThread: true }).next(),
      (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT' && e.message.includes('pipelines'),
    );
  });
});

describe('pipeline threads and process exit', () => {
  it('a script that never disposes its detector exits by itself', () => {
    const script = path.join(tmp, 'no-dispose.mjs');
    const detectorModule = path.join(repoRoot, 'dist/src/detector/detector.js');
    writeFileSync(
      script,
      `import { Detector } from ${JSON.stringify(detectorModule)};
const d = await Detector.open({ model: ${JSON.stringify(defaultModelPath)}, dtype: 'float32' });
await d.add(${JSON.stringify(good.slice(0, 2))});
let n = 0;
for await (const r of d.predictMany(${JSON.stringify([cracks[0], good[30], cracks[1]])}, { pipelines: 2 })) { if (r.error) throw r.error; n++; }
for await (const r of d.predictMany(${JSON.stringify([cracks[0], good[30], cracks[1]])}, { pipelines: 2 })) { n++; break; }
console.log('done', n);
`,
    );
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.signal, null, `killed by the timeout: the process hung (stderr ${r.stderr})`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'done 4');
  });
});

describe('hetmm predict --pipelines', () => {
  const store = path.join(tmp, 'tile.hetmm');
  before(async () => {
    const r = await runCli('fit', ...good.slice(0, 6), '-o', store, '--preset', 'default', '--quiet');
    assert.equal(r.code, 0, r.stderr);
  });

  it('prints the same lines, in the same order, and writes the same maps as one pipeline, a corrupt file in the middle', async () => {
    writeFileSync(notAnImage, 'this is text, not a JPEG');
    const files = [cracks[6]!, good[40]!, notAnImage, cracks[7]!, good[41]!];
    const runWith = async (pipelines: string): Promise<{ code: number; lines: Record<string, unknown>[]; stderr: string; out: string }> => {
      const out = path.join(tmp, `out-${pipelines}`);
      const r = await runCli('predict', '-t', store, ...files, '--json', '--quiet', '--pipelines', pipelines, '-o', out, '--map-size', 'model');
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      for (const l of lines) delete l.ms; // timings differ from run to run
      return { code: r.code, lines, stderr: r.stderr, out };
    };
    const one = await runWith('1');
    const two = await runWith('2');
    assert.equal(one.code, 3, one.stderr); // an input failed, the others ran
    assert.equal(two.code, 3, two.stderr);
    assert.equal(one.lines.length, 5); // the failed input has its own JSON line, in its place
    assert.equal(one.lines.filter((l) => l.label === 'ok' || l.label === 'defect').length, 4, 'calibrated store: labels');
    assert.deepEqual(two.lines.map((l) => l.file), one.lines.map((l) => l.file), 'order');
    for (const [i, l] of two.lines.entries()) {
      const expected = one.lines[i]!;
      if (expected.score === undefined) {
        assert.deepEqual(l, expected, 'the failed input\'s line');
        assert.equal(l.file, notAnImage);
        continue;
      }
      assertClose([l.score as number], [expected.score as number], `score of ${String(l.file)}`, 1e-6, 1e-5);
      assert.deepEqual({ ...l, score: 0, heatmap: '', map: '', mask: '' }, { ...expected, score: 0, heatmap: '', map: '', mask: '' }, String(l.file));
      const map = (file: unknown): Float32Array => {
        const bytes = readFileSync(file as string);
        return new Float32Array(bytes.buffer.slice(bytes.byteOffset + 128, bytes.byteOffset + bytes.length));
      };
      assertClose(map(l.map), map(expected.map), `map of ${String(l.file)}`, 1e-5, 1e-4);
    }
    assert.ok(two.stderr.includes(notAnImage) && one.stderr.includes(notAnImage), two.stderr);
  });

  it('auto: one pipeline per core (at most 8) from AUTO_PIPELINES_MIN_IMAGES images on, else 1; N as given', () => {
    const cores = os.availableParallelism();
    assert.equal(pipelinesOption(undefined, AUTO_PIPELINES_MIN_IMAGES - 1, false), 1);
    assert.equal(pipelinesOption('auto', AUTO_PIPELINES_MIN_IMAGES, false), Math.min(cores, 8));
    assert.equal(pipelinesOption(undefined, 100, true), 1); // --backbone-thread asks for the single pipeline
    assert.equal(pipelinesOption('3', 2, false), 3);
    for (const bad of ['0', 'x', '1.5', '65']) assert.throws(() => pipelinesOption(bad, 10, false), (e: unknown) => e instanceof HetmmError && e.code === 'E_ARGUMENT');
  });
});
