import path from 'node:path';
import { calibrateStore } from '../../detector/threshold.js';
import { HetmmError } from '../../errors.js';
import { loadImagesFrom } from '../../image/index.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { BatchFailures } from '../batch.js';
import { backendOption, COMMON_OPTIONS, INPUT_OPTIONS, INT8_OPTION, intOption, precisionOption, maxPixelsOption, openDetector, parse, PRESET_OPTIONS, presetFromOptions } from '../options.js';

export const FIT_USAGE = `usage: hetmm fit <dir-or-images...> -o STORE [--preset NAME] [--dtype float32|float16]
                 [--calibrate N | --no-calibrate] [--pts K] [--precision float|int8] [--model PATH]
                 [--backend auto|reference|fast] [--max-pixels N] [--fail-fast] [--quiet] [--json]

Builds a template store from normal (defect-free) images. With calibration
(default: 16 leave-one-out samples) it also stores a deployment threshold so
that predict can say OK / DEFECT. --pts K then compresses the store to K PTS
sheets (as hetmm compress; calibration scores the images against the sheets).
An input that cannot be read or decoded is reported and the store is built
from the others (exit 3); with --fail-fast the first stops the run and no
store is written.
--precision int8 first quantises the backbone on these images (hetmm
quantize-model) into STORE's folder as <store>.int8.onnx and builds the store
with it; predict --precision int8 then runs that backbone and int8 matching.`;

export async function fitCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      ...COMMON_OPTIONS,
      ...PRESET_OPTIONS,
      ...INPUT_OPTIONS,
      output: { type: 'string', short: 'o' },
      dtype: { type: 'string' },
      calibrate: { type: 'string' },
      'no-calibrate': { type: 'boolean', default: false },
      pts: { type: 'string' },
      ...INT8_OPTION,
    },
    FIT_USAGE,
  );
  if (values.help) {
    ctx.stdout.write(`${FIT_USAGE}\n`);
    return 0;
  }
  if (positionals.length === 0) throw new HetmmError('E_ARGUMENT', `fit needs a directory or images of normal parts\n${FIT_USAGE}`);
  if (values.output === undefined) throw new HetmmError('E_ARGUMENT', `fit needs -o STORE (the template store file to write)\n${FIT_USAGE}`);
  const dtype = values.dtype ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float16') {
    throw new HetmmError('E_ARGUMENT', `Expected --dtype float32 or float16 but received "${dtype}"`);
  }
  const samples = values['no-calibrate'] ? 0 : intOption(values.calibrate, 'calibrate', 0) ?? 16;
  const ptsSize = intOption(values.pts, 'pts', 1);
  const report = new Reporter(ctx, values);
  const files = await loadImagesFrom(positionals);
  const preset = presetFromOptions(values, 'default');
  let model = values.model;
  let int8Meta: Record<string, string> = {};
  // The leave-one-out threshold is calibrated with float matching (int8 would re-quantise the store per sample).
  if (precisionOption(values).precision === 'int8') {
    const { int8BackbonePathFor, quantizeBackboneFor } = await import('../../detector/precision.js');
    const q = await quantizeBackboneFor(files, int8BackbonePathFor(values.output), { model, threads: intOption(values.threads, 'threads') });
    report.note(`int8 backbone ${q.result.output} (${q.result.quantizedConvs} convolutions, calibrated on ${q.result.calibrationImages} images)`);
    model = q.result.output;
    int8Meta = q.meta;
  }
  const detector = await openDetector({ ...values, model }, { preset, dtype, ...maxPixelsOption(values) });
  try {
    const t0 = performance.now();
    const bar = report.progress('features', files.length);
    const failures = new BatchFailures(report, 'fit', values['fail-fast']);
    await detector.add(files, (e) => bar.tick(e.done), { onFailure: (file, error) => failures.add(file, error) });
    bar.end();
    if (detector.store.count === 0) throw new HetmmError('E_NO_IMAGES', `none of the ${files.length} inputs could be used (listed above): no store written`);
    detector.store.meta.preset = detector.preset;
    Object.assign(detector.store.meta, int8Meta);
    if (ptsSize !== undefined) {
      // PTS before calibration: the threshold must hold for the sheets that get saved
      const full = detector.store;
      const { compressWithProgress, recalibratePts } = await import('./compress.js');
      detector.setStore((await compressWithProgress(full, ptsSize, report, { gram: backendOption(values.backend) })).store);
      if (samples > 0) await recalibratePts(detector, full, samples, report);
    } else if (samples > 0 && detector.store.count >= 2) {
      const cal = report.progress('calibrate', Math.min(samples, detector.store.count));
      const threshold = await calibrateStore(detector, { samples, onProgress: (e) => cal.tick(e.done) });
      cal.end();
      report.note(`threshold ${threshold.value.toFixed(4)} (${threshold.method})`);
    } else if (samples > 0) {
      report.note('not calibrated: leave-one-out calibration needs at least 2 images (predict will print scores without OK/DEFECT)');
    }
    await detector.store.save(values.output);
    const seconds = (performance.now() - t0) / 1000;
    const d = detector.store.describe();
    report.out(
      `wrote ${values.output}: ${d.count} templates, ${(d.bytesOnDisk / 2 ** 20).toFixed(1)} MiB, ${d.dtype}, ` +
        `backend ${detector.backend.name}, ${seconds.toFixed(1)} s`,
    );
    report.record({ store: path.resolve(values.output), templates: d.count, bytes: d.bytesOnDisk, dtype: d.dtype, seconds, meta: d.meta });
    return failures.exitCode();
  } finally {
    detector.dispose();
  }
}
