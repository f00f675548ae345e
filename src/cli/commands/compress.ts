import path from 'node:path';
import { Detector } from '../../detector/detector.js';
import { calibrateStore, DEFAULT_CALIBRATION_SAMPLES, DEFAULT_FALSE_ALARM_RATE } from '../../detector/calibrate.js';
import { describeFalseAlarms } from '../../detector/threshold.js';
import { EMBEDDED_INT8_BACKBONE, INT8_BACKBONE_META, readSidecarModel, storeBackboneFiles } from '../../detector/store-backbone.js';
import { HetmmError } from '../../errors.js';
import { compressStore, type CompressResult, type PtsGramChoice } from '../../selection/compress-store.js';
import { TemplateStore, type EmbeddedModel } from '../../store/index.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { backendOption, COMMON_OPTIONS, intOption, numberOption, parse } from '../options.js';

export const COMPRESS_USAGE = `usage: hetmm compress -t STORE --size K -o OUT [--workers N] [--backend auto|reference|fast]
                      [--calibrate N | --no-recalibrate] [--false-alarm-rate R] [--model PATH] [--quiet] [--json]

PTS (pixel-level template selection): keeps K template "sheets" per layer,
chosen at every pixel among the N stored images (OPTICS clusters, their
centres, then hard normals; docs/PTS.md). Matching cost drops by N / K.
--backend picks the Gram kernel (auto: native when built). When STORE has a
threshold, a new one is calibrated for the sheets: N (default 1000) of the
original templates are scored against them (needs the model), for the
store's false-alarm rate (or --false-alarm-rate R; default 0.01). With
--no-recalibrate the full store's threshold is copied (it flags more good
parts: fewer templates raise normal scores). A store fitted int8 end to end
stays int8: its int8 backbone scores the recalibration and is embedded in OUT
(also when STORE is an older store with <stem>.int8.onnx/.json beside it).
OUT is checked to be writable before the work starts; a failed write leaves
no file behind and an existing OUT as it was.`;

function gramChoice(value: string | undefined): PtsGramChoice {
  return backendOption(value) ?? 'auto';
}

/** Runs PTS on `source` with a progress bar and prints the notes; shared by compress and fit --pts. */
export async function compressWithProgress(
  source: TemplateStore,
  k: number,
  report: Reporter,
  options: { gram?: PtsGramChoice; workers?: number; model?: EmbeddedModel } = {},
): Promise<CompressResult> {
  const total = source.identity.layers.reduce((s, l) => s + l.height * l.width, 0);
  const bar = report.progress(`pts ${source.count} -> ${k}`, total);
  const result = await compressStore(source, k, { ...options, onProgress: (done) => bar.tick(done) });
  bar.end();
  for (const note of result.notes) report.note(note);
  return result;
}

/** Calibrates a PTS store from a sample of the templates it came from; shared by compress and fit --pts. */
export async function recalibratePts(
  detector: Detector,
  source: TemplateStore,
  options: { samples: number; falseAlarmRate: number },
  report: Reporter,
): Promise<void> {
  const cal = report.progress('calibrate', Math.min(options.samples, source.count));
  const threshold = await calibrateStore(detector, { ...options, source: source.snapshot(), onProgress: (e) => cal.tick(e.done) });
  cal.end();
  report.note(`threshold ${threshold.value.toFixed(4)} (${threshold.method}); ${describeFalseAlarms(threshold)}`);
}

export async function compressCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values } = parse(
    args,
    {
      ...COMMON_OPTIONS,
      templates: { type: 'string', short: 't' },
      size: { type: 'string', short: 'k' },
      output: { type: 'string', short: 'o' },
      workers: { type: 'string' },
      recalibrate: { type: 'boolean', default: false },
      'no-recalibrate': { type: 'boolean', default: false },
      calibrate: { type: 'string' },
      'false-alarm-rate': { type: 'string' },
    },
    COMPRESS_USAGE,
  );
  if (values.help) {
    ctx.stdout.write(`${COMPRESS_USAGE}\n`);
    return 0;
  }
  if (values.templates === undefined) throw new HetmmError('E_ARGUMENT', `compress needs -t STORE (the template store to compress)\n${COMPRESS_USAGE}`);
  if (values.size === undefined) throw new HetmmError('E_ARGUMENT', `compress needs --size K (the number of PTS sheets to keep)\n${COMPRESS_USAGE}`);
  if (values.output === undefined) throw new HetmmError('E_ARGUMENT', `compress needs -o OUT (the compressed store file to write)\n${COMPRESS_USAGE}`);
  const k = intOption(values.size, 'size', 1)!;
  const workers = intOption(values.workers, 'workers', 1);
  const samples = intOption(values.calibrate, 'calibrate', 1) ?? DEFAULT_CALIBRATION_SAMPLES;
  const gram = gramChoice(values.backend);
  const report = new Reporter(ctx, values);

  await TemplateStore.checkWritable(values.output);
  const source = await TemplateStore.load(values.templates);
  // a store fitted int8 end to end keeps its precision: its int8 backbone scores the recalibration and is embedded in the output
  const int8 = values.model === undefined ? storeBackboneFiles(values.templates, source.meta) : undefined;
  const sidecar = int8 !== undefined && !int8.embedded ? await readSidecarModel(int8, source.identity) : undefined;
  const result = await compressWithProgress(source, k, report, { gram, workers, ...(sidecar === undefined ? {} : { model: sidecar }) });
  const store = result.store;
  if (sidecar !== undefined) store.meta[INT8_BACKBONE_META] = EMBEDDED_INT8_BACKBONE;
  const selected = result.pts.minSamples !== null; // N > K: the sheets differ from the images
  const recalibrate = values.recalibrate || (!values['no-recalibrate'] && selected && store.meta.threshold !== undefined);
  if (recalibrate) {
    // the model is only needed to score: same backbone check as every other command
    // the line service decides the backbone (the store's embedded model) and the matching, as for its predictions
    const detector = await Detector.open({ store, ...(values.model === undefined ? {} : { model: values.model }), threads: intOption(values.threads, 'threads') });
    try {
      const stored = (source.meta.threshold as { falseAlarmRate?: number } | undefined)?.falseAlarmRate;
      const falseAlarmRate = numberOption(values['false-alarm-rate'], 'false-alarm-rate') ?? stored ?? DEFAULT_FALSE_ALARM_RATE;
      await recalibratePts(detector, source, { samples, falseAlarmRate }, report);
    } finally {
      detector.dispose();
    }
  } else if (store.meta.threshold !== undefined && selected) {
    report.note('the threshold was copied from the full store (--no-recalibrate): expect more false alarms');
  }
  await store.save(values.output);
  const d = store.describe();
  report.out(
    `wrote ${values.output}: ${d.count} sheets from ${source.count} templates, ${(d.bytesOnDisk / 2 ** 20).toFixed(1)} MiB, ` +
      `${d.dtype}, gram ${result.pts.gram}, ${result.pts.seconds.toFixed(1)} s`,
  );
  report.record({ store: path.resolve(values.output), sheets: d.count, bytes: d.bytesOnDisk, dtype: d.dtype, pts: result.pts, meta: d.meta });
  return 0;
}
