import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync, mkdirSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { test } from 'node:test';
import type { BackboneIdentity } from '../src/backbone/description.js';
import {
  TemplateStore,
  float16ArrayToFloat32,
  float16BitsToNumber,
  float32ArrayToFloat16,
  float32ToFloat16Bits,
} from '../src/store/index.js';
import { tempDir } from './helpers/io-paths.js';
import { expectHetmm } from './helpers/errors.js';

const tmp = tempDir('store');

const identity: BackboneIdentity = {
  name: 'toy',
  modelSha256: 'ab'.repeat(32),
  inputSize: [32, 32],
  layers: [
    { name: 'l1', channels: 4, height: 8, width: 8, stride: 4 },
    { name: 'l2', channels: 8, height: 4, width: 4, stride: 8 },
    { name: 'l3', channels: 16, height: 2, width: 2, stride: 16 },
  ],
};

/** Deterministic pseudo-random features for image k (a tiny LCG, so tests are reproducible). */
function features(k: number): Float32Array[] {
  let s = (k + 1) * 2654435761;
  const next = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  return identity.layers.map((l) => Float32Array.from({ length: l.channels * l.height * l.width }, next));
}

function makeStore(n: number, dtype: 'float32' | 'float16' = 'float32'): TemplateStore {
  const store = TemplateStore.create(identity, { dtype });
  for (let k = 0; k < n; k++) store.append(features(k), `img${k}.png`);
  return store;
}

// ---------- float16 ----------

/** Every finite non-negative half as a float64, by definition (independent of src/store/float16.ts). */
function halfValue(h: number): number {
  const e = (h >> 10) & 31;
  const m = h & 1023;
  const v = e === 0 ? m / 1024 * 2 ** -14 : (1 + m / 1024) * 2 ** (e - 15);
  return h & 0x8000 ? -v : v;
}
const positiveHalves = Array.from({ length: 0x7c00 }, (_, h) => halfValue(h)); // 0 .. 65504, ascending

/** Reference f64 -> half bits: nearest half by search, ties to the even (lower-bit-0) one; >= 65520 -> Infinity. */
function referenceToHalf(x: number): number {
  if (Number.isNaN(x)) return -1;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = positiveHalves.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (positiveHalves[mid] <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - positiveHalves[lo];
  const dHi = positiveHalves[hi] - a;
  const pick = dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi;
  return sign | (a >= positiveHalves[hi] ? hi : pick);
}

test('float16: all 65536 half values decode exactly and re-encode to themselves', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const decoded = float16ArrayToFloat32(all);
  for (let h = 0; h < 65536; h++) {
    const e = (h >> 10) & 31;
    const m = h & 1023;
    if (e === 31 && m !== 0) {
      assert.ok(Number.isNaN(decoded[h]) && Number.isNaN(float16BitsToNumber(h)));
      const back = float32ToFloat16Bits(decoded[h]);
      assert.equal(back & 0x7c00, 0x7c00);
      assert.notEqual(back & 0x3ff, 0, 'NaN stays NaN');
      continue;
    }
    const ref = e === 31 ? (h & 0x8000 ? -Infinity : Infinity) : halfValue(h);
    assert.ok(Object.is(decoded[h], ref), `half ${h.toString(16)}: ${decoded[h]} vs ${ref}`);
    assert.equal(float32ToFloat16Bits(ref), h);
  }
});

test('float16: rounding to nearest even at every midpoint and its float32 neighbours', () => {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let h = 0; h < 0x7bff; h++) {
    const mid = (positiveHalves[h] + positiveHalves[h + 1]) / 2; // exact in float32
    f[0] = mid;
    assert.equal(f[0], mid);
    for (const delta of [-1, 0, 1]) {
      u[0] = (u[0] + delta) >>> 0;
      const x = f[0];
      const expected = referenceToHalf(x);
      assert.equal(float32ToFloat16Bits(x), expected, `x=${x} (midpoint of ${h.toString(16)}) delta ${delta}`);
      assert.equal(float32ToFloat16Bits(-x), expected | 0x8000);
      f[0] = mid;
    }
  }
  // overflow boundary: 65504 + 16 = 65520 is a tie that rounds to Infinity (65504 is odd)
  assert.equal(float32ToFloat16Bits(65519.99), 0x7bff);
  assert.equal(float32ToFloat16Bits(65520), 0x7c00);
  assert.equal(float32ToFloat16Bits(1e30), 0x7c00);
  assert.equal(float32ToFloat16Bits(-Infinity), 0xfc00);
  // underflow: half the smallest subnormal ties to 0, just above rounds up
  assert.equal(float32ToFloat16Bits(2 ** -25), 0);
  assert.equal(float32ToFloat16Bits(2 ** -25 * 1.0001), 1);
  assert.equal(float32ToFloat16Bits(-0), 0x8000);
  assert.equal(float32ToFloat16Bits(1e-30), 0);
});

test('float16: 200000 random float32 values across all exponents match the float64 reference', () => {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  let s = 12345;
  for (let i = 0; i < 200000; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    // exponents around the half range (2^-30 .. 2^17) plus a few random bit patterns
    const exponent = i % 10 === 0 ? (s >>> 23) & 0xff : 97 + (s % 48);
    u[0] = ((s & 1) << 31) | (exponent << 23) | ((s * 2654435761) >>> 9);
    const x = f[0];
    if (Number.isNaN(x)) continue;
    assert.equal(float32ToFloat16Bits(x), referenceToHalf(x), `x=${x}`);
  }
  const arr = Float32Array.from([0.1, -0.5, 1 / 3, 70000]);
  assert.deepEqual([...float32ArrayToFloat16(arr)], [...arr].map(referenceToHalf));
});

// ---------- TemplateStore ----------

test('create/append/layer/snapshot: shapes, contents, validation', () => {
  const store = makeStore(3);
  assert.equal(store.count, 3);
  assert.deepEqual(store.files, ['img0.png', 'img1.png', 'img2.png']);
  const l2 = store.layer(1);
  assert.deepEqual(l2.shape, [3, 8, 4, 4]);
  assert.equal(l2.dtype, 'float32');
  assert.deepEqual(l2.data.subarray(2 * 128, 3 * 128), features(2)[1]);
  assert.ok(store.bytes >= 3 * (256 + 128 + 64) * 4);
  assert.throws(() => store.layer(3), expectHetmm('E_ARGUMENT', '0..2', '3'));
  assert.throws(() => store.append(features(0).slice(0, 2), 'x'), expectHetmm('E_ARGUMENT', '3 layers', '2'));
  const wrong = features(0);
  wrong[2] = new Float32Array(5);
  assert.throws(() => store.append(wrong, 'x'), expectHetmm('E_ARGUMENT', "'l3'", '64', 'length 5'));
  assert.equal(store.count, 3, 'a rejected append changes nothing');
});

test('snapshots stay valid and unchanged across appends (capacity doubling)', () => {
  const store = makeStore(1);
  const snaps = [store.snapshot()];
  const copies = [snaps[0].layers.map((l) => l.data.slice(0, l.shape[0] * l.shape[1] * l.shape[2] * l.shape[3]))];
  for (let k = 1; k < 20; k++) {
    store.append(features(k), `img${k}.png`);
    const snap = store.snapshot();
    snaps.push(snap);
    copies.push(snap.layers.map((l) => l.data.slice(0, l.shape[0] * l.shape[1] * l.shape[2] * l.shape[3])));
  }
  snaps.forEach((snap, i) => {
    assert.equal(snap.count, i + 1);
    assert.equal(snap.files.length, i + 1);
    assert.ok(Object.isFrozen(snap.files));
    snap.layers.forEach((l, j) => {
      assert.equal(l.shape[0], i + 1);
      assert.deepEqual(l.data.slice(0, copies[i][j].length), copies[i][j], `snapshot ${i} layer ${j} changed`);
    });
  });
  // capacity grows geometrically: fewer distinct buffers than appends
  const buffers = new Set(snaps.map((s) => s.layers[0].data));
  assert.ok(buffers.size <= 4, `${buffers.size} reallocations for 20 appends`);
});

test('float16 store: stores round-to-nearest-even halves', () => {
  const store = makeStore(2, 'float16');
  const l = store.layer(0);
  assert.equal(l.dtype, 'float16');
  assert.ok(l.data instanceof Uint16Array);
  const f = features(1)[0];
  for (let i = 0; i < f.length; i++) assert.equal(l.data[f.length + i], referenceToHalf(f[i]));
});

for (const dtype of ['float32', 'float16'] as const) {
  test(`save/load round trip (${dtype}): exact bits, files, meta, alignment, append after load`, async () => {
    const store = makeStore(5, dtype);
    store.meta = { threshold: 0.42, preset: 'fast', pts: { sheets: 2, fromImages: 5 } };
    const file = path.join(tmp, `rt-${dtype}.hetmm`);
    await store.save(file);
    assert.equal(statSync(file).size, store.describe().bytesOnDisk);
    const loaded = await TemplateStore.load(file, { expect: identity });
    assert.equal(loaded.count, 5);
    assert.equal(loaded.dtype, dtype);
    assert.deepEqual(loaded.files, store.files);
    assert.deepEqual(loaded.meta, store.meta);
    assert.deepEqual(loaded.identity, identity);
    for (let i = 0; i < 3; i++) {
      const a = store.layer(i);
      const b = loaded.layer(i);
      assert.deepEqual(b.shape, a.shape);
      const n = a.shape[0] * a.shape[1] * a.shape[2] * a.shape[3];
      assert.deepEqual(new Uint8Array(b.data.buffer, b.data.byteOffset, n * b.data.BYTES_PER_ELEMENT), new Uint8Array(a.data.buffer, a.data.byteOffset, n * a.data.BYTES_PER_ELEMENT));
    }
    // file layout checked independently of the loader
    const bytes = readFileSync(file);
    assert.equal(bytes.subarray(0, 8).toString('latin1'), 'HETMMTS\0');
    assert.equal(bytes.readUInt32LE(8), 2);
    const header = JSON.parse(bytes.subarray(16, 16 + bytes.readUInt32LE(12)).toString('utf8'));
    const dataStart = Math.ceil((16 + bytes.readUInt32LE(12)) / 64) * 64;
    assert.equal(header.layers[1].offset % 64, 0);
    const bpe = dtype === 'float32' ? 4 : 2;
    const firstL2 = dataStart + header.layers[1].offset;
    const expected0 = features(0)[1][0];
    const stored = dtype === 'float32' ? bytes.readFloatLE(firstL2) : bytes.readUInt16LE(firstL2);
    assert.equal(stored, dtype === 'float32' ? Math.fround(expected0) : referenceToHalf(expected0));
    const end = bytes.length - 40;
    assert.deepEqual(bytes.subarray(end, end + 32), createHash('sha256').update(bytes.subarray(0, end)).digest());
    assert.equal(bytes.subarray(end + 32).toString('latin1'), 'HETMMEND');
    assert.equal(header.layers[2].byteLength, 5 * 64 * bpe);

    const snapBefore = loaded.snapshot();
    loaded.append(features(5), 'img5.png');
    assert.equal(loaded.count, 6);
    assert.equal(snapBefore.count, 5);
    const l3 = loaded.layer(2);
    const half = (v: number): number => (dtype === 'float32' ? Math.fround(v) : referenceToHalf(v));
    assert.equal(l3.data[5 * 64 + 7], half(features(5)[2][7]));
    assert.equal(l3.data[4 * 64 + 7], half(features(4)[2][7]));
    await loaded.save(file);
    const again = await TemplateStore.load(file);
    assert.deepEqual(again.files, [...store.files, 'img5.png']);
  });
}

test('empty store round trip and describe()', async () => {
  const store = TemplateStore.create(identity, { dtype: 'float16' });
  const file = path.join(tmp, 'empty.hetmm');
  await store.save(file);
  const loaded = await TemplateStore.load(file);
  assert.equal(loaded.count, 0);
  loaded.append(features(0), 'a.png');
  assert.equal(loaded.layer(0).shape[0], 1);
  const d = makeStore(2).describe();
  assert.equal(d.count, 2);
  assert.equal(d.dtype, 'float32');
  assert.deepEqual(d.layers.map((l) => l.shape), [[2, 4, 8, 8], [2, 8, 4, 4], [2, 16, 2, 2]]);
  assert.equal(d.backbone.modelSha256, identity.modelSha256);
  assert.ok(d.bytesInMemory >= 2 * 448 * 4);
});

test('corruption: truncation, flipped bytes, magic, version, extra bytes -> E_STORE_FORMAT', async () => {
  const file = path.join(tmp, 'good.hetmm');
  await makeStore(4).save(file);
  const good = readFileSync(file);
  const headerLength = good.readUInt32LE(12);
  const bad = path.join(tmp, 'bad.hetmm');
  const tryLoad = async (bytes: Buffer, ...fragments: string[]): Promise<void> => {
    writeFileSync(bad, bytes);
    await assert.rejects(TemplateStore.load(bad), expectHetmm('E_STORE_FORMAT', 'bad.hetmm', ...fragments));
  };
  await tryLoad(good.subarray(0, good.length - 1), `truncated: expected ${good.length} bytes, found ${good.length - 1}`);
  await tryLoad(good.subarray(0, good.length >> 1), `truncated: expected ${good.length} bytes, found ${good.length >> 1}`);
  await tryLoad(good.subarray(0, 10), 'truncated');
  // Version 2: bytes after the base are append records; garbage there is corruption (a torn append is tested in store-concurrency).
  await tryLoad(Buffer.concat([good, Buffer.from('X')]), `append record at byte ${good.length}`, 'bad record magic');
  const flip = (at: number): Buffer => {
    const b = Buffer.from(good);
    b[at] ^= 0x01;
    return b;
  };
  // a byte inside a file name string: still valid JSON, caught by the checksum
  const nameAt = good.indexOf('img2.png', 16) + 3;
  assert.ok(nameAt > 16 && nameAt < 16 + headerLength);
  await tryLoad(flip(nameAt), 'checksum mismatch: file corrupted');
  await tryLoad(flip(16), 'header is not valid JSON'); // the opening brace
  await tryLoad(flip(good.length - 100), 'checksum mismatch');
  await tryLoad(flip(good.length - 40 + 5), 'checksum mismatch'); // in the stored checksum
  await tryLoad(flip(good.length - 3), 'bad end magic');
  await tryLoad(flip(0), 'not a hetmm template store', 'bad magic');
  await tryLoad(Buffer.from('just some text that is long enough'), 'not a hetmm template store');
  const future = Buffer.from(good);
  future.writeUInt32LE(5, 8); // 4: a file with removal records (store-removal.test.ts)
  await tryLoad(future, 'written by a newer hetmm', 'version 5');
  const header = Buffer.from(good);
  header.writeUInt32LE(0x7fffffff, 12);
  await tryLoad(header, 'implausible header length');
  await assert.rejects(TemplateStore.load(path.join(tmp, 'nope.hetmm')), expectHetmm('E_STORE_READ', 'nope.hetmm', 'ENOENT'));
});

test('expect: another backbone, input size or layer shapes -> E_STORE_MISMATCH naming both', async () => {
  const file = path.join(tmp, 'ident.hetmm');
  await makeStore(1).save(file);
  const otherSha = { ...identity, name: 'other', modelSha256: 'cd'.repeat(32) };
  await assert.rejects(TemplateStore.load(file, { expect: otherSha }), expectHetmm('E_STORE_MISMATCH', 'ab'.repeat(32), 'cd'.repeat(32), "'toy'", "'other'"));
  await assert.rejects(TemplateStore.load(file, { expect: { ...identity, inputSize: [64, 64] } }), expectHetmm('E_STORE_MISMATCH', '32x32', '64x64'));
  const layers = identity.layers.map((l, i) => (i === 2 ? { ...l, channels: 32 } : l));
  await assert.rejects(TemplateStore.load(file, { expect: { ...identity, layers } }), expectHetmm('E_STORE_MISMATCH', 'l3[16,2,2]', 'l3[32,2,2]'));
});

test('atomic save: failed writes leave the old file and no temp files', async () => {
  const dir = path.join(tmp, 'atomic');
  mkdirSync(dir);
  const file = path.join(dir, 'store.hetmm');
  await makeStore(2).save(file);
  const before = readFileSync(file);
  for (const failAt of [0, 1, 3]) {
    let calls = 0;
    await assert.rejects(
      makeStore(6).save(file, {
        beforeWrite: () => {
          if (calls++ === failAt) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
        },
      }),
      expectHetmm('E_STORE_WRITE', 'store.hetmm', 'ENOSPC', 'untouched'),
    );
    assert.deepEqual(readdirSync(dir), ['store.hetmm']);
    assert.deepEqual(readFileSync(file), before);
  }
  // a target that cannot be replaced (a directory) and a missing directory
  const asDir = path.join(dir, 'is-a-dir');
  mkdirSync(asDir);
  await assert.rejects(makeStore(1).save(asDir), expectHetmm('E_STORE_WRITE', 'is-a-dir'));
  assert.deepEqual(readdirSync(dir).sort(), ['is-a-dir', 'store.hetmm']);
  await assert.rejects(makeStore(1).save(path.join(dir, 'no', 'such', 'x.hetmm')), expectHetmm('E_STORE_WRITE', 'x.hetmm'));
  // and a successful save replaces the file and leaves no temp file
  await makeStore(3).save(file);
  assert.equal((await TemplateStore.load(file)).count, 3);
  assert.deepEqual(readdirSync(dir).sort(), ['is-a-dir', 'store.hetmm']);
});
