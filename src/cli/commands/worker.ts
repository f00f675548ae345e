import path from 'node:path';
import { HetmmError } from '../../errors.js';
import { SharedDirBlobStore } from '../../queue/blob-store.js';
import { workerLines } from '../../queue/lines.js';
import { QueueWorker } from '../../queue/worker.js';
import type { CliContext } from '../context.js';
import { Reporter } from '../context.js';
import { COMMON_OPTIONS, INT8_OPTION, backendOption, intOption, parse, precisionOption } from '../options.js';

export const WORKER_USAGE = `usage: hetmm worker --redis URL (--data-dir DIR | --store FILE ...) [--lines a,b]
                    [--concurrency N] [--blob-dir DIR] [--model PATH] [--threads N] [--precision float|int8] [--log-jobs]

Queue worker (docs/SCALING.md): loads the stores of its lines once and
processes their predictions and hot updates from Redis (BullMQ). Start as
many as you like, on any machine that reaches Redis and the shared store
directory. Store updates announced by other workers are applied as they
come (appended, not reloaded). SIGTERM/SIGINT: finish the jobs in hand, then exit.
Precision: each store's own, as in hetmm serve (an int8 store runs its int8
backbone, embedded in it, for predictions and hot updates);
--precision float refuses int8 stores, --precision int8 (alias --int8) also
matches float stores in int8.

  --redis URL        redis://host:6379 (the same for API nodes and workers)
  --data-dir DIR     serve every <line>.hetmm in DIR (the shared store location)
  --store FILE       serve one store (line = file name without .hetmm); repeatable
  --lines a,b        only these lines
  --concurrency N    jobs at once per line (default 1)
  --blob-dir DIR     shared directory for large images and result maps
                     (default DIR/.blobs of --data-dir; same path on every machine)
  --log-jobs         one stderr line per job start/end and store update`;

export async function workerCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values } = parse(
    args,
    {
      ...COMMON_OPTIONS,
      ...INT8_OPTION,
      redis: { type: 'string' },
      'data-dir': { type: 'string' },
      store: { type: 'string', multiple: true },
      lines: { type: 'string' },
      concurrency: { type: 'string' },
      'blob-dir': { type: 'string' },
      'log-jobs': { type: 'boolean', default: false },
    },
    WORKER_USAGE,
  );
  if (values.help) {
    ctx.stdout.write(`${WORKER_USAGE}\n`);
    return 0;
  }
  if (values.redis === undefined) throw new HetmmError('E_ARGUMENT', `worker needs --redis URL\n${WORKER_USAGE}`);
  const dataDir = values['data-dir'];
  if (dataDir === undefined && (values.store ?? []).length === 0) throw new HetmmError('E_ARGUMENT', `worker needs --data-dir or --store\n${WORKER_USAGE}`);
  const blobDir = values['blob-dir'] ?? (dataDir === undefined ? undefined : path.join(dataDir, '.blobs'));
  if (blobDir === undefined) throw new HetmmError('E_ARGUMENT', `worker needs --blob-dir when it serves --store files only\n${WORKER_USAGE}`);
  const report = new Reporter(ctx, values);
  const lines = await workerLines({
    ...(dataDir === undefined ? {} : { dataDir }),
    stores: values.store ?? [],
    ...(values.lines === undefined ? {} : { only: values.lines.split(',').map((s) => s.trim()).filter(Boolean) }),
  });
  if (lines.length === 0) throw new HetmmError('E_ARGUMENT', 'no lines to serve: the data directory holds no <line>.hetmm store');
  const worker = new QueueWorker({
    redisUrl: values.redis,
    lines,
    blobs: new SharedDirBlobStore(blobDir),
    concurrency: intOption(values.concurrency, 'concurrency') ?? 1,
    detector: {
      model: values.model,
      backend: backendOption(values.backend),
      threads: intOption(values.threads, 'threads'),
      ...precisionOption(values),
    },
    ...(values['log-jobs'] ? { log: (line: string) => ctx.stderr.write(`worker: ${line}\n`) } : {}),
  });
  const stopped = new Promise<void>((resolve) => {
    const stop = (): void => {
      report.note(`worker ${worker.id}: finishing the jobs in hand, then exiting`);
      worker.close().then(resolve, resolve);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await worker.start();
  const status = worker.status();
  const summary = Object.entries(status.lines)
    .map(([name, l]) => (l.state === 'ready' ? `${name} (${l.templates} templates, version ${l.version})` : `${name} FAILED: ${l.error}`))
    .join('; ');
  report.note(`worker ${worker.id} ready: ${summary}`);
  report.record({ worker: worker.id, lines: status.lines });
  await stopped;
  return Object.values(status.lines).some((l) => l.state === 'ready') ? 0 : 4;
}
