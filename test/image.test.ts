import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import sharp from 'sharp';
import {
  encodeMapPng16,
  encodeMaskPng,
  jetColour,
  loadImage,
  loadImagesFrom,
  loadMask,
  renderHeatmapOverlay,
  resizeBilinearU8,
  saveFloatMap,
} from '../src/image/index.js';
import { datasetsDir, tempDir } from './helpers/io-paths.js';
import { PIL_GOLDEN, PIL_SOURCE_SIZE, pilSourcePixel } from './helpers/io-pil-golden.js';
import { encodeBmpPalette8, encodeBmpRgb, encodeTiffGrey16 } from './helpers/io-writers.js';
import { expectHetmm } from './helpers/errors.js';

const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle/train/good/000.png');
const bottleMask = path.join(datasetsDir, 'mvtec-bottle-xs/bottle/ground_truth/broken_large/000_mask.png');
const gridDir = path.join(datasetsDir, 'mvtec-grid-subset/grid/train/good');
const grid = path.join(gridDir, readdirSync(gridDir).sort()[0]);
const tileDir = path.join(datasetsDir, 'magnetic-tile/magnetic_tile/train/good');
const tile = path.join(tileDir, readdirSync(tileDir).sort()[0]);
const hazelDir = path.join(datasetsDir, 'hazelnut-toy/hazelnut/train/good');
const hazelnut = path.join(hazelDir, readdirSync(hazelDir).sort()[0]);
const tmp = tempDir('image');

function channelMeans(data: Float32Array, h: number, w: number): number[] {
  const plane = h * w;
  return [0, 1, 2].map((c) => {
    let s = 0;
    for (let i = 0; i < plane; i++) s += data[c * plane + i];
    return s / plane;
  });
}

async function fullResMeans(file: string): Promise<number[]> {
  const { data, info } = await sharp(file).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const sums = [0, 0, 0];
  for (let i = 0; i < info.width * info.height; i++) for (let c = 0; c < 3; c++) sums[c] += data[i * 3 + c];
  return sums.map((s) => s / (info.width * info.height) / 255);
}

test('bilinear resize matches Pillow BILINEAR bit for bit (golden from Pillow)', () => {
  const [h, w] = PIL_SOURCE_SIZE;
  const src = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) src[(y * w + x) * 3 + c] = pilSourcePixel(y, x, c);
  for (const g of PIL_GOLDEN) {
    const out = resizeBilinearU8(src, h, w, 3, g.size[0], g.size[1]);
    assert.deepEqual([...out], g.hwc, `size ${g.size.join('x')}`);
  }
});

test('PNG RGB (bottle 900x900): 256x256 CHW in [0,1], means preserved', async () => {
  const img = await loadImage(bottle);
  assert.equal(img.height, 256);
  assert.equal(img.width, 256);
  assert.equal(img.originalHeight, 900);
  assert.equal(img.originalWidth, 900);
  assert.equal(img.source, bottle);
  assert.equal(img.data.length, 3 * 256 * 256);
  assert.ok(img.data.every((v) => v >= 0 && v <= 1));
  const got = channelMeans(img.data, 256, 256);
  const ref = await fullResMeans(bottle);
  for (let c = 0; c < 3; c++) assert.ok(Math.abs(got[c] - ref[c]) < 0.01, `channel ${c}: ${got[c]} vs ${ref[c]}`);
});

test('PNG grey (grid 1024) is replicated to 3 equal channels', async () => {
  const img = await loadImage(grid);
  assert.equal(img.originalWidth, 1024);
  const plane = 256 * 256;
  for (let i = 0; i < plane; i++) {
    assert.equal(img.data[i], img.data[plane + i]);
    assert.equal(img.data[i], img.data[2 * plane + i]);
  }
  const ref = await fullResMeans(grid);
  assert.ok(Math.abs(channelMeans(img.data, 256, 256)[0] - ref[0]) < 0.01);
});

test('JPEG grey (magnetic tile) and RGB (hazelnut)', async () => {
  const meta = await sharp(tile).metadata();
  const t = await loadImage(tile, { size: [128, 96] });
  assert.equal(t.height, 128);
  assert.equal(t.width, 96);
  assert.equal(t.originalWidth, meta.width);
  assert.equal(t.originalHeight, meta.height);
  const plane = 128 * 96;
  assert.deepEqual(t.data.subarray(0, plane), t.data.subarray(plane, 2 * plane));
  const h = await loadImage(hazelnut);
  assert.equal(h.originalWidth, 512);
  const means = channelMeans(h.data, 256, 256);
  assert.notEqual(means[0], means[2]);
  const ref = await fullResMeans(hazelnut);
  for (let c = 0; c < 3; c++) assert.ok(Math.abs(means[c] - ref[c]) < 0.01);
});

test('16-bit PNG keeps 16-bit precision', async () => {
  const w = 10;
  const h = 6;
  const values = new Uint16Array(w * h * 3);
  for (let i = 0; i < values.length; i++) values[i] = 1000 + (i % 3) * 7; // low bytes differ from any 8-bit value * 257
  const file = path.join(tmp, 'sixteen.png');
  await sharp(values, { raw: { width: w, height: h, channels: 3 } }).toColourspace('rgb16').png().toFile(file);
  assert.equal((await sharp(file).metadata()).depth, 'ushort');
  const img = await loadImage(file, { size: [h, w] });
  const plane = h * w;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) assert.ok(Math.abs(img.data[c * plane + i] - (1000 + c * 7) / 65535) < 1e-6);
  }
  // resized, a constant stays that constant
  const up = await loadImage(file, { size: [33, 17] });
  assert.ok(Math.abs(up.data[0] - 1000 / 65535) < 1e-6);
});

test('16-bit grey TIFF (hand-written) decodes to exact values', async () => {
  const w = 5;
  const h = 4;
  const values = new Uint16Array(w * h);
  for (let i = 0; i < values.length; i++) values[i] = 30000 + i * 11;
  const file = path.join(tmp, 'grey16.tif');
  writeFileSync(file, encodeTiffGrey16(values, w, h));
  const img = await loadImage(file, { size: [h, w] });
  const plane = w * h;
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(img.data[c * plane + i] - values[i] / 65535) < 1e-6, `pixel ${i} channel ${c}`);
  }
});

test('BMP 24-bit, 32-bit, top-down and 8-bit palette decode exactly', async () => {
  const w = 7; // odd width exercises row padding
  const h = 5;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 29 + 3) % 256;
  const check = (img: { data: Float32Array }, label: string): void => {
    const plane = w * h;
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) assert.equal(Math.round(img.data[c * plane + i] * 255), rgb[i * 3 + c], `${label} pixel ${i} channel ${c}`);
    }
  };
  for (const [bpp, topDown] of [[24, false], [32, false], [24, true]] as const) {
    const file = path.join(tmp, `rgb${bpp}${topDown ? 'td' : ''}.bmp`);
    writeFileSync(file, encodeBmpRgb(rgb, w, h, bpp, topDown));
    check(await loadImage(file, { size: [h, w] }), file);
  }
  const palette: Array<[number, number, number]> = [
    [255, 0, 0],
    [0, 128, 255],
    [12, 34, 56],
  ];
  const indices = new Uint8Array(w * h);
  for (let i = 0; i < indices.length; i++) indices[i] = i % 3;
  const file = path.join(tmp, 'pal8.bmp');
  writeFileSync(file, encodeBmpPalette8(indices, w, h, palette));
  const img = await loadImage(file, { size: [h, w] });
  for (let i = 0; i < w * h; i++) {
    for (let c = 0; c < 3; c++) assert.equal(Math.round(img.data[c * w * h + i] * 255), palette[indices[i]][c]);
  }
  // and resized like any other image
  const big = await loadImage(file);
  assert.equal(big.height, 256);
  // truncated BMP
  const truncated = path.join(tmp, 'trunc.bmp');
  writeFileSync(truncated, encodeBmpRgb(rgb, w, h, 24).subarray(0, 70));
  await assert.rejects(loadImage(truncated), expectHetmm('E_IMAGE_DECODE', 'trunc.bmp', 'truncated'));
  await assert.rejects(loadImage(file, { maxPixels: 10 }), expectHetmm('E_IMAGE_TOO_LARGE', 'pal8.bmp', '10'));
});

test('RGBA: alpha is dropped, not composited', async () => {
  const px = Buffer.alloc(3 * 2 * 4);
  for (let i = 0; i < 6; i++) px.set([10, 200, 30, i === 0 ? 0 : 128], i * 4);
  const file = path.join(tmp, 'rgba.png');
  await sharp(px, { raw: { width: 3, height: 2, channels: 4 } }).png().toFile(file);
  const img = await loadImage(file, { size: [2, 3] });
  const plane = 6;
  for (let i = 0; i < plane; i++) {
    assert.equal(Math.round(img.data[i] * 255), 10);
    assert.equal(Math.round(img.data[plane + i] * 255), 200);
    assert.equal(Math.round(img.data[2 * plane + i] * 255), 30);
  }
});

test('tiny images (1x1, 8x8) are upscaled; constants stay constant; gradients stay monotone', async () => {
  const one = path.join(tmp, 'one.png');
  await sharp(Buffer.from([40, 80, 120]), { raw: { width: 1, height: 1, channels: 3 } }).png().toFile(one);
  const a = await loadImage(one);
  assert.equal(a.originalWidth, 1);
  const plane = 256 * 256;
  for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i += 997) assert.equal(Math.round(a.data[c * plane + i] * 255), [40, 80, 120][c]);

  // 8x8 horizontal gradient 0..245 step 35: rows identical, columns non-decreasing, ends exact.
  const grad = Buffer.alloc(8 * 8);
  for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) grad[y * 8 + x] = x * 35;
  const g = path.join(tmp, 'grad8.png');
  await sharp(grad, { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(g);
  const up = await loadImage(g, { size: [40, 256] });
  for (let y = 0; y < 40; y++) {
    const row = up.data.subarray(y * 256, y * 256 + 256);
    assert.equal(Math.round(row[0] * 255), 0);
    assert.equal(Math.round(row[255] * 255), 245);
    for (let x = 1; x < 256; x++) assert.ok(row[x] >= row[x - 1], `row ${y} col ${x}`);
    assert.deepEqual(row, up.data.subarray(0, 256));
  }
  // downscale of a linear ramp: interior pixels equal the ramp at the pixel centre
  const ramp = Buffer.alloc(64);
  for (let x = 0; x < 64; x++) ramp[x] = x * 4;
  const r = path.join(tmp, 'ramp.png');
  await sharp(ramp, { raw: { width: 64, height: 1, channels: 1 } }).png().toFile(r);
  const down = await loadImage(r, { size: [1, 16] });
  for (let x = 2; x < 14; x++) {
    const centre = (x + 0.5) * 4 - 0.5; // source coordinate of output pixel centre
    assert.ok(Math.abs(down.data[x] * 255 - centre * 4) <= 0.5, `x=${x}: ${down.data[x] * 255} vs ${centre * 4}`);
  }
});

test('errors: corrupt, truncated, text, empty, missing, directory, over the pixel limit', async () => {
  const rnd = path.join(tmp, 'random.png');
  writeFileSync(rnd, randomBytes(4096));
  await assert.rejects(loadImage(rnd), expectHetmm('E_IMAGE_DECODE', 'random.png'));
  const truncated = path.join(tmp, 'truncated.png');
  const bytes = readFileSync(bottle);
  writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await assert.rejects(loadImage(truncated), expectHetmm('E_IMAGE_DECODE', 'truncated.png'));
  const text = path.join(tmp, 'notes.jpg');
  writeFileSync(text, 'this is a text file, not an image\n');
  await assert.rejects(loadImage(text), expectHetmm('E_IMAGE_DECODE', 'notes.jpg'));
  const empty = path.join(tmp, 'empty.png');
  writeFileSync(empty, '');
  await assert.rejects(loadImage(empty), expectHetmm('E_IMAGE_DECODE', 'empty.png'));
  await assert.rejects(loadImage(path.join(tmp, 'missing.png')), expectHetmm('E_IMAGE_READ', 'missing.png', 'no such file'));
  await assert.rejects(loadImage(tmp), expectHetmm('E_IMAGE_READ'));
  await assert.rejects(loadImage(bottle, { maxPixels: 1000 }), expectHetmm('E_IMAGE_TOO_LARGE', bottle, '1000'));
  await assert.rejects(loadImage(bottle, { size: [0, 5] as [number, number] }), expectHetmm('E_ARGUMENT', '[0,5]'));
  // within the limit it loads
  assert.equal((await loadImage(bottle, { maxPixels: 900 * 900 })).originalWidth, 900);
});

test('masks: bilinear then > 0.5; grey, RGB and 1-bit PNG', async () => {
  // 128/255 > 0.5 -> 1; 127/255 < 0.5 -> 0
  for (const [v, expected] of [[128, 1], [127, 0], [255, 1], [0, 0]] as const) {
    const f = path.join(tmp, `mask${v}.png`);
    await sharp(Buffer.alloc(12 * 10, v), { raw: { width: 12, height: 10, channels: 1 } }).png().toFile(f);
    const m = await loadMask(f, [5, 7]);
    assert.equal(m.length, 35);
    assert.ok(m.every((x) => x === expected), `value ${v}`);
  }
  // left half white, 8 -> 4 wide: exactly the left two columns
  const half = Buffer.alloc(8 * 2);
  for (let y = 0; y < 2; y++) for (let x = 0; x < 4; x++) half[y * 8 + x] = 255;
  const hf = path.join(tmp, 'half.png');
  await sharp(half, { raw: { width: 8, height: 2, channels: 1 } }).png().toFile(hf);
  assert.deepEqual([...(await loadMask(hf, [2, 4]))], [1, 1, 0, 0, 1, 1, 0, 0]);
  // RGB white square
  const rgb = Buffer.alloc(4 * 4 * 3);
  for (let i = 0; i < 4; i++) rgb.fill(255, i * 3, i * 3 + 3);
  const rf = path.join(tmp, 'rgbmask.png');
  await sharp(rgb, { raw: { width: 4, height: 4, channels: 3 } }).png().toFile(rf);
  assert.deepEqual([...(await loadMask(rf, [4, 4]))], [1, 1, 1, 1, ...new Array(12).fill(0)]);
  // 1-bit palette PNG
  const bits = Buffer.from([0, 255, 255, 0]);
  const bf = path.join(tmp, 'onebit.png');
  await sharp(bits, { raw: { width: 2, height: 2, channels: 1 } }).png({ palette: true, colours: 2 }).toFile(bf);
  assert.equal((await sharp(bf).metadata()).bitsPerSample, 1);
  assert.deepEqual([...(await loadMask(bf, [2, 2]))], [0, 1, 1, 0]);
  // real mask: defect fraction preserved within 1%
  const m = await loadMask(bottleMask, [256, 256]);
  assert.ok(m.every((x) => x === 0 || x === 1));
  const { data } = await sharp(bottleMask).greyscale().raw().toBuffer({ resolveWithObject: true });
  const refFraction = data.reduce((s, v) => s + (v > 127 ? 1 : 0), 0) / data.length;
  const fraction = m.reduce((s, v) => s + v, 0) / m.length;
  assert.ok(refFraction > 0.01);
  assert.ok(Math.abs(fraction - refFraction) < 0.01, `${fraction} vs ${refFraction}`);
});

test('loadImagesFrom: sorted, non-recursive, extension filter, errors', async () => {
  const dir = path.join(tmp, 'list');
  mkdirSync(path.join(dir, 'sub.png'), { recursive: true });
  for (const n of ['b.jpg', 'a.PNG', 'Z.BMP', 'c.txt', 'd.TIFF', 'e.jpeg']) writeFileSync(path.join(dir, n), 'x');
  const files = await loadImagesFrom([dir, bottle]);
  assert.deepEqual(files, ['Z.BMP', 'a.PNG', 'b.jpg', 'd.TIFF', 'e.jpeg'].map((n) => path.join(dir, n)).concat([bottle]));
  const empty = path.join(tmp, 'emptydir');
  mkdirSync(empty);
  writeFileSync(path.join(empty, 'readme.txt'), 'x');
  await assert.rejects(loadImagesFrom([empty]), expectHetmm('E_NO_IMAGES', 'emptydir'));
  await assert.rejects(loadImagesFrom([]), expectHetmm('E_NO_IMAGES'));
  // A missing entry stays in the list: it fails on its own when loaded, and the batch goes on (issue 8, observation 3).
  assert.deepEqual(await loadImagesFrom([path.join(tmp, 'nope'), bottle]), [path.join(tmp, 'nope'), bottle]);
  await assert.rejects(loadImage(path.join(tmp, 'nope')), expectHetmm('E_IMAGE_READ', 'nope', 'no such file'));
});

test('encodeMapPng16 scales the range to 0..65535 and clamps', async () => {
  const map = new Float32Array([0.25, 2.25, 1.25, -5, 99, NaN]); // exact in float32: (1.25-0.25)/2 = 0.5
  const png = await encodeMapPng16(map, 2, 3, [0.25, 2.25]);
  const meta = await sharp(png).metadata();
  assert.equal(meta.channels, 1);
  assert.equal(meta.depth, 'ushort');
  const { data, info } = await sharp(png).toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 1);
  const v = new Uint16Array(data.buffer, data.byteOffset, 6);
  assert.deepEqual([...v], [0, 65535, 32768, 0, 65535, 0]);
  await assert.rejects(encodeMapPng16(map, 2, 2, [0, 1]), expectHetmm('E_ARGUMENT', '4', '6'));
  await assert.rejects(encodeMapPng16(map, 2, 3, [1, 1]), expectHetmm('E_ARGUMENT', 'lo < hi'));
});

test('encodeMaskPng writes 0/255 grey', async () => {
  const png = await encodeMaskPng(new Uint8Array([0, 1, 1, 0, 0, 1]), 2, 3);
  const meta = await sharp(png).metadata();
  assert.equal(meta.channels, 1);
  assert.equal(meta.depth, 'uchar');
  const { data, info } = await sharp(png).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 1);
  assert.deepEqual([...data], [0, 255, 255, 0, 0, 255]);
});

test('heat-map overlay: jet colours, alpha blend, model and original sizes', async () => {
  assert.deepEqual(jetColour(0), [0, 0, 128]);
  assert.deepEqual(jetColour(0.5), [128, 255, 128]);
  assert.deepEqual(jetColour(1), [128, 0, 0]);
  const img = await loadImage(bottle, { size: [64, 64] });
  const hot = new Float32Array(16 * 16).fill(1);
  const full = await renderHeatmapOverlay(img, hot, 16, 16, { range: [0, 1], alpha: 1 });
  const a = await sharp(full).raw().toBuffer({ resolveWithObject: true });
  assert.equal(a.info.width, 64);
  for (let i = 0; i < 64 * 64; i++) assert.deepEqual([a.data[i * 3], a.data[i * 3 + 1], a.data[i * 3 + 2]], [128, 0, 0]);
  const none = await renderHeatmapOverlay(img, hot, 16, 16, { range: [0, 1], alpha: 0 });
  const b = await sharp(none).raw().toBuffer({ resolveWithObject: true });
  const plane = 64 * 64;
  for (let i = 0; i < plane; i += 37) for (let c = 0; c < 3; c++) assert.equal(b.data[i * 3 + c], Math.round(img.data[c * plane + i] * 255));
  const original = await renderHeatmapOverlay(bottle, hot, 16, 16, { range: [0, 1], outSize: 'original' });
  const meta = await sharp(original).metadata();
  assert.equal(meta.width, 900);
  assert.equal(meta.height, 900);
  const fromBuffer = await loadImage(readFileSync(bottle), { size: [64, 64] });
  await assert.rejects(renderHeatmapOverlay(fromBuffer, hot, 16, 16, { range: [0, 1], outSize: 'original' }), expectHetmm('E_ARGUMENT'));
});

test('heat-map overlay and mask: every pixel is jetColour blended over the image, at any PNG compression level', async () => {
  const img = await loadImage(bottle, { size: [32, 32] });
  const map = new Float32Array(32 * 32).map((_, i) => ((i * 7919) % 1009) / 1009 - 0.1); // values below, inside and above the range
  const plane = 32 * 32;
  const expected = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    const t = (map[i]! - 0) / 0.8;
    const colour = jetColour(t);
    for (let c = 0; c < 3; c++) expected[i * 3 + c] = Math.round(0.7 * Math.round(Math.min(1, Math.max(0, img.data[c * plane + i]!)) * 255) + 0.3 * colour[c]!);
  }
  for (const compressionLevel of [undefined, 1, 9]) {
    const png = await renderHeatmapOverlay(img, map, 32, 32, { range: [0, 0.8], alpha: 0.3, ...(compressionLevel === undefined ? {} : { compressionLevel }) });
    const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual(new Uint8Array(data), expected, `level ${compressionLevel ?? 'default'}`);
    const mask = await encodeMaskPng(new Uint8Array([0, 1, 1, 0, 0, 1]), 2, 3, compressionLevel === undefined ? {} : { compressionLevel });
    assert.deepEqual([...(await sharp(mask).toColourspace('b-w').raw().toBuffer())], [0, 255, 255, 0, 0, 255]);
  }
  await assert.rejects(renderHeatmapOverlay(img, map, 32, 32, { range: [0, 1], compressionLevel: 10 }), expectHetmm('E_ARGUMENT', 'compressionLevel'));
  await assert.rejects(encodeMaskPng(new Uint8Array(1), 1, 1, { compressionLevel: 1.5 }), expectHetmm('E_ARGUMENT', 'compressionLevel'));
});

test('saveFloatMap writes a valid .npy (float32, shape (h, w))', async () => {
  const map = new Float32Array([1.5, -2.25, 3e-8, 65504, 0, -0]);
  const file = path.join(tmp, 'map.npy');
  await saveFloatMap(file, map, 2, 3);
  const bytes = readFileSync(file);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x93, ...Buffer.from('NUMPY'), 1, 0]);
  const headerLength = bytes.readUInt16LE(8);
  const header = bytes.subarray(10, 10 + headerLength).toString('latin1');
  assert.equal((10 + headerLength) % 64, 0);
  assert.ok(header.endsWith('\n'));
  assert.match(header, /'descr': '<f4'/);
  assert.match(header, /'fortran_order': False/);
  assert.match(header, /'shape': \(2, 3\)/);
  assert.equal(bytes.length, 10 + headerLength + 24);
  for (let i = 0; i < 6; i++) assert.equal(bytes.readFloatLE(10 + headerLength + i * 4), map[i]);
});
