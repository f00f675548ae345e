import { HetmmError } from '../../errors.js';
import { evaluate, tuneFor, type EvaluateEvent } from '../../eval/run.js';
import { MIN_TUNE_NORMALS } from '../../fit/tune.js';
import { formatPercent, formatTable, reportToJson } from '../../eval/report.js';
import type { CliContext } from '../context.js';
import { checkOutputFile, ensureOutputDir } from '../outputs.js';
import { Reporter } from '../context.js';
import { backendOption, INT8_OPTION, precisionOption, intOption, parse, PRESET_OPTIONS, presetFromOptions } from '../options.js';
import type { Progress } from '../progress.js';
import { CALIBRATION_OPTIONS, calibrationFromOptions, isTunePreset } from '../calibration-options.js';

export const EVAL_USAGE = `usage: hetmm eval --data ROOT [--category NAME ...] [--preset NAME|auto|tune] [--json FILE|-] [--report DIR]
                 [--templates STORE|DIR] [--save-templates DIR] [--pts K] [--dtype float32|float16]
                 [--calibrate N] [--false-alarm-rate R] [--seed S] [--tune-budget SECONDS] [--examples N] [--concurrency N]
                 [--model PATH] [--backend auto|reference|fast] [--precision float|int8] [--quiet]
       hetmm eval --folder-normal DIR [--folder-abnormal DIR [--folder-mask DIR]] [--folder-normal-test DIR] ...

Evaluates HETMM on a data set. ROOT is an MVTec AD root (every category
under it, or those given with --category) or one category folder. For each
category: fit the templates from train/good (or load --templates: a store
file, or a directory of <category>.hetmm), predict every test image, and
report image AUROC, pixel AUROC, AUPRO, PRO (HETMM's own), image F1-max,
the F1-optimal and deployment (leave-one-out) thresholds with their
precision and recall, and recall at false-alarm rates of 0.1%, 1% and 5%
of the good test images (docs/THRESHOLDS.md). Prints a table (percent; n/a where undefined); --json
writes the JSON report (fractions; - for stdout), --report an HTML page with
the ROC at low false-alarm rates and the worst false positives and false
negatives per category.

--preset auto (the default) uses an MVTec category's official preset, else
tunes one from the category's normal images when it has at least
${MIN_TUNE_NORMALS} (as fit does; the default preset below that); --preset tune
tunes every category (synthetic defects, docs/TUNING.md). The deployment threshold is calibrated
for a false-alarm rate R (default 0.01) from up to N (default 1000)
leave-one-out scores. --pts K compresses each store to K sheets per pixel with PTS.
Folder layout: without --folder-normal-test every 5th normal image is held
out as a normal test image; without --folder-mask only image metrics apply.
Precision: float32 by default (the reference the int8 pipeline is measured
against, docs/RESULTS.md); --precision int8 quantises the backbone on the
train/good images and matches in int8, as hetmm fit does by default. A
--templates store fitted int8 end to end runs its own int8 backbone (beside
it); --precision float refuses it.`;

export async function evalCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values } = parse(
    args,
    {
      ...PRESET_OPTIONS,
      data: { type: 'string' },
      category: { type: 'string', multiple: true },
      templates: { type: 'string', short: 't' },
      'save-templates': { type: 'string' },
      json: { type: 'string' },
      report: { type: 'string' },
      'folder-normal': { type: 'string' },
      'folder-abnormal': { type: 'string' },
      'folder-mask': { type: 'string' },
      'folder-normal-test': { type: 'string' },
      pts: { type: 'string' },
      dtype: { type: 'string' },
      ...CALIBRATION_OPTIONS,
      examples: { type: 'string' },
      concurrency: { type: 'string' },
      model: { type: 'string' },
      backend: { type: 'string' },
      ...INT8_OPTION,
      threads: { type: 'string' },
      quiet: { type: 'boolean', short: 'q', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    EVAL_USAGE,
  );
  if (values.help) {
    ctx.stdout.write(`${EVAL_USAGE}\n`);
    return 0;
  }
  const folderNormal = values['folder-normal'];
  if (values.data === undefined && folderNormal === undefined) {
    throw new HetmmError('E_ARGUMENT', `eval needs --data ROOT or --folder-normal DIR\n${EVAL_USAGE}`);
  }
  if (values.data !== undefined && folderNormal !== undefined) {
    throw new HetmmError('E_ARGUMENT', 'eval takes either --data or --folder-normal, not both');
  }
  if (folderNormal === undefined && (values['folder-abnormal'] ?? values['folder-mask'] ?? values['folder-normal-test']) !== undefined) {
    throw new HetmmError('E_ARGUMENT', '--folder-abnormal, --folder-mask and --folder-normal-test need --folder-normal');
  }
  if (values['folder-mask'] !== undefined && values['folder-abnormal'] === undefined) {
    throw new HetmmError('E_ARGUMENT', '--folder-mask needs --folder-abnormal (the masks belong to the defective images)');
  }
  const dtype = values.dtype;
  if (dtype !== undefined && dtype !== 'float32' && dtype !== 'float16') {
    throw new HetmmError('E_ARGUMENT', `Expected --dtype float32 or float16 but received "${dtype}"`);
  }
  const jsonToStdout = values.json === '-';
  const calibration = calibrationFromOptions(values);
  const tune = isTunePreset(values.preset);
  // auto with no --config/--layerN/--*-post override: official MVTec presets, else tuned
  const autoPreset = !tune && (values.preset ?? 'auto') === 'auto' && presetFromOptions({ ...values, preset: undefined }, '') === undefined;
  const reporter = new Reporter(ctx, { quiet: values.quiet, json: jsonToStdout });
  // --category a,b and --category a --category b both work.
  const categories = (values.category ?? []).flatMap((c) => c.split(',')).filter((c) => c !== '');

  let bar: Progress | undefined;
  let barKey = '';
  // Without a terminal (nohup, CI logs) the bar is not drawn: a line per tenth of a long phase instead.
  const logLines = !process.stderr.isTTY;
  let loggedTenth = 0;
  const onEvent = (e: EvaluateEvent): void => {
    switch (e.type) {
      case 'progress': {
        const key = `${e.category} ${e.phase}`;
        if (key !== barKey) {
          bar?.end();
          bar = reporter.progress(key, e.total);
          barKey = key;
          loggedTenth = 0;
        }
        bar!.tick(e.done);
        const tenth = Math.floor((e.done * 10) / e.total);
        if (logLines && e.total >= 50 && tenth > loggedTenth) {
          loggedTenth = tenth;
          reporter.note(`${key} ${e.done}/${e.total}`);
        }
        return;
      }
      case 'note':
        reporter.note(`${e.category}: note: ${e.message}`);
        return;
      case 'category': {
        bar?.end();
        bar = undefined;
        barKey = '';
        const r = e.report;
        reporter.note(
          `${r.name}: image AUROC ${formatPercent(r.image_auroc)}, pixel AUROC ${formatPercent(r.pixel_auroc)}, ` +
            `${r.images} images, ${r.templates} templates, preset ${e.preset}, fit ${e.fitSeconds.toFixed(1)} s, ` +
            `predict ${e.predictSeconds.toFixed(1)} s`,
        );
      }
    }
  };

  // output paths checked before the evaluation (minutes)
  if (values.report !== undefined) await ensureOutputDir(values.report);
  if (values.json !== undefined && !jsonToStdout) await checkOutputFile(values.json);
  const result = await evaluate(
    {
      ...(values.data !== undefined ? { data: values.data, categories } : {}),
      ...(folderNormal !== undefined
        ? {
            folder: {
              normalDir: folderNormal,
              ...(values['folder-abnormal'] !== undefined ? { abnormalDir: values['folder-abnormal'] } : {}),
              ...(values['folder-mask'] !== undefined ? { maskDir: values['folder-mask'] } : {}),
              ...(values['folder-normal-test'] !== undefined ? { normalTestDir: values['folder-normal-test'] } : {}),
            },
          }
        : {}),
      // per category: --preset (default auto) with --config / --layerN / --*-post overrides
      preset: (category: string) => presetFromOptions({ ...values, preset: tune ? 'default' : values.preset }, 'auto', category)!,
      // --preset tune: every category; auto (the default, no overrides): the categories without an official preset
      ...(tune
        ? { tune: calibration.tune }
        : autoPreset
          ? { tune: (category: string) => tuneFor({ templates: values.templates }, category, calibration.tune) ?? false }
          : {}),
      falseAlarmRate: calibration.falseAlarmRate,
      templates: values.templates,
      saveTemplates: values['save-templates'],
      pts: intOption(values.pts, 'pts'),
      dtype,
      backend: backendOption(values.backend),
      ...precisionOption(values),
      model: values.model,
      threads: intOption(values.threads, 'threads'),
      concurrency: intOption(values.concurrency, 'concurrency'),
      calibrationSamples: calibration.calibrate ? calibration.samples : 0,
      examples: intOption(values.examples, 'examples', 0),
      jsonFile: values.json === undefined || jsonToStdout ? undefined : values.json,
      reportDir: values.report,
    },
    onEvent,
  );
  bar?.end();
  if (categories.length === 0 && values.category !== undefined) reporter.note('note: --category was empty: evaluated every category');
  if (jsonToStdout) ctx.stdout.write(reportToJson(result.report));
  reporter.out(formatTable(result.report).trimEnd());
  reporter.note(`backend ${result.backend}, ${result.seconds.toFixed(1)} s in total`);
  if (result.jsonFile !== undefined) reporter.note(`wrote ${result.jsonFile}`);
  if (result.htmlFile !== undefined) reporter.note(`wrote ${result.htmlFile}`);
  return 0;
}
