/**
 * The CLI end to end, in-process (main() with captured streams): the real
 * model, the real MVTec bottle images, real files. Also the promise that bad
 * input gives one clear error line and a non-zero exit, never a stack trace.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import { before, test } from 'node:test';
import { TemplateStore } from '../src/store/index.js';
import { runCli } from './helpers/cli.js';
import { datasetsDir, tempDir } from './helpers/io-paths.js';

const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle');
const trainDir = path.join(bottle, 'train/good');
const goodDir = path.join(bottle, 'test/good');
const brokenDir = path.join(bottle, 'test/broken_large');
const tmp = tempDir('cli');
const store = path.join(tmp, 'bottle.hetmm');

const run = runCli;

/** One error line, naming the problem, no stack trace. */
function assertCleanError(r: { code: number; stdout: string; stderr: string }, ...fragments: string[]): void {
  assert.notEqual(r.code, 0, 'exit code must be non-zero');
  assert.ok(!/\n\s+at /.test(r.stderr), `stack trace printed:\n${r.stderr}`);
  assert.match(r.stderr, /error: /);
  for (const f of fragments) assert.ok(r.stderr.includes(f), `stderr ${JSON.stringify(r.stderr)} lacks ${JSON.stringify(f)}`);
}

before(async () => {
  const r = await run('fit', trainDir, '-o', store, '--quiet', '--preset', 'bottle');
  assert.equal(r.code, 0, r.stderr);
});

test('fit writes a store that info describes', async () => {
  const r = await run('info', store, '--json');
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { count: number; dtype: string; layers: { shape: number[] }[]; meta: { threshold?: { value: number } } };
  assert.equal(info.count, 5);
  assert.equal(info.dtype, 'float32');
  assert.deepEqual(info.layers.map((l) => l.shape), [[5, 256, 64, 64], [5, 512, 32, 32], [5, 1024, 16, 16]]);
  assert.ok(typeof info.meta.threshold?.value === 'number');
});

test('predict: every broken bottle scores above every good one, files and JSON lines are written', async () => {
  const out = path.join(tmp, 'pred');
  const r = await run('predict', '-t', store, goodDir, brokenDir, '-o', out, '--json', '--quiet');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; score: number; label?: string; heatmap: string; map: string });
  assert.equal(lines.length, 10);
  const good = lines.filter((l) => l.file.includes('/good/')).map((l) => l.score);
  const broken = lines.filter((l) => l.file.includes('/broken_large/')).map((l) => l.score);
  assert.equal(good.length, 5);
  assert.ok(Math.min(...broken) > Math.max(...good), `good ${good} vs broken ${broken}`);
  for (const l of lines) {
    assert.ok(existsSync(l.heatmap) && existsSync(l.map), l.file);
    assert.equal(readFileSync(l.map).length, 128 + 900 * 900 * 4); // .npy: header + float32 map at the image's own 900x900 (--map-size original)
  }
  // Same stems in two folders must not overwrite each other.
  assert.equal(new Set(lines.map((l) => l.heatmap)).size, 10);
  // The calibrated threshold flags most broken bottles.
  assert.ok(lines.filter((l) => l.file.includes('/broken_large/') && l.label === 'defect').length >= 4);
});

test('predict --backbone-thread prints the same scores as without it', async () => {
  const files = [path.join(goodDir, '000.png'), path.join(brokenDir, '000.png'), path.join(goodDir, '001.png')];
  const scores = async (...extra: string[]): Promise<number[]> => {
    const r = await run('predict', '-t', store, ...files, '--json', '--quiet', ...extra);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { score: number }).score);
  };
  const plain = await scores();
  assert.equal(plain.length, 3);
  assert.deepEqual(await scores('--backbone-thread', '--concurrency', '3'), plain);
});

test('predict --select-k N matches each image against N templates; --select-k 5 (all) and all equal plain predict; a bad N is a usage error', async () => {
  const files = [path.join(goodDir, '000.png'), path.join(brokenDir, '000.png')];
  const predict = async (...extra: string[]): Promise<{ score: number; templates: number }[]> => {
    const r = await run('predict', '-t', store, ...files, '--json', '--quiet', ...extra);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim().split('\n').map((l) => {
      const { score, templates } = JSON.parse(l) as { score: number; templates: number };
      return { score, templates };
    });
  };
  const plain = await predict();
  assert.deepEqual(await predict('--select-k', '5'), plain);
  assert.deepEqual(await predict('--select-k', 'all'), plain);
  const two = await predict('--select-k', '2');
  assert.deepEqual(two.map((p) => p.templates), [2, 2]);
  assertCleanError(await run('predict', '-t', store, files[0]!, '--select-k', '0'), 'select-k');
});

test('add appends images (hot update) without recomputing the others', async () => {
  const copy = path.join(tmp, 'add.hetmm');
  copyFileSync(store, copy);
  const r = await run('add', '-t', copy, path.join(goodDir, '000.png'), '--quiet');
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse((await run('info', copy, '--json')).stdout) as { count: number; files: string[] };
  assert.equal(info.count, 6);
  assert.ok(info.files[5]!.endsWith('000.png'));
  // The added image now matches itself: its score drops to ~0 (int8 end to end, the default: int8 matching's rounding leaves ~4e-3).
  const p = JSON.parse((await run('predict', '-t', copy, path.join(goodDir, '000.png'), '--json', '--quiet')).stdout) as { score: number };
  assert.ok(p.score < 1e-2, String(p.score));
});

test('a truncated store is refused with one clear line', async () => {
  const bad = path.join(tmp, 'truncated.hetmm');
  const bytes = readFileSync(store);
  writeFileSync(bad, bytes.subarray(0, bytes.length - 1000));
  assertCleanError(await run('predict', '-t', bad, path.join(goodDir, '000.png')), 'truncated');
  assertCleanError(await run('info', bad), 'truncated');
});

test('an edited store is refused (checksum)', async () => {
  const bad = path.join(tmp, 'edited.hetmm');
  const bytes = Buffer.from(readFileSync(store));
  bytes[Math.floor(bytes.length / 2)] ^= 0x40;
  writeFileSync(bad, bytes);
  assertCleanError(await run('predict', '-t', bad, path.join(goodDir, '000.png')), 'checksum');
});

test('a store from another backbone is refused', async () => {
  // A store whose recorded backbone is another model (another sha256), built
  // through the library as a user with a different ONNX file would.
  const own = await TemplateStore.load(store);
  const identity = { ...own.identity, name: 'wide_resnet101_2', modelSha256: 'ab'.repeat(32) };
  const foreign = TemplateStore.create(identity);
  const snap = own.snapshot();
  foreign.append(snap.layers.map((l) => (l.data as Float32Array).slice(0, l.shape[1] * l.shape[2] * l.shape[3])), 'x.png');
  const other = path.join(tmp, 'other.hetmm');
  await foreign.save(other);
  const r = await run('predict', '-t', other, path.join(goodDir, '000.png'));
  assertCleanError(r, 'wide_resnet101_2');
});

test('unreadable, non-image and missing inputs, and an empty directory, give clear errors', async () => {
  const text = path.join(tmp, 'notes.png');
  writeFileSync(text, 'this is not an image');
  const r1 = await run('predict', '-t', store, text, '--quiet');
  assertCleanError(r1, 'notes.png');
  const r2 = await run('predict', '-t', store, path.join(tmp, 'missing.png'));
  assertCleanError(r2, 'missing.png');
  const empty = path.join(tmp, 'empty');
  mkdirSync(empty, { recursive: true });
  assertCleanError(await run('fit', empty, '-o', path.join(tmp, 'x.hetmm')), 'empty');
});

test('an image over the decoder pixel limit is refused before decoding', async () => {
  // A PNG header claiming 20000 x 20000 pixels (400 M > the 268 M default limit).
  const png = hugePng(20000, 20000);
  const huge = path.join(tmp, 'huge.png');
  writeFileSync(huge, png);
  const r = await run('predict', '-t', store, huge, '--quiet');
  assertCleanError(r, 'huge.png');
  assert.match(r.stderr, /pixel/i);
});

test('a store fitted with --precision float stays float; predict --int8 matches it in int8: scores within 5e-3 of float matching', async () => {
  const file = path.join(brokenDir, '000.png');
  // the float reference: no int8 backbone beside it, float backbone and matching unless told
  const floatStore = path.join(tmp, 'float.hetmm');
  const fit = await run('fit', trainDir, '-o', floatStore, '--quiet', '--preset', 'bottle', '--precision', 'float', '--no-calibrate');
  assert.equal(fit.code, 0, fit.stderr);
  assert.ok(!existsSync(path.join(tmp, 'float.int8.onnx')));
  const info = JSON.parse((await run('info', floatStore, '--json')).stdout) as { precision: string; backbone: { name: string } };
  assert.equal(info.precision, 'float');
  assert.equal(info.backbone.name, 'resnet50v2-imagenet-l123');
  const float = JSON.parse((await run('predict', '-t', floatStore, file, '--json', '--quiet')).stdout) as { score: number };
  const r = await run('predict', '-t', floatStore, file, '--json', '--quiet', '--int8');
  assert.equal(r.code, 0, r.stderr);
  const int8 = JSON.parse(r.stdout) as { score: number };
  assert.notEqual(int8.score, float.score, 'int8 matching must actually run (it rounds differently)');
  assert.ok(Math.abs(int8.score - float.score) < 5e-3, `${int8.score} vs ${float.score}`);
  assertCleanError(await run('predict', '-t', floatStore, file, '--int8', '--backend', 'reference'), 'int8');
});

test('a tiny 8x8 image is processed', async () => {
  const { default: sharp } = await import('sharp');
  const tiny = path.join(tmp, 'tiny.png');
  await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 120, g: 90, b: 60 } } }).png().toFile(tiny);
  const r = await run('predict', '-t', store, tiny, '--json', '--quiet');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(Number.isFinite((JSON.parse(r.stdout) as { score: number }).score));
});

test('unknown commands and options are usage errors', async () => {
  const r = await run('prdict');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /did you mean "predict"/);
  assertCleanError(await run('predict', '--bogus'), 'bogus');
});

/** A valid 1-bit grey PNG of width x height (all black), small on disk (deflate of zeros). */
function hugePng(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type), data])) >>> 0);
    return Buffer.concat([len, Buffer.from(type), data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // grey
  const rows = Buffer.alloc((1 + Math.ceil(width / 8)) * height);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c;
}
