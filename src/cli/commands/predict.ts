import path from 'node:path';
import { HetmmError } from '../../errors.js';
import { loadImagesFrom } from '../../image/index.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { BatchFailures, oneLine } from '../batch.js';
import {
  COMMON_OPTIONS,
  INPUT_OPTIONS,
  INT8_OPTION,
  intOption,
  precisionOption,
  maxPixelsOption,
  openDetector,
  parse,
  PRESET_OPTIONS,
  presetFromOptions,
  SELECT_K_OPTION,
  selectKOption,
} from '../options.js';
import { pipelinesOption } from '../pipelines-option.js';
import { ensureOutputDir, heatmapRange, outputStems, writePredictionFiles, type MapSize } from '../outputs.js';

export const PREDICT_USAGE = `usage: hetmm predict -t STORE <images-or-dirs...> [-o OUTDIR] [--preset NAME] [--json] [--quiet]
                     [--model PATH] [--backend auto|reference|fast] [--concurrency N] [--precision float|int8]
                     [--max-pixels N] [--fail-fast] [--map-size original|model] [--backbone-thread]
                     [--pipelines N|auto] [--select-k N|all]

Scores each image against the template store. Prints one line per image
(score, OK/DEFECT when the store is calibrated); with -o writes
<name>.heatmap.png (colour map over the image), <name>.map.npy (raw float32
anomaly map) and <name>.mask.png (pixels over the threshold), at the image's
own size (--map-size original, the default: maps resampled bilinearly, the
threshold applied after resampling, so overlays line up with the input) or
at the model's input size (--map-size model, 256x256).
With --json prints one JSON object per image instead. Precision: the
store's by default: a store fitted int8 end to end (the default of hetmm
fit) runs the int8 backbone embedded in it (an older store's
<store>.int8.onnx beside it) and int8 VNNI matching; a store fitted with --precision
float runs float32. --precision int8 (alias --int8) matches a float store
in int8 (about 5x faster matching, scores within ~2e-3; docs/PERFORMANCE.md);
--precision float refuses an int8 store. An input that cannot be
read or decoded is reported on its own line and the others still run (exit 3;
--fail-fast stops at the first); a heat map that cannot be written stops the
run (exit 5). --backbone-thread decodes and runs the backbone on a worker
thread with its own model session (more memory; docs/PERFORMANCE.md).
--pipelines N runs N independent single-threaded pipelines (decode, backbone,
matching, scoring) on worker threads, sharing one copy of the templates: on
2 cores the fastest way through many images (docs/PERFORMANCE.md,
"Pipelines"). Default auto: one per core (at most 8) from 24 images on, else 1
(and 1 with --backbone-thread). With more than one pipeline, --concurrency
does not apply. Output and order are the same either way.
--select-k N matches each image against its N nearest templates by a
global descriptor instead of all of them (faster with many templates;
docs/PERFORMANCE.md, "Template preselection"); all: every template (exact).
Default: the store's meta.templateSelection, else all.`;

export async function predictCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      ...COMMON_OPTIONS,
      ...PRESET_OPTIONS,
      ...INT8_OPTION,
      ...INPUT_OPTIONS,
      ...SELECT_K_OPTION,
      templates: { type: 'string', short: 't' },
      output: { type: 'string', short: 'o' },
      concurrency: { type: 'string' },
      'map-size': { type: 'string' },
      'backbone-thread': { type: 'boolean' },
      pipelines: { type: 'string' },
    },
    PREDICT_USAGE,
  );
  if (values.help) {
    ctx.stdout.write(`${PREDICT_USAGE}\n`);
    return 0;
  }
  if (values.templates === undefined) throw new HetmmError('E_ARGUMENT', `predict needs -t STORE\n${PREDICT_USAGE}`);
  if (positionals.length === 0) throw new HetmmError('E_ARGUMENT', `predict needs images or directories\n${PREDICT_USAGE}`);
  const mapSize = (values['map-size'] ?? 'original') as MapSize;
  if (mapSize !== 'original' && mapSize !== 'model') {
    throw new HetmmError('E_ARGUMENT', `Expected --map-size original or model but received "${values['map-size']}"`);
  }
  const report = new Reporter(ctx, values);
  // the output folder first: a path that cannot be one fails before any work
  if (values.output !== undefined) await ensureOutputDir(values.output);
  const files = await loadImagesFrom(positionals);
  const detector = await openDetector(values, {
    store: values.templates,
    preset: presetFromOptions(values, ''),
    ...precisionOption(values),
    ...maxPixelsOption(values),
    ...selectKOption(values),
  });
  try {
    const stems = outputStems(files);
    const bar = report.progress('predict', files.length);
    const failures = new BatchFailures(report, 'predict', values['fail-fast']);
    let i = 0;
    const t0 = performance.now();
    if (detector.threshold === undefined) {
      report.note('note: the store has no threshold for this preset, so no OK/DEFECT (refit with calibration, the default)');
    }
    const backboneThread = values['backbone-thread'] === true;
    const pipelines = pipelinesOption(values.pipelines, files.length, backboneThread);
    for await (const r of detector.predictMany(files, { concurrency: intOption(values.concurrency, 'concurrency'), backboneThread, pipelines })) {
      const stem = stems[i++]!;
      if (r.error !== undefined) {
        failures.add(r.source, r.error);
        continue;
      }
      const p = r.prediction!;
      const written =
        values.output === undefined
          ? undefined
          : await writePredictionFiles(p, values.output, stem, heatmapRange(p, detector.store.meta, detector.preset.name), { mapSize });
      const label = p.label === undefined ? '' : p.label === 'defect' ? '  DEFECT' : '  OK';
      // one result per line: control characters in file names (a newline, a terminal escape) escaped
      report.out(oneLine(`${p.file}  score ${p.score.toFixed(4)}${label}${written ? `  -> ${written.heatmap}` : ''}`));
      report.record({
        file: p.file,
        score: p.score,
        ...(p.label === undefined ? {} : { label: p.label, threshold: p.threshold }),
        ...(written === undefined
          ? {}
          : { heatmap: path.resolve(written.heatmap), map: path.resolve(written.map), ...(written.mask ? { mask: path.resolve(written.mask) } : {}) }),
        size: { model: [p.height, p.width], original: [p.image.originalHeight, p.image.originalWidth] },
        ...(written === undefined ? {} : { map_size: written.size }),
        templates: p.templates,
        ms: { decode: round(p.timings.decode), backbone: round(p.timings.backbone), match: round(p.timings.match) },
      });
      bar.tick(i);
    }
    bar.end();
    const seconds = (performance.now() - t0) / 1000;
    const scored = files.length - failures.count;
    report.note(`${scored} images in ${seconds.toFixed(2)} s (${(scored / seconds).toFixed(1)} images/s, backend ${detector.backend.name}${pipelines > 1 ? `, ${pipelines} pipelines` : ''})`);
    if (failures.count > 0) report.note(`${failures.count} of ${files.length} inputs failed (listed above)`);
    return failures.exitCode();
  } finally {
    detector.dispose();
  }
}

const round = (x: number): number => Math.round(x * 10) / 10;
