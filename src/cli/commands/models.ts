import { HetmmError, isHetmmError } from '../../errors.js';
import {
  cachedModelPath,
  DEFAULT_MODEL_NAME,
  locateModel,
  modelEntry,
  MODELS,
  pullModel,
  verifyModelFile,
  type LocatedModel,
} from '../../models/index.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { parse } from '../options.js';

export const MODELS_USAGE = `usage: hetmm models list|pull [NAME]|verify [NAME]|path [NAME] [--host URL] [--json] [--quiet]

The backbone models hetmm knows (default ${DEFAULT_MODEL_NAME}). A model is looked
for in: --model / HETMM_MODEL, the cache (HETMM_CACHE_DIR), ../shared/models, the
npm package (e.g. @hetmm/model-resnet50v2); else downloaded from HETMM_MODEL_HOST.
  list          every model, and where it was found
  pull NAME     download into the cache from --host / HETMM_MODEL_HOST, verified by sha256
  verify NAME   check the file that would be used against the shipped sha256
  path NAME     print the file that would be used (never downloads)`;

function locateOrUndefined(name: string): LocatedModel | undefined {
  try {
    return locateModel({ name });
  } catch (e) {
    if (isHetmmError(e) && e.code === 'E_MODEL_NOT_FOUND') return undefined;
    throw e;
  }
}

export async function modelsCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      host: { type: 'string' },
      json: { type: 'boolean', default: false },
      quiet: { type: 'boolean', short: 'q', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    MODELS_USAGE,
  );
  if (values.help) {
    ctx.stdout.write(`${MODELS_USAGE}\n`);
    return 0;
  }
  const [action, name = DEFAULT_MODEL_NAME, ...extra] = positionals;
  if (extra.length > 0 || (action === 'list' && positionals.length > 1)) throw new HetmmError('E_ARGUMENT', `too many arguments\n${MODELS_USAGE}`);
  const report = new Reporter(ctx, values);
  switch (action) {
    case 'list': {
      for (const m of MODELS) {
        const found = locateOrUndefined(m.name);
        report.record({ name: m.name, file: m.file, size: m.size, sha256: m.sha256, licence: m.licence, path: found?.path ?? null, source: found?.source ?? null });
        report.out(`${m.name.padEnd(28)} ${(m.size / 1e6).toFixed(1)} MB  ${m.licence.padEnd(10)} ${found ? `${found.source}: ${found.path}` : 'not present'}`);
        report.out(`${''.padEnd(28)} ${m.summary}`);
      }
      return 0;
    }
    case 'path': {
      const found = locateModel({ name });
      report.record({ name, path: found.path, source: found.source });
      report.out(found.path);
      return 0;
    }
    case 'verify': {
      const entry = modelEntry(name);
      const found = locateModel({ name });
      const result = await verifyModelFile(entry, found.path);
      if (!result.ok) throw new HetmmError('E_MODEL_INVALID', `${found.path} is not ${entry.name}: ${result.reason}; delete it and run hetmm models pull ${entry.name}`);
      report.record({ name, path: found.path, source: found.source, ok: true });
      report.out(`ok ${found.path} (${found.source}, sha256 ${entry.sha256})`);
      return 0;
    }
    case 'pull': {
      const entry = modelEntry(name);
      const target = cachedModelPath(entry);
      const cached = await verifyModelFile(entry, target).catch(() => ({ ok: false }));
      if (cached.ok) {
        report.record({ name, path: target, downloaded: false });
        report.note(`${entry.name} is already in the cache`);
        report.out(target);
        return 0;
      }
      const quietProgress = values.quiet || values.json ? { onProgress: () => {} } : {};
      const file = await pullModel(entry, { host: values.host, target, ...quietProgress });
      report.record({ name, path: file, downloaded: true });
      report.out(file);
      return 0;
    }
    default:
      throw new HetmmError('E_ARGUMENT', `Expected list, pull, verify or path but received ${action === undefined ? 'nothing' : `"${action}"`}\n${MODELS_USAGE}`);
  }
}
