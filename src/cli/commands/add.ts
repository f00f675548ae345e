import { HetmmError } from '../../errors.js';
import { loadImagesFrom } from '../../image/index.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { COMMON_OPTIONS, openDetector, parse } from '../options.js';

export const ADD_USAGE = `usage: hetmm add -t STORE <images-or-dirs...> [--model PATH] [--quiet] [--json]

Hot update: appends normal images to an existing template store (the others
are not recomputed) and rewrites the file atomically. On a PTS store each
image becomes one more sheet. The stored threshold is kept (recalibrate with
hetmm fit when the line changes a lot).`;

export async function addCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parse(args, { ...COMMON_OPTIONS, templates: { type: 'string', short: 't' } }, ADD_USAGE);
  if (values.help) {
    ctx.stdout.write(`${ADD_USAGE}\n`);
    return 0;
  }
  if (values.templates === undefined) throw new HetmmError('E_ARGUMENT', `add needs -t STORE\n${ADD_USAGE}`);
  if (positionals.length === 0) throw new HetmmError('E_ARGUMENT', `add needs images or directories\n${ADD_USAGE}`);
  const report = new Reporter(ctx, values);
  const files = await loadImagesFrom(positionals);
  const detector = await openDetector(values, { store: values.templates });
  try {
    const before = detector.store.count;
    const bar = report.progress('add', files.length);
    // A bad image stops the run before the save: the file on disk is untouched.
    await detector.add(files, (e) => bar.tick(e.done));
    bar.end();
    await detector.store.save(values.templates);
    report.out(`${values.templates}: ${before} -> ${detector.store.count} templates`);
    report.record({ store: values.templates, before, after: detector.store.count, added: files });
    return 0;
  } finally {
    detector.dispose();
  }
}
