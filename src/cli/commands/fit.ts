import path from 'node:path';
import { describeFalseAlarms } from '../../detector/threshold.js';
import { HetmmError } from '../../errors.js';
import { fitStore } from '../../fit/fit-store.js';
import { autoTune, MIN_TUNE_NORMALS } from '../../fit/tune.js';
import { loadImagesFrom } from '../../image/index.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { BatchFailures } from '../batch.js';
import { CALIBRATION_OPTIONS, calibrationFromOptions, describeTuning, isTunePreset } from '../calibration-options.js';
import { backendOption, COMMON_OPTIONS, detectorOptions, INPUT_OPTIONS, INT8_OPTION, intOption, precisionOption, maxPixelsOption, parse, PRESET_OPTIONS, presetFromOptions } from '../options.js';

export const FIT_USAGE = `usage: hetmm fit <dir-or-images...> -o STORE [--preset NAME|default|tune] [--dtype float32|float16]
                 [--false-alarm-rate R] [--calibrate N | --no-calibrate] [--pts K] [--seed S] [--tune-budget SECONDS]
                 [--precision float|int8] [--model PATH]
                 [--backend auto|reference|fast] [--max-pixels N] [--fail-fast] [--quiet] [--json]

Builds a template store from normal (defect-free) images. With calibration
(the default) it also stores a deployment threshold so that predict can say
OK / DEFECT: the order statistic of leave-one-out scores (all images up to
--calibrate N, default 1000) for a false-alarm rate R on new good parts
(--false-alarm-rate, default 0.01 = 1%; docs/THRESHOLDS.md). It prints the
expected rate and its 95% upper bound, and says so when too few images
support R.
Preset: with no --preset, fit tunes it from the normal images alone
(synthetic defects, docs/TUNING.md) when there are at least ${MIN_TUNE_NORMALS} of them, and
prints what it chose and how long it took (--tune-budget, default 240 s);
with fewer it uses the default preset and says so. --preset default (or any
named preset, --config, --layerN) opts out; --preset tune tunes from 3
normals up. --pts K then compresses the store to K
PTS sheets (as hetmm compress; calibration scores the images against them).
An input that cannot be read or decoded is reported and the store is built
from the others (exit 3); with --fail-fast the first stops the run and no
store is written.
Precision: int8 end to end by default. The backbone is first quantised on
these images (as hetmm quantize-model, at most 32 of them) and embedded in
STORE (about 9 MB): the store is one file wherever it goes. The features and
the threshold come from that int8 backbone, which predict and serve then run
with int8 matching (where the CPU has AVX-512 VNNI). --precision float
builds the float32 reference store instead; --model PATH builds the store
with that model as given (add --precision int8 to quantise it).
STORE is written once, at the end, by an atomic rename: a failed or killed
fit leaves an existing STORE as it was. Its folder is checked first.`;

export async function fitCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      ...COMMON_OPTIONS,
      ...PRESET_OPTIONS,
      ...INPUT_OPTIONS,
      output: { type: 'string', short: 'o' },
      dtype: { type: 'string' },
      pts: { type: 'string' },
      ...INT8_OPTION,
      ...CALIBRATION_OPTIONS,
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
  const calibration = calibrationFromOptions(values);
  const ptsSize = intOption(values.pts, 'pts', 1);
  const report = new Reporter(ctx, values);
  const files = await loadImagesFrom(positionals);
  // --preset tune: always; no preset option at all: when there are enough normals (fitStore's minimum)
  const tune = isTunePreset(values.preset);
  const preset = tune ? undefined : presetFromOptions(values, '');
  const tuneOptions = tune ? calibration.tune : preset === undefined ? autoTune(calibration.tune) : undefined;
  const t0 = performance.now();
  const failures = new BatchFailures(report, 'fit', values['fail-fast']);
  const bars = new Map<string, ReturnType<Reporter['progress']>>();
  // fitStore opens the detector: int8 end to end unless --precision float or --model (see FIT_USAGE)
  const fitted = await fitStore(
    { ...detectorOptions(values), ...(preset === undefined ? {} : { preset }), dtype, ...maxPixelsOption(values), ...precisionOption(values) },
    {
      files,
      onFailure: (file, error) => failures.add(file, error),
      ...(tuneOptions === undefined ? {} : { tune: tuneOptions }),
      ...(ptsSize === undefined ? {} : { pts: ptsSize, ptsGram: gramOf(backendOption(values.backend)) }),
      calibrate: calibration.calibrate,
      falseAlarmRate: calibration.falseAlarmRate,
      calibrationSamples: calibration.samples,
      output: values.output,
      onProgress: (phase, done, total) => {
        let bar = bars.get(phase);
        if (bar === undefined) bars.set(phase, (bar = report.progress(phase === 'fit' ? 'features' : phase, total)));
        bar.tick(done);
        if (done === total) bar.end();
      },
      onNote: (message) => report.note(message),
    },
  );
  const detector = fitted.detector;
  try {
    if (fitted.tuning !== undefined) report.note(describeTuning(fitted.tuning.record));
    if (fitted.threshold !== undefined) {
      report.out(`threshold ${fitted.threshold.value.toFixed(4)} (${fitted.threshold.method}); ${describeFalseAlarms(fitted.threshold)}`);
    }
    const seconds = (performance.now() - t0) / 1000;
    const d = detector.store.describe();
    const matching = detector.backend.precision ?? 'float';
    report.out(
      `wrote ${values.output}: ${d.count} templates, ${(d.bytesOnDisk / 2 ** 20).toFixed(1)} MiB, ${d.dtype}, ` +
        `${fitted.precision} backbone, ${matching} matching, backend ${detector.backend.name}, ${seconds.toFixed(1)} s`,
    );
    report.record({
      store: path.resolve(values.output),
      templates: d.count,
      bytes: d.bytesOnDisk,
      dtype: d.dtype,
      precision: fitted.precision,
      ...(fitted.int8Backbone === undefined ? {} : { int8_backbone: { embedded: true, sha256: fitted.int8Backbone.sha256, bytes: fitted.int8Backbone.bytes } }),
      seconds,
      phases: fitted.seconds,
      meta: d.meta,
    });
    return failures.exitCode();
  } finally {
    detector.dispose();
  }
}

/** The PTS Gram kernel for --backend (a custom registered backend leaves the choice to PTS). */
function gramOf(backend: string | undefined): 'auto' | 'fast' | 'reference' {
  return backend === 'fast' || backend === 'reference' ? backend : 'auto';
}
