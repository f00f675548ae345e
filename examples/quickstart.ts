/**
 * Fit a detector on normal images, calibrate a threshold, score new images.
 * Run (after `npm run build`): node --experimental-strip-types examples/quickstart.ts good/ test/
 */
import { Detector, fitStore, type DetectorOptions, type Prediction, version } from 'hetmm';

const [goodDir = 'good', testDir = 'test'] = process.argv.slice(2);

const options: DetectorOptions = { preset: 'bottle', backend: 'auto' };
const detector = await Detector.open(options);
try {
  const { readdir } = await import('node:fs/promises');
  const list = async (dir: string): Promise<string[]> => (await readdir(dir)).map((f) => `${dir}/${f}`);
  // add the normals, calibrate a threshold for 1% false alarms, save (tune: true would also choose the preset)
  const fitted = await fitStore(detector, {
    files: await list(goodDir),
    falseAlarmRate: 0.01,
    output: 'line3.hetmm',
    onProgress: (phase, done, total) => console.log(`${phase} ${done}/${total}`),
  });
  console.log(`hetmm ${version}, backend ${detector.backend.name}, threshold ${fitted.threshold?.value.toFixed(4) ?? 'none'}`);
  for await (const { source, prediction, error } of detector.predictMany(await list(testDir))) {
    if (error !== undefined) console.error(`${source}: ${error.message}`);
    else report(prediction!);
  }
} finally {
  detector.dispose();
}

function report(p: Prediction): void {
  const label: 'ok' | 'defect' | undefined = p.label;
  console.log(`${p.file} ${p.score.toFixed(4)} ${label ?? ''} (${p.width}x${p.height} map, ${p.templates} templates)`);
}
