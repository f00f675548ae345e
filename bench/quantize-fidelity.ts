/**
 * How close the int8 backbone's features are to float32's, per calibration
 * method and rewrite: `node dist/bench/quantize-fidelity.js [VARIANT...]`
 * (VARIANT: METHOD[+int8stem][+nobc], METHOD one of minmax, mse,
 * percentile:P; `+int8stem` also quantises the stem convolutions (qdq.ts
 * stemConvs), `+nobc` skips bias correction; default: minmax mse percentile:99.9
 * percentile:99.99 percentile:99.999). Calibrates on 16 evenly spaced
 * magnetic-tile train/good images, then compares the L2-normalised features
 * of 8 blowhole test images pixel by pixel (cosine: 1 = identical), and
 * times one backbone call (CPU ms, all threads) for float32 and each variant.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Backbone, parseCalibrationMethod, quantizeModel } from '../src/backbone/index.js';
import { loadImage, loadImagesFrom } from '../src/image/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tile = path.resolve(repoRoot, '../shared/datasets/magnetic-tile/magnetic_tile');

async function cpuMsPerCall(backbone: Backbone, image: Awaited<ReturnType<typeof loadImage>>, reps: number): Promise<number> {
  for (let i = 0; i < 3; i++) await backbone.extract(image);
  const c0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) await backbone.extract(image);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000 / reps;
}

async function main(): Promise<void> {
  const methods = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['minmax', 'mse', 'percentile:99.9', 'percentile:99.99', 'percentile:99.999'];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hetmm-qfid-'));
  const float = await Backbone.load({});
  const files = (await loadImagesFrom([path.join(tile, 'test', 'blowhole')])).filter((_, i) => i % 3 === 0).slice(0, 8);
  const images = await Promise.all(files.map((f) => loadImage(f)));
  const reference = await Promise.all(images.map((img) => float.extract(img)));
  console.log(`load average ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);
  const floatMs = await cpuMsPerCall(float, images[0]!, 10);
  console.log(`float32 backbone: ${floatMs.toFixed(1)} CPU ms per call (extract, all threads, incl. L2 normalisation)`);
  console.log('| variant | mean cosine layer1 / 2 / 3 | min cosine layer1 / 2 / 3 | calibration s | int8 CPU ms per call | float32 / int8 |');
  console.log('|---|---|---|---:|---:|---:|');
  try {
    for (const text of methods) {
      const output = path.join(dir, `${text.replace(/[^a-z0-9.]/gi, '_')}.onnx`);
      const t0 = performance.now();
      const [method, ...flags] = text.split('+');
      const rewrites = { floatStem: !flags.includes('int8stem'), biasCorrection: !flags.includes('nobc') };
      await quantizeModel({ calibrate: [path.join(tile, 'train', 'good')], maxImages: 16, output, method: parseCalibrationMethod(method!), rewrites });
      const seconds = (performance.now() - t0) / 1000;
      const q = await Backbone.load({ model: output });
      const mean = [0, 0, 0];
      const min = [1, 1, 1];
      for (const [n, img] of images.entries()) {
        const features = await q.extract(img);
        float.identity.layers.forEach((layer, l) => {
          const plane = layer.height * layer.width;
          for (let p = 0; p < plane; p++) {
            let dot = 0;
            for (let c = 0; c < layer.channels; c++) dot += reference[n]![l]![c * plane + p]! * features[l]![c * plane + p]!;
            mean[l]! += dot / plane / images.length;
            min[l] = Math.min(min[l]!, dot);
          }
        });
      }
      const qMs = await cpuMsPerCall(q, images[0]!, 10);
      console.log(`| ${text} | ${mean.map((v) => v.toFixed(5)).join(' / ')} | ${min.map((v) => v.toFixed(4)).join(' / ')} | ${seconds.toFixed(1)} | ${qMs.toFixed(1)} | ${(floatMs / qMs).toFixed(2)} |`);
      await q.dispose();
    }
  } finally {
    await float.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exitCode = 1;
});
