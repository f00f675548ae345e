/**
 * Issue 8's observations as tests, through the CLI (in-process, real model,
 * real MVTec bottle images) and the library: concurrent adds (1), symlinked
 * stores (2), the batch error policy (3), exit codes (4), output write
 * errors (5), a closed stdout (6), library input checks (7), the input
 * policy and one-line errors (8). The store-level halves of 1, 2 and 8 are
 * in store-concurrency.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { Detector } from '../src/detector/detector.js';
import { resolvePreset } from '../src/matching/index.js';
import { TemplateStore } from '../src/store/index.js';
import { runCli as run } from './helpers/cli.js';
import { expectHetmm } from './helpers/errors.js';
import { datasetsDir, repoRoot, tempDir } from './helpers/io-paths.js';

const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle');
const trainDir = path.join(bottle, 'train/good');
const good = (k: number): string => path.join(bottle, 'test/good', `00${k}.png`);
const tmp = tempDir('cli-rel');
const store = path.join(tmp, 'base.hetmm');
const copyStore = (name: string): string => {
  const f = path.join(tmp, name);
  copyFileSync(store, f);
  return f;
};
const scoreLines = (stdout: string): string[] => stdout.split('\n').filter((l) => l.includes(' score '));
const noStackTrace = (stderr: string): void => assert.ok(!/\n\s+at /.test(stderr), `stack trace printed:\n${stderr}`);

before(async () => {
  const r = await run('fit', trainDir, '-o', store, '--quiet', '--preset', 'bottle', '--calibrate', '2');
  assert.equal(r.code, 0, r.stderr);
});

test('1: three concurrent adds on one store all land (no lost hot update)', async () => {
  const file = copyStore('concurrent.hetmm');
  const results = await Promise.all([1, 2, 3].map((k) => run('add', '-t', file, good(k), '--quiet')));
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const loaded = await TemplateStore.load(file);
  assert.equal(loaded.count, 8);
  assert.deepEqual(loaded.files.slice(5).sort(), [good(1), good(2), good(3)]);
});

test('2: add through a symlink updates the target and keeps the link', async () => {
  const target = copyStore('target.hetmm');
  const link = path.join(tmp, 'link.hetmm');
  symlinkSync(target, link);
  const r = await run('add', '-t', link, good(1), '--quiet');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(lstatSync(link).isSymbolicLink());
  assert.equal((await TemplateStore.load(target)).count, 6);
});

test('3: missing, unreadable and looping inputs are reported one per line; the rest are scored (exit 3)', async () => {
  const dir = path.join(tmp, 'batch');
  mkdirSync(dir);
  symlinkSync('loop-b.png', path.join(dir, 'loop-a.png'));
  symlinkSync('loop-a.png', path.join(dir, 'loop-b.png'));
  const missing = path.join(dir, 'missing.png');
  const r = await run('predict', '-t', store, good(0), missing, path.join(dir, 'loop-a.png'), good(1), '--quiet');
  assert.equal(r.code, 3, r.stderr);
  assert.equal(scoreLines(r.stdout).length, 2);
  const errors = r.stderr.trim().split('\n');
  assert.equal(errors.length, 2, r.stderr);
  assert.match(errors[0]!, /missing\.png.*no such file/);
  assert.match(errors[1]!, /loop-a\.png.*symbolic link loop/);
  noStackTrace(r.stderr);
  // --json: one record per input, errors included, in input order
  const j = await run('predict', '-t', store, good(0), missing, '--json', '--quiet');
  const records = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; score?: number; code?: string });
  assert.deepEqual(records.map((x) => x.code ?? 'ok'), ['ok', 'E_IMAGE_READ']);
  // --fail-fast stops at the first bad input
  const f = await run('predict', '-t', store, missing, good(0), '--fail-fast', '--quiet', '--concurrency', '1');
  assert.equal(f.code, 3);
  assert.equal(scoreLines(f.stdout).length, 0);
  assert.equal(f.stderr.trim().split('\n').length, 1);
  // add: the good image is added, the bad one reported
  const file = copyStore('add-partial.hetmm');
  const a = await run('add', '-t', file, missing, good(2), '--quiet');
  assert.equal(a.code, 3);
  assert.equal((await TemplateStore.load(file)).count, 6);
  const before = readFileSync(file);
  const ff = await run('add', '-t', file, good(3), missing, '--quiet', '--fail-fast');
  assert.equal(ff.code, 3);
  assert.deepEqual(readFileSync(file), before, '--fail-fast add must not write');
});

test('4: exit codes: 0 ok, 3 bad input (even the only one), 4 store problems, 2 usage', async () => {
  assert.equal((await run('predict', '-t', store, good(0), '--quiet')).code, 0);
  const text = path.join(tmp, 'text.png');
  writeFileSync(text, 'not an image at all');
  const only = await run('predict', '-t', store, text, '--quiet');
  assert.equal(only.code, 3, only.stderr);
  const asDir = await run('predict', '-t', tmp, good(0), '--quiet');
  assert.equal(asDir.code, 4, asDir.stderr);
  assert.match(asDir.stderr, /is a directory/);
  // a store whose threshold is not a number; a store naming an unknown preset
  const loaded = await TemplateStore.load(store);
  loaded.meta = { ...loaded.meta, threshold: { value: 'abc', preset: 'bottle' } };
  const badThreshold = path.join(tmp, 'bad-threshold.hetmm');
  await loaded.save(badThreshold);
  const info = await run('info', badThreshold);
  assert.equal(info.code, 4, info.stderr);
  assert.match(info.stderr, /threshold is not a number/);
  loaded.meta = { ...loaded.meta, preset: 'no-such-preset' };
  const badPreset = path.join(tmp, 'bad-preset.hetmm');
  await loaded.save(badPreset);
  const p = await run('predict', '-t', badPreset, good(0), '--quiet');
  assert.equal(p.code, 4, p.stderr);
  assert.match(p.stderr, /no-such-preset/);
  assert.equal((await run('predict', '-t', store, good(0), '--concurrency', 'x')).code, 2);
  assert.equal((await run('predict', '-t', store, good(0), '--max-pixels', '0')).code, 2);
});

test('5: output write errors are E_WRITE (exit 5), name the path, leave no partial file, and do not hang', async () => {
  const notADir = path.join(tmp, 'occupied');
  writeFileSync(notADir, 'a file where the output directory should be');
  const r = await run('predict', '-t', store, good(0), '-o', notADir, '--quiet');
  assert.equal(r.code, 5, r.stderr);
  assert.match(r.stderr, /cannot write '.*occupied'/);
  assert.doesNotMatch(r.stderr, /internal error|please report/);
  const t0 = Date.now();
  const proc = await run('predict', '-t', store, good(0), '-o', '/proc/hetmm-x', '--quiet');
  assert.equal(proc.code, 5, proc.stderr);
  assert.ok(Date.now() - t0 < 30_000);
  // an output file that cannot be replaced (a directory in its place): nothing partial is left beside it
  const out = path.join(tmp, 'out');
  mkdirSync(path.join(out, '000.heatmap.png'), { recursive: true });
  const w = await run('predict', '-t', store, good(0), '-o', out, '--quiet');
  assert.equal(w.code, 5, w.stderr);
  assert.match(w.stderr, /000\.heatmap\.png/);
  assert.deepEqual(readdirSync(out), ['000.heatmap.png']);
});

test('6: a closed stdout ends the process quietly (exit 141, no stack trace)', async () => {
  const cli = path.join(repoRoot, 'dist/src/cli/main.js');
  const child = spawn(process.execPath, [cli, 'predict', '-t', store, good(0), good(1), good(2), good(3), '--json', '--quiet'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.once('data', () => child.stdout.destroy()); // like `| head -1`
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(code, 141, stderr);
  assert.equal(stderr, '');
});

test('6: a long command line (600 paths, about 70 KB) is scored, not a crash: onnxruntime telemetry is off', async () => {
  // onnxruntime-node 1.30's telemetry parsed /proc/self/cmdline with a recursive regex and overflowed the
  // main thread's stack (SIGSEGV) from about 30 KB of arguments, e.g. `hetmm predict dir/*.png` with ~400 files.
  const cli = path.join(repoRoot, 'dist/src/cli/main.js');
  const missing = Array.from({ length: 600 }, (_, i) => path.join(tmp, 'not-there', `${'a-long-directory-name-'.repeat(4)}${i}.png`));
  const child = spawn(process.execPath, [cli, 'predict', '-t', store, good(0), ...missing, '--json', '--quiet'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
  assert.equal(signal, null, `killed by ${signal}: ${stderr.slice(0, 500)}`);
  assert.equal(code, 3, stderr.slice(0, 500));
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; score?: number; code?: string });
  assert.equal(lines.length, 601);
  assert.equal(lines[0]!.file, good(0));
  assert.equal(typeof lines[0]!.score, 'number');
  assert.ok(lines.slice(1).every((l) => l.code === 'E_IMAGE_READ'));
});

test('7: library entry points validate their options with E_ARGUMENT naming the field', async () => {
  const bottlePreset = resolvePreset('bottle');
  const nanAlpha = { ...bottlePreset, layers: [{ ...bottlePreset.layers[0], alpha: NaN }, bottlePreset.layers[1], bottlePreset.layers[2]] };
  await assert.rejects(Detector.open({ store, preset: nanAlpha as never }), expectHetmm('E_ARGUMENT', 'options.preset', 'alpha'));
  await assert.rejects(Detector.open({ store, preset: { name: 'x' } as never }), expectHetmm('E_ARGUMENT', 'options.preset.layers'));
  await assert.rejects(Detector.open({ store, matchPrecision: 'int4' as never }), expectHetmm('E_ARGUMENT', 'options.matchPrecision', 'int4'));
  await assert.rejects(Detector.open({ store, threads: 0 }), expectHetmm('E_ARGUMENT', 'options.threads'));
  await assert.rejects(Detector.open({ store, backend: 'gpu' as never }), expectHetmm('E_ARGUMENT', 'options.backend'));
  await assert.rejects(Detector.open({ store, maxPixels: -1 }), expectHetmm('E_ARGUMENT', 'options.maxPixels'));
  const detector = await Detector.open({ store });
  try {
    await assert.rejects(detector.predict(undefined as never), expectHetmm('E_ARGUMENT', 'predict(source)', 'undefined'));
    await assert.rejects(detector.predictMany([good(0)], { concurrency: NaN }).next(), expectHetmm('E_ARGUMENT', 'options.concurrency', 'NaN'));
    await assert.rejects(detector.predictMany('x' as never).next(), expectHetmm('E_ARGUMENT', 'predictMany(sources)'));
    await assert.rejects(detector.predictMany([good(0)], { backboneThread: 'yes' as never }).next(), expectHetmm('E_ARGUMENT', 'options.backboneThread', 'yes'));
    await assert.rejects(detector.add([good(0), 7 as never]), expectHetmm('E_ARGUMENT', 'add(sources)'));
  } finally {
    detector.dispose();
  }
});

test('7: a failed add leaves the detector and its store file exactly as before', async () => {
  const file = copyStore('failed-add.hetmm');
  const text = path.join(tmp, 'broken.png');
  writeFileSync(text, 'not an image');
  const before = readFileSync(file);
  const detector = await Detector.open({ store: file });
  try {
    const snapshot = detector.store.files;
    await assert.rejects(detector.add([good(1), text]), expectHetmm('E_IMAGE_DECODE', 'broken.png'));
    assert.deepEqual(detector.store.files, snapshot);
    assert.deepEqual(readFileSync(file), before);
    // in memory (no file): rolled back too; a loaded int8 store (fit's default) runs the int8 backbone it embeds
    const loaded = await TemplateStore.load(store);
    const memory = await Detector.open({ store: loaded });
    try {
      await assert.rejects(memory.add([good(1), text]), expectHetmm('E_IMAGE_DECODE'));
      assert.equal(memory.store.count, 5);
      assert.equal(await memory.add([good(2)]), 1);
      assert.equal(memory.store.count, 6);
    } finally {
      memory.dispose();
    }
  } finally {
    detector.dispose();
  }
});

test('8: input policy by content: SVG and animations refused, a PNG named .jpg accepted, a pixel limit', async () => {
  const dir = path.join(tmp, 'inputs');
  mkdirSync(dir);
  const svg = path.join(dir, 'drawing.png');
  writeFileSync(svg, '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
  const frame = (c: string): Promise<Buffer> => sharp({ create: { width: 16, height: 16, channels: 3, background: c } }).png().toBuffer();
  const frames = [await frame('red'), await frame('blue')];
  const gif = path.join(dir, 'anim.gif');
  writeFileSync(gif, await sharp(frames, { join: { animated: true } }).gif().toBuffer());
  const webp = path.join(dir, 'anim.webp');
  writeFileSync(webp, await sharp(frames, { join: { animated: true } }).webp().toBuffer());
  const named = path.join(dir, 'really-a-png.jpg');
  copyFileSync(good(0), named);
  const r = await run('predict', '-t', store, svg, gif, webp, named, '--quiet');
  assert.equal(r.code, 3, r.stderr);
  assert.equal(scoreLines(r.stdout).length, 1);
  assert.match(r.stdout, /really-a-png\.jpg/);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /drawing\.png.*SVG/);
  assert.match(lines[1]!, /anim\.gif.*animated.*2 frames/);
  assert.match(lines[2]!, /anim\.webp.*animated.*2 frames/);
  // the pixel limit: a 900x900 bottle is over --max-pixels 500000, refused before decoding
  const big = await run('predict', '-t', store, good(0), '--max-pixels', '500000', '--quiet');
  assert.equal(big.code, 3);
  assert.match(big.stderr, /over the limit of 500000 pixels/);
  // a small file (a few hundred KB) of 16000x16000 pixels: over the 64 Mpx default, refused without decoding
  const bomb = path.join(dir, 'bomb.png');
  writeFileSync(bomb, zeroPng(16000, 16000));
  const t0 = performance.now();
  const b = await run('predict', '-t', store, bomb, '--quiet');
  assert.equal(b.code, 3, b.stderr);
  assert.match(b.stderr, /bomb\.png.*16000x16000 = 256000000 pixels, over the limit of 67108864 pixels/);
  assert.ok(performance.now() - t0 < 20_000);
});

/** A valid 1-bit grey PNG of width x height, all black: tiny on disk (deflated zeros), huge decoded. */
function zeroPng(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type, 'latin1'), data])) >>> 0);
    return Buffer.concat([len, Buffer.from(type, 'latin1'), data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 1; // bit depth 1, colour type 0 (grey)
  const rows = Buffer.alloc((1 + Math.ceil(width / 8)) * height);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

test('8: a file name with a newline stays on one error line', async () => {
  const odd = path.join(tmp, 'two\nlines.png');
  writeFileSync(odd, 'not an image');
  const r = await run('predict', '-t', store, odd, '--quiet');
  assert.equal(r.code, 3);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /two\\nlines\.png/);
  assert.ok(!existsSync(path.join(tmp, 'lines.png')));
});
