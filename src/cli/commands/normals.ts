import { HetmmError } from '../../errors.js';
import { TemplateStore, type StoreNormal } from '../../store/index.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { parse } from '../options.js';

export const NORMALS_USAGE = `usage: hetmm normals list -t STORE [--json]
       hetmm normals remove -t STORE ID... [--quiet] [--json]

list: every normal of the store (the templates it matches against), one per
line: its id, base (fitted) or appended (a hot update), when it was appended
and by which update, and its file name. --json: one object per normal.

remove: undoes hot updates: removes the normals with these ids, durably (one
removal record under the store's write lock, fsynced before the command
prints; docs/STORE_FORMAT.md). Serving processes see it like an addition.
An id removed before is reported and changes nothing; an unknown id, or
removing every normal, is an error (exit 2) and nothing is removed.`;

export async function normalsCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      templates: { type: 'string', short: 't' },
      json: { type: 'boolean', default: false },
      quiet: { type: 'boolean', short: 'q', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    NORMALS_USAGE,
  );
  if (values.help) {
    ctx.stdout.write(`${NORMALS_USAGE}\n`);
    return 0;
  }
  const [action, ...ids] = positionals;
  if (action !== 'list' && action !== 'remove') throw new HetmmError('E_ARGUMENT', `normals needs 'list' or 'remove'${action === undefined ? '' : `, not ${JSON.stringify(action)}`}\n${NORMALS_USAGE}`);
  if (values.templates === undefined) throw new HetmmError('E_ARGUMENT', `normals ${action} needs -t STORE\n${NORMALS_USAGE}`);
  const report = new Reporter(ctx, values);
  const file = values.templates;
  if (action === 'list') {
    if (ids.length > 0) throw new HetmmError('E_ARGUMENT', `normals list takes no ids (received ${ids.join(' ')})\n${NORMALS_USAGE}`);
    const store = await TemplateStore.load(file);
    const normals = store.normals();
    for (const n of normals) report.record(n);
    report.out(normalsTable(normals));
    report.out(`${normals.length} normals (${normals.filter((n) => n.kind === 'appended').length} appended)${store.removedCount > 0 ? `, ${store.removedCount} removed` : ''}`);
    return 0;
  }
  if (ids.length === 0) throw new HetmmError('E_ARGUMENT', `normals remove needs one or more ids (hetmm normals list -t ${file} shows them)\n${NORMALS_USAGE}`);
  const store = await TemplateStore.load(file);
  const r = await store.removeFromFile(file, ids, { lock: { purpose: 'hetmm normals remove' } });
  report.record({ store: file, removed: r.removed, alreadyRemoved: r.alreadyRemoved, templates: r.count });
  report.out(`${file}: removed ${r.removed.length}${r.alreadyRemoved.length > 0 ? ` (${r.alreadyRemoved.length} removed before: ${r.alreadyRemoved.join(' ')})` : ''}, now ${r.count} templates`);
  return 0;
}

/** id, kind, added, update, file: aligned columns. */
function normalsTable(normals: readonly StoreNormal[]): string {
  const rows = [['id', 'kind', 'added', 'update', 'file'], ...normals.map((n) => [n.id, n.kind, n.addedAt ?? '-', n.update ?? '-', n.file])];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]!))).join('  ')).join('\n');
}
