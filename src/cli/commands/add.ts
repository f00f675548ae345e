import { HetmmError } from '../../errors.js';
import { loadImagesFrom } from '../../image/index.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { BatchFailures } from '../batch.js';
import { COMMON_OPTIONS, INPUT_OPTIONS, maxPixelsOption, openDetector, parse } from '../options.js';

export const ADD_USAGE = `usage: hetmm add -t STORE <images-or-dirs...> [--model PATH] [--max-pixels N] [--fail-fast] [--quiet] [--json]

Hot update: appends normal images to an existing template store (the others
are not recomputed). The new images' features are appended to the file as
one checksummed record under the store's write lock, merged with what other
processes appended meanwhile; nothing is acknowledged before it is on disk
(docs/STORE_FORMAT.md). A symlinked store is updated at its target. On a PTS
store each image becomes one more sheet. The stored threshold is kept
(recalibrate with hetmm fit when the line changes a lot). An input that
cannot be read or decoded is reported and the others are added (exit 3);
with --fail-fast the first stops the run and nothing is added. A store fitted
int8 end to end embeds the new images with its own int8 backbone (inside it).`;

export async function addCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parse(args, { ...COMMON_OPTIONS, ...INPUT_OPTIONS, templates: { type: 'string', short: 't' } }, ADD_USAGE);
  if (values.help) {
    ctx.stdout.write(`${ADD_USAGE}\n`);
    return 0;
  }
  if (values.templates === undefined) throw new HetmmError('E_ARGUMENT', `add needs -t STORE\n${ADD_USAGE}`);
  if (positionals.length === 0) throw new HetmmError('E_ARGUMENT', `add needs images or directories\n${ADD_USAGE}`);
  const report = new Reporter(ctx, values);
  const files = await loadImagesFrom(positionals);
  const detector = await openDetector(values, { store: values.templates, ...maxPixelsOption(values) });
  try {
    const bar = report.progress('add', files.length);
    const failures = new BatchFailures(report, 'add', values['fail-fast']);
    const failed = new Set<string>();
    // Features of all images first, then one durable append: --fail-fast leaves the file untouched.
    const added = await detector.add(files, (e) => bar.tick(e.done), {
      onFailure: (file, error) => {
        failed.add(file);
        failures.add(file, error);
      },
    });
    bar.end();
    const after = detector.store.count;
    report.out(`${values.templates}: added ${added}, now ${after} templates`);
    report.record({ store: values.templates, added: files.filter((f) => !failed.has(f)), after });
    return failures.exitCode();
  } finally {
    detector.dispose();
  }
}
