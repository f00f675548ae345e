/**
 * Fit a detector on normal images, calibrate a threshold, score new images.
 * Run (after `npm run build`): node --experimental-strip-types examples/quickstart.ts good/ test/
 */
import { Detector, fitStore, type DetectorOptions, type Prediction, version } from 'hetmm';

const [goodDir = 'good', testDir = 'test'] = process.argv.slice(2);

const { readdir } = await import('node:fs/promises');
const list = async (dir: string): Promise<string[]> => (await readdir(dir)).map((f) => `${dir}/${f}`);
// Given detector options, fitStore opens the detector itself and fits int8 end to end (the default:
// the backbone quantised on the normals and embedded in line3.hetmm; precision: 'float' for the
// float32 reference), adds the normals, calibrates a threshold for 1% false alarms with that
// pipeline and saves. Options that name no preset would have it tuned on the normals (5 or more).
const options: DetectorOptions = { preset: 'bottle', backend: 'auto' };
const fitted = await fitStore(options, {
  files: await list(goodDir),
  falseAlarmRate: 0.01,
  output: 'line3.hetmm',
  onProgress: (phase, done, total) => console.log(`${phase} ${done}/${total}`),
});
const detector: Detector = fitted.detector;
try {
  console.log(`hetmm ${version}, ${fitted.precision} backbone, backend ${detector.backend.name}, threshold ${fitted.threshold?.value.toFixed(4) ?? 'none'}`);
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
