import { describeFalseAlarms, type StoredThreshold } from '../../detector/threshold.js';
import path from 'node:path';
import { storeBackboneFiles } from '../../detector/store-backbone.js';
import { HetmmError } from '../../errors.js';
import type { TuneRecord } from '../../fit/tune.js';
import { describeTuning } from '../calibration-options.js';
import { TemplateStore } from '../../store/index.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { parse } from '../options.js';

export const INFO_USAGE = `usage: hetmm info STORE [--json]

Describes a template store: backbone, data type, images, layer shapes, sizes,
preset (and its tuning), threshold (with its expected false-alarm rate
and upper bound) and PTS provenance. Validates the whole file (checksum).
Precision: int8 for a store fitted int8 end to end (the default of hetmm
fit), with its int8 backbone embedded (an older store names the files beside
it; a missing one is an error, exit 4, naming it).`;

export async function infoCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parse(
    args,
    { json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
    INFO_USAGE,
  );
  if (values.help) {
    ctx.stdout.write(`${INFO_USAGE}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new HetmmError('E_ARGUMENT', `info needs exactly one STORE file\n${INFO_USAGE}`);
  const report = new Reporter(ctx, values);
  const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const store = await TemplateStore.load(positionals[0]!);
  const d = store.describe();
  const threshold = (d.meta as { threshold?: { value?: unknown } | null }).threshold;
  if (threshold !== undefined && (typeof threshold?.value !== 'number' || !Number.isFinite(threshold.value))) {
    throw new HetmmError('E_STORE_FORMAT', `template store '${positionals[0]}': its threshold is not a number (meta.threshold.value = ${JSON.stringify(threshold?.value) ?? 'undefined'}); refit or recalibrate it`);
  }
  // the int8 backbone embedded, or (an older store) beside it: E_MODEL_NOT_FOUND naming a missing file
  const int8 = storeBackboneFiles(positionals[0]!, store.meta);
  const embedded = int8?.embedded === true ? store.model : undefined;
  report.record({
    file: positionals[0],
    ...d,
    precision: int8 === undefined ? 'float' : 'int8',
    ...(int8 === undefined
      ? {}
      : embedded !== undefined
        ? { int8_backbone: { embedded: true, sha256: embedded.sha256, bytes: embedded.bytes.length } }
        : { int8_backbone: path.resolve(int8.model), int8_description: path.resolve(int8.description) }),
    files: store.files,
    removed: store.removedCount,
  });
  report.out(`${positionals[0]}`);
  report.out(`  backbone   ${d.backbone.name} (sha256 ${d.backbone.modelSha256.slice(0, 16)}…), input ${d.backbone.inputSize.join('x')}`);
  const precision =
    int8 === undefined
      ? 'float (float32 backbone)'
      : embedded !== undefined
        ? `int8 end to end (int8 backbone embedded, ${mib(embedded.bytes.length)})`
        : `int8 end to end (int8 backbone ${path.basename(int8.model)} + ${path.basename(int8.description)} beside the store)`;
  report.out(`  precision  ${precision}`);
  report.out(`  templates  ${d.count} (${d.dtype})`);
  if (store.removedCount > 0) report.out(`  removed    ${store.removedCount} normals removed by id, not counted above (hetmm normals list)`);
  for (const l of d.layers) report.out(`  ${l.name.padEnd(10)} [${l.shape.join(', ')}] stride ${l.stride}`);
  report.out(`  size       ${mib(d.bytesOnDisk)} on disk, ${mib(d.bytesInMemory)} in memory`);
  const meta = d.meta as { preset?: { name?: string } | string; threshold?: StoredThreshold; tuning?: TuneRecord; pts?: unknown };
  if (meta.preset !== undefined && meta.preset !== null) report.out(`  preset     ${typeof meta.preset === 'string' ? meta.preset : String(meta.preset.name)}`);
  if (typeof meta.tuning === 'object' && meta.tuning !== null && typeof meta.tuning.proxy === 'object') report.out(`  tuning     ${describeTuning(meta.tuning)}`);
  if (meta.threshold !== undefined) {
    const value = (meta.threshold as { value: number }).value;
    report.out(`  threshold  ${value.toFixed(4)} (${String(meta.threshold.method)})`);
    report.out(`             ${describeFalseAlarms(meta.threshold)}`);
  }
  if (meta.pts !== undefined) report.out(`  pts        ${JSON.stringify(meta.pts)}`);
  return 0;
}
