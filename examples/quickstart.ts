/**
 * Fit a detector on normal images, calibrate a threshold, score new images.
 * Run (after `npm run build`): node --experimental-strip-types examples/quickstart.ts good/ test/
 */
import { calibrateStore, Detector, type DetectorOptions, type Prediction, version } from 'hetmm';

const [goodDir = 'good', testDir = 'test'] = process.argv.slice(2);

const options: DetectorOptions = { preset: 'bottle', backend: 'auto' };
const detector = await Detector.open(options);
try {
  const { readdir } = await import('node:fs/promises');
  const list = async (dir: string): Promise<string[]> => (await readdir(dir)).map((f) => `${dir}/${f}`);
  await detector.add(await list(goodDir), (e) => console.log(`templates ${e.done}/${e.total}`));
  const threshold = await calibrateStore(detector);
  console.log(`hetmm ${version}, backend ${detector.backend.name}, threshold ${threshold.value.toFixed(4)}`);
  for await (const { source, prediction, error } of detector.predictMany(await list(testDir))) {
    if (error !== undefined) console.error(`${source}: ${error.message}`);
    else report(prediction!);
  }
  await detector.store.save('line3.hetmm');
} finally {
  detector.dispose();
}

function report(p: Prediction): void {
  const label: 'ok' | 'defect' | undefined = p.label;
  console.log(`${p.file} ${p.score.toFixed(4)} ${label ?? ''} (${p.width}x${p.height} map, ${p.templates} templates)`);
}
