import path from 'node:path';
import { HetmmError } from '../../errors.js';
import { loadImagesFrom } from '../../image/index.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { COMMON_OPTIONS, INT8_OPTION, intOption, matchPrecisionOption, openDetector, parse, PRESET_OPTIONS, presetFromOptions } from '../options.js';
import { heatmapRange, outputStems, writePredictionFiles, type MapSize } from '../outputs.js';

export const PREDICT_USAGE = `usage: hetmm predict -t STORE <images-or-dirs...> [-o OUTDIR] [--preset NAME] [--json] [--quiet]
                     [--map-size original|model] [--model PATH] [--backend auto|reference|fast] [--concurrency N] [--int8]

Scores each image against the template store. Prints one line per image
(score, OK/DEFECT when the store is calibrated); with -o writes
<name>.heatmap.png (colour map over the image), <name>.map.npy (raw float32
anomaly map) and <name>.mask.png (pixels over the threshold), at the image's
own size (--map-size original, the default: maps resampled bilinearly, the
threshold applied after resampling, so overlays line up with the input) or
at the model's input size (--map-size model, 256x256).
With --json prints one JSON object per image instead. --int8 matches with
int8 VNNI kernels: about 2.5x faster matching, scores within ~2e-3
(docs/PERFORMANCE.md).`;

export async function predictCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      ...COMMON_OPTIONS,
      ...PRESET_OPTIONS,
      ...INT8_OPTION,
      templates: { type: 'string', short: 't' },
      output: { type: 'string', short: 'o' },
      concurrency: { type: 'string' },
      'map-size': { type: 'string' },
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
  const files = await loadImagesFrom(positionals);
  const detector = await openDetector(values, {
    store: values.templates,
    preset: presetFromOptions(values, ''),
    ...matchPrecisionOption(values),
  });
  try {
    const stems = outputStems(files);
    const bar = report.progress('predict', files.length);
    let failures = 0;
    let i = 0;
    const t0 = performance.now();
    if (detector.threshold === undefined) {
      report.note('note: the store has no threshold for this preset, so no OK/DEFECT (refit with calibration, the default)');
    }
    for await (const r of detector.predictMany(files, { concurrency: intOption(values.concurrency, 'concurrency') })) {
      const stem = stems[i++]!;
      if (r.error !== undefined) {
        failures++;
        const where = r.error.message.includes(r.source) ? '' : `${r.source}: `;
        report.error(`hetmm predict: error: ${where}${r.error.message}`);
        report.record({ file: r.source, error: r.error.message, code: (r.error as { code?: string }).code ?? 'E_INTERNAL' });
        continue;
      }
      const p = r.prediction!;
      const written =
        values.output === undefined
          ? undefined
          : await writePredictionFiles(p, values.output, stem, heatmapRange(p, detector.store.meta, detector.preset.name), { mapSize });
      const label = p.label === undefined ? '' : p.label === 'defect' ? '  DEFECT' : '  OK';
      report.out(`${p.file}  score ${p.score.toFixed(4)}${label}${written ? `  -> ${written.heatmap}` : ''}`);
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
    report.note(`${files.length - failures} images in ${seconds.toFixed(2)} s (${((files.length - failures) / seconds).toFixed(1)} images/s, backend ${detector.backend.name})`);
    return failures > 0 ? 1 : 0;
  } finally {
    detector.dispose();
  }
}

const round = (x: number): number => Math.round(x * 10) / 10;
