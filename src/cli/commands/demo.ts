import { existsSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../backbone/index.js';
import { HetmmError } from '../../errors.js';
import { loadImagesFrom } from '../../image/index.js';
import { isMvtecCategory } from '../../matching/index.js';
import { fitStore } from '../../fit/fit-store.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { COMMON_OPTIONS, detectorOptions, parse } from '../options.js';
import { heatmapRange, writePredictionFiles } from '../outputs.js';

/** The demo set inside the package (`npm pack` copies it in: scripts/pack-assets.mjs). */
const BUNDLED_DEMO = 'demo/hazelnut';
/** The same set in a checkout, from the read-only ../shared beside it. */
const CHECKOUT_DEMO = '../shared/datasets/hazelnut-toy/hazelnut';

export const DEMO_USAGE = `usage: hetmm demo [--data DIR] [-o OUTDIR] [--model PATH] [--json] [--quiet]

Fits the normal images of a small hazelnut set (DIR/train/good), predicts every
test image (DIR/test/*), writes heat maps to OUTDIR (default ./hetmm-demo) and
prints a score table. DIR defaults to the set bundled in hetmm's package
(${BUNDLED_DEMO}, Intel's hazelnut toy set, CC BY 4.0: ${BUNDLED_DEMO}/ATTRIBUTION.md),
else, in a checkout, ${CHECKOUT_DEMO}. The preset is the folder's MVTec AD
category when it names one (hazelnut), else default. Fits as hetmm fit does:
int8 end to end (the backbone quantised on the training images,
embedded in OUTDIR/<name>.hetmm).`;

function findDemoData(option: string | undefined): string {
  const root = packageRoot();
  const candidates =
    option !== undefined
      ? [path.resolve(option)]
      : [
          ...(root !== undefined ? [path.join(root, BUNDLED_DEMO)] : []),
          path.resolve(CHECKOUT_DEMO),
          ...(root !== undefined ? [path.resolve(root, CHECKOUT_DEMO)] : []),
        ];
  for (const c of candidates) if (existsSync(path.join(c, 'train', 'good'))) return c;
  throw new HetmmError(
    'E_DATASET',
    `demo data not found (looked for train/good under ${candidates.join(', ')}); pass --data DIR with an MVTec AD category folder`,
  );
}

export async function demoCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values } = parse(
    args,
    { ...COMMON_OPTIONS, data: { type: 'string' }, output: { type: 'string', short: 'o' } },
    DEMO_USAGE,
  );
  if (values.help) {
    ctx.stdout.write(`${DEMO_USAGE}\n`);
    return 0;
  }
  const report = new Reporter(ctx, values);
  const data = findDemoData(values.data);
  const outDir = path.resolve(values.output ?? 'hetmm-demo');
  const train = await loadImagesFrom([path.join(data, 'train', 'good')]);
  const testRoot = path.join(data, 'test');
  const { readdir } = await import('node:fs/promises');
  const types = (await readdir(testRoot, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  const tests: { file: string; type: string }[] = [];
  for (const type of types) for (const file of await loadImagesFrom([path.join(testRoot, type)])) tests.push({ file, type });

  const t0 = performance.now();
  const category = path.basename(data);
  const storeFile = path.join(outDir, `${category}.hetmm`);
  const { mkdir } = await import('node:fs/promises');
  await mkdir(outDir, { recursive: true });
  // as hetmm fit: int8 end to end (the backbone quantised on the normals), the default of predict and serve
  const fitted = await fitStore(
    { ...detectorOptions(values), preset: isMvtecCategory(category) ? category : 'default' },
    { files: train, output: storeFile, onNote: (m) => report.note(m) },
  );
  const detector = fitted.detector;
  try {
    const fitSeconds = (performance.now() - t0) / 1000;
    report.out(
      `fitted ${train.length} normal images from ${data} in ${fitSeconds.toFixed(1)} s ` +
        `(preset ${detector.preset.name}, ${fitted.precision} backbone, backend ${detector.backend.name})`,
    );
    report.out(`threshold ${detector.threshold?.toFixed(4) ?? 'n/a'}; heat maps in ${outDir}\n`);
    report.out(`${'image'.padEnd(28)} ${'score'.padStart(8)}  verdict`);
    // every output named <type>_<name> (colour_00, good_04), not only where two names clash
    const stems = tests.map((t) => `${t.type}_${path.parse(t.file).name}`);
    const scores: { type: string; score: number }[] = [];
    let i = 0;
    const t1 = performance.now();
    for await (const r of detector.predictMany(tests.map((t) => t.file))) {
      const { type } = tests[i]!;
      const stem = stems[i++]!;
      if (r.error !== undefined) throw r.error;
      const p = r.prediction!;
      const written = await writePredictionFiles(p, outDir, stem, heatmapRange(p, detector.store.meta, detector.preset.name));
      scores.push({ type, score: p.score });
      const name = `${type}/${path.basename(p.file)}`;
      report.out(`${name.padEnd(28)} ${p.score.toFixed(4).padStart(8)}  ${p.label === 'defect' ? 'DEFECT' : p.label === 'ok' ? 'OK' : ''}`);
      report.record({ file: p.file, type, score: p.score, label: p.label, heatmap: written.heatmap, map: written.map, mask: written.mask });
    }
    const perImage = (performance.now() - t1) / 1000 / Math.max(1, tests.length);
    const good = scores.filter((s) => s.type === 'good').map((s) => s.score);
    const bad = scores.filter((s) => s.type !== 'good').map((s) => s.score);
    if (good.length > 0 && bad.length > 0) {
      const maxGood = Math.max(...good);
      const minBad = Math.min(...bad);
      report.out(
        `\nmax good ${maxGood.toFixed(4)}, min defective ${minBad.toFixed(4)}: ` +
          (minBad > maxGood ? 'every defective image scores above every good one' : 'scores overlap'),
      );
    }
    report.out(`${tests.length} test images, ${(perImage * 1000).toFixed(0)} ms per image; total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return 0;
  } finally {
    detector.dispose();
  }
}
