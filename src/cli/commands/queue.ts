import { HetmmError } from '../../errors.js';
import { SharedDirBlobStore } from '../../queue/blob-store.js';
import { QueueClient } from '../../queue/client.js';
import { clusterMetrics, clusterStatus, formatClusterStatus } from '../../queue/status.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { COMMON_OPTIONS, parse } from '../options.js';

export const QUEUE_USAGE = `usage: hetmm queue status --redis URL [--json | --prometheus]

Per line: store version, jobs waiting/active/completed/failed, ready
workers; per worker: its lines' store versions and template counts (or why
a store failed to load), jobs processed/failed/retried, mean wait and
processing time, event-loop delay (docs/SCALING.md).`;

export async function queueCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parse(args, { ...COMMON_OPTIONS, redis: { type: 'string' }, prometheus: { type: 'boolean', default: false } }, QUEUE_USAGE);
  if (values.help) {
    ctx.stdout.write(`${QUEUE_USAGE}\n`);
    return 0;
  }
  if (positionals[0] !== 'status' || positionals.length !== 1) throw new HetmmError('E_ARGUMENT', QUEUE_USAGE);
  if (values.redis === undefined) throw new HetmmError('E_ARGUMENT', `queue status needs --redis URL\n${QUEUE_USAGE}`);
  const report = new Reporter(ctx, values);
  // status reads Redis only; the blob store is never touched
  const client = await QueueClient.open({ redisUrl: values.redis, blobs: new SharedDirBlobStore('.') });
  try {
    const status = await clusterStatus(client);
    if (values.prometheus) ctx.stdout.write(await clusterMetrics(client, status));
    else {
      report.out(formatClusterStatus(status));
      report.record(status);
    }
    return 0;
  } finally {
    await client.close();
  }
}
