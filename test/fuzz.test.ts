/**
 * Property-based fuzzing (fast-check, fixed seeds): damaged template stores
 * and damaged PNG/JPEG/BMP/TIFF files. Every outcome must be a result or a
 * HetmmError with the right code, never another exception, a hang or an
 * allocation out of proportion to the file.
 *
 * A store that still loads after damage must hold a prefix of the original
 * templates with their exact features (a torn last append is dropped,
 * anything else is refused), and must accept a further append.
 *
 * HETMM_FUZZ_RUNS=N sets the runs per property (default 300: about 5 s in all on the 2-core development VM);
 * HETMM_FUZZ_SEED=S changes the seed.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import sharp from 'sharp';
import type { BackboneIdentity } from '../src/backbone/description.js';
import { HetmmError, type HetmmErrorCode } from '../src/errors.js';
import { decodeRgb, loadImage } from '../src/image/index.js';
import { TemplateStore } from '../src/store/index.js';
import { tempDir } from './helpers/io-paths.js';
import { encodeBmpRgb } from './helpers/io-writers.js';
import { checkStoreContents, featuresOf } from './helpers/store-fixtures.js';

function fuzzSettings(): { runs: number; seed: number } {
  const runs = Number(process.env['HETMM_FUZZ_RUNS'] ?? '300');
  const seed = Number(process.env['HETMM_FUZZ_SEED'] ?? '20261130');
  return { runs: Number.isInteger(runs) && runs > 0 ? runs : 300, seed: Number.isInteger(seed) ? seed : 20261130 };
}
const { runs, seed } = fuzzSettings();
const tmp = tempDir('fuzz');

const tiny: BackboneIdentity = {
  name: 'toy-fuzz',
  modelSha256: 'ef'.repeat(32),
  inputSize: [16, 16],
  layers: [
    { name: 'l1', channels: 4, height: 4, width: 4, stride: 4 },
    { name: 'l2', channels: 8, height: 2, width: 2, stride: 8 },
  ],
};

// ---------- mutations ----------

type Mutation =
  | { kind: 'truncate'; at: number }
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'splice'; at: number; remove: number; insert: Uint8Array }
  | { kind: 'extend'; bytes: Uint8Array }
  | { kind: 'overwrite'; anchor: number; delta: number; bytes: Uint8Array }
  | { kind: 'uint32'; anchor: number; delta: number; value: number; bigEndian: boolean };

/** Mutations; `anchor` picks one of the format's interesting offsets (headers, record starts). */
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), remove: fc.integer({ min: 0, max: 64 }), insert: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ kind: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 256 }) }),
  fc.record({ kind: fc.constant('overwrite' as const), anchor: fc.nat(), delta: fc.integer({ min: 0, max: 48 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({
    kind: fc.constant('uint32' as const),
    anchor: fc.nat(),
    delta: fc.integer({ min: 0, max: 40 }),
    value: fc.oneof(fc.constant(0), fc.constant(0xffffffff), fc.constant(0x7fffffff), fc.constant(0x10000), fc.nat()),
    bigEndian: fc.boolean(),
  }),
);

function mutate(original: Buffer, mutations: readonly Mutation[], anchors: readonly number[]): Buffer {
  let b = Buffer.from(original);
  for (const m of mutations) {
    const len = Math.max(1, b.length);
    switch (m.kind) {
      case 'truncate':
        b = b.subarray(0, m.at % len);
        break;
      case 'flip':
        if (b.length > 0) b[m.at % b.length] ^= 1 << m.bit;
        break;
      case 'splice': {
        const at = m.at % len;
        b = Buffer.concat([b.subarray(0, at), Buffer.from(m.insert), b.subarray(Math.min(b.length, at + m.remove))]);
        break;
      }
      case 'extend':
        b = Buffer.concat([b, Buffer.from(m.bytes)]);
        break;
      case 'overwrite': {
        const at = anchors[m.anchor % anchors.length]! + m.delta;
        for (let i = 0; i < m.bytes.length && at + i < b.length; i++) b[at + i] = m.bytes[i]!;
        break;
      }
      case 'uint32': {
        const at = anchors[m.anchor % anchors.length]! + m.delta;
        if (at + 4 <= b.length) {
          if (m.bigEndian) b.writeUInt32BE(m.value >>> 0, at);
          else b.writeUInt32LE(m.value >>> 0, at);
        }
        break;
      }
    }
  }
  return b;
}

const mutationsArb = fc.array(mutationArb, { minLength: 1, maxLength: 3 });

/** Fails the property on a hang instead of hanging the suite. */
async function withinSeconds<T>(seconds: number, what: string, run: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${seconds} s`)), seconds * 1000);
  });
  try {
    return await Promise.race([run(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function expectCodes(e: unknown, codes: readonly HetmmErrorCode[], what: string): void {
  if (!(e instanceof HetmmError)) throw new Error(`${what}: not a HetmmError: ${e instanceof Error ? e.stack : String(e)}`);
  assert.ok(codes.includes(e.code), `${what}: code ${e.code} (${e.message}), expected one of ${codes.join(', ')}`);
}

// ---------- stores ----------

test('fuzz: damaged stores load as a prefix of their templates or fail with E_STORE_FORMAT', async () => {
  const dir = tmp;
  const file = path.join(dir, 'orig.hetmm');
  const names = ['a', 'b', 'c', 'd', 'e', 'f'];
  const store = TemplateStore.create(tiny, { meta: { threshold: { value: 0.5 } } });
  for (const n of names.slice(0, 3)) store.append(featuresOf(n, tiny), n);
  await store.save(file);
  const baseEnd = readFileSync(file).length;
  await store.appendToFile(file, [{ features: featuresOf('d', tiny), file: 'd' }]);
  const record2 = readFileSync(file).length;
  await store.appendToFile(file, [{ features: featuresOf('e', tiny), file: 'e' }, { features: featuresOf('f', tiny), file: 'f' }]);
  const original = readFileSync(file);
  const headerEnd = 16 + original.readUInt32LE(12);
  const anchors = [0, 8, 12, 16, Math.floor(headerEnd / 2), headerEnd - 8, baseEnd - 40, baseEnd, record2, original.length - 40];
  const bad = path.join(dir, 'bad.hetmm');
  let loaded = 0;
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(mutationsArb, fc.boolean(), async (mutations, thenAppend) => {
      const bytes = mutate(original, mutations, anchors);
      writeFileSync(bad, bytes);
      let result: TemplateStore;
      try {
        result = await withinSeconds(10, 'load', () => TemplateStore.load(bad, { expect: tiny }));
      } catch (e) {
        expectCodes(e, ['E_STORE_FORMAT', 'E_STORE_MISMATCH'], 'load');
        refused++;
        return;
      }
      loaded++;
      assert.deepEqual(result.files, names.slice(0, result.count), 'a loaded store must be a prefix of the original');
      assert.ok(result.count >= 3, 'the base section cannot be lost silently');
      checkStoreContents(result);
      if (thenAppend) {
        await result.appendToFile(bad, [{ features: featuresOf('z', tiny), file: 'z' }]);
        const again = await TemplateStore.load(bad);
        assert.deepEqual(again.files, [...names.slice(0, result.count - 1), 'z']);
        checkStoreContents(again);
      }
    }),
    { seed, numRuns: runs * 2 },
  );
  assert.ok(loaded > 0 && refused > 0, `loaded ${loaded}, refused ${refused}: the mutations must exercise both outcomes`);
});

// ---------- images ----------

const IMAGE_CODES: readonly HetmmErrorCode[] = ['E_IMAGE_DECODE', 'E_IMAGE_TOO_LARGE'];

async function sampleImages(): Promise<Record<string, { bytes: Buffer; anchors: number[] }>> {
  const w = 24;
  const h = 16;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37 + (i >> 5) * 11) & 0xff;
  const raw = (): ReturnType<typeof sharp> => sharp(Buffer.from(rgb), { raw: { width: w, height: h, channels: 3 } });
  const png = await raw().png().toBuffer();
  const jpeg = await raw().jpeg({ quality: 80 }).toBuffer();
  const tiff = await raw().tiff().toBuffer();
  const bmp = encodeBmpRgb(rgb, w, h, 24);
  // Anchors: the fields decoders trust (PNG IHDR, JPEG SOF, BMP and TIFF headers).
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  return {
    png: { bytes: png, anchors: [0, 8, 16, 20, 24, 33, png.length - 12] },
    jpeg: { bytes: jpeg, anchors: [0, 2, sof >= 0 ? sof : 2, sof >= 0 ? sof + 5 : 4, jpeg.length - 2] },
    bmp: { bytes: bmp, anchors: [0, 2, 10, 14, 18, 22, 28, 30, 34] },
    tiff: { bytes: tiff, anchors: [0, 4, tiff.readUInt32LE(4), tiff.readUInt32LE(4) + 2, tiff.readUInt32LE(4) + 14] },
  };
}

test('fuzz: damaged PNG, JPEG, BMP and TIFF files decode or fail with E_IMAGE_DECODE / E_IMAGE_TOO_LARGE', async () => {
  const samples = await sampleImages();
  for (const [format, { bytes, anchors }] of Object.entries(samples)) {
    // the undamaged file decodes
    const clean = await loadImage(bytes, { size: [8, 8] });
    assert.equal(clean.originalWidth, 24, format);
    let decoded = 0;
    let refused = 0;
    const rssBefore = process.memoryUsage().rss;
    await fc.assert(
      fc.asyncProperty(mutationsArb, async (mutations) => {
        const damaged = mutate(bytes, mutations, anchors);
        try {
          const image = await withinSeconds(10, `${format} decode`, () => loadImage(damaged, { size: [8, 8], maxPixels: 1 << 22 }));
          assert.equal(image.data.length, 3 * 8 * 8);
          assert.ok(image.data.every((v) => Number.isFinite(v) && v >= 0 && v <= 1), `${format}: values outside [0, 1]`);
          assert.ok(image.originalWidth * image.originalHeight <= 1 << 22);
          decoded++;
        } catch (e) {
          expectCodes(e, IMAGE_CODES, format);
          refused++;
        }
      }),
      { seed, numRuns: runs },
    );
    // No decode may allocate out of proportion: 4 Mpx at most by the limit, so well under 1 GiB in all.
    assert.ok(process.memoryUsage().rss - rssBefore < 1024 * 2 ** 20, `${format}: memory grew by ${(process.memoryUsage().rss - rssBefore) / 2 ** 20} MiB`);
    assert.ok(refused > 0, `${format}: no mutation was refused (decoded ${decoded})`);
  }
});

test('fuzz: a header claiming a huge image is refused by the pixel limit before decoding', async () => {
  const { png } = await sampleImages();
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 2049, max: 0x7fffffff }), fc.integer({ min: 2049, max: 0x7fffffff }), async (w, h) => {
      const b = Buffer.from(png.bytes);
      b.writeUInt32BE(w, 16);
      b.writeUInt32BE(h, 20);
      try {
        await withinSeconds(10, 'huge png', () => decodeRgb(b, { maxPixels: 2048 * 2048 }));
        assert.fail('a damaged huge PNG decoded');
      } catch (e) {
        expectCodes(e, IMAGE_CODES, 'huge png');
      }
    }),
    { seed, numRuns: Math.ceil(runs / 4) },
  );
});
