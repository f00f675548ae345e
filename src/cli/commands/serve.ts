import path from 'node:path';
import { setting } from '../../config.js';
import { SharedDirBlobStore } from '../../queue/blob-store.js';
import { openRecord, type InspectionRecord } from '../../record/index.js';
import { QueueExecutor } from '../../queue/executor.js';
import { createServer, resolveNamedTokens } from '../../server/index.js';
import { lineNameOfStore, unservableStores } from '../../server/line-name.js';
import { HetmmError } from '../../errors.js';
import { oneLine } from '../batch.js';
import type { CliContext } from '../context.js';
import { backendOption, COMMON_OPTIONS, INT8_OPTION, intOption, parse, precisionOption } from '../options.js';

export const SERVE_USAGE = `usage: hetmm serve --store STORE [--store STORE ...] | --data-dir DIR | --redis URL [--blob-dir DIR]
                   [--port 8080] [--host 127.0.0.1] [--allowed-hosts NAME,...] [--token-file FILE]
                   [--concurrency 2xN] [--queue 8] [--timeout 30] [--body-limit-mb 32] [--max-pixels 67108864]
                   [--model PATH] [--backend auto|reference|fast] [--threads N] [--precision float|int8] [--log-level info]
                   [--history sqlite|off|postgres://...] [--history-max-per-line N] [--history-max-age-days N] [--history-max-file-mb N]

Serves the inspection page (http://HOST:PORT/) and the REST API (/v1/...,
/openapi.json, /healthz, /readyz, /metrics). Each --store file is a line
named after the file; --data-dir holds any number of <line>.hetmm stores,
created and deleted over the API. Changes (hot updates, thresholds, lines)
need the bearer token from --token-file or HETMM_TOKEN; without one they
are disabled. Binds to 127.0.0.1 unless --host says otherwise; requests
whose Host header is not a loopback name, the --host address, the address
they arrived at or one of --allowed-hosts are refused (403, against DNS
rebinding). A store in --data-dir that does not open is listed as broken
(GET /v1/lines) and the other lines are served. SIGTERM or SIGINT finishes
accepted work and stops. Details: docs/SERVING.md.
Predictions run on N single-threaded pipelines per backbone model (as
hetmm predict --pipelines): --threads N, default HETMM_THREADS, else one per
core (at most 8); --concurrency predictions per line at once, default 2 per
pipeline.
Precision: each store's own by default: a store fitted int8 end to end (the
default of hetmm fit) runs the int8 backbone embedded in it
for uploads and hot updates, and int8 matching; a float store the float
model. --precision float refuses int8 stores; --precision int8 (alias
--int8) also matches float stores in int8. Lines created over HTTP are
int8 end to end too (quantised on the uploads; ?precision=float for the
float model).
With --redis the server runs nothing itself: predictions and changes are
jobs for \`hetmm worker\` processes (docs/SCALING.md); --blob-dir (default
DIR/.blobs of --data-dir) is the directory the workers share for large
images and result maps.
The inspection record (--history; HETMM_HISTORY): sqlite by default with
--data-dir (DIR/inspections), off otherwise; postgres://... in queue mode
(images in the blob directory). GET /v1/lines/{line}/inspections and
/v1/inspections/{id} read it. Retention: docs/SERVING.md.`;

export async function serveCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values } = parse(
    args,
    {
      ...COMMON_OPTIONS,
      ...INT8_OPTION,
      store: { type: 'string', multiple: true },
      'data-dir': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'allowed-hosts': { type: 'string' },
      'token-file': { type: 'string' },
      concurrency: { type: 'string' },
      queue: { type: 'string' },
      timeout: { type: 'string' },
      'body-limit-mb': { type: 'string' },
      'max-pixels': { type: 'string' },
      'log-level': { type: 'string' },
      redis: { type: 'string' },
      'blob-dir': { type: 'string' },
      history: { type: 'string' },
      'history-max-per-line': { type: 'string' },
      'history-max-age-days': { type: 'string' },
      'history-max-file-mb': { type: 'string' },
    },
    SERVE_USAGE,
  );
  if (values.help) {
    ctx.stdout.write(`${SERVE_USAGE}\n`);
    return 0;
  }
  const stores = values.store ?? [];
  checkStoreNames(stores);
  const maxPixels = values['max-pixels'] === undefined ? {} : { maxPixels: intOption(values['max-pixels'], 'max-pixels')! };
  const queue = values.redis === undefined ? undefined : await openQueueExecutor(values.redis, values['blob-dir'], values['data-dir'], maxPixels);
  if (queue === undefined && stores.length === 0 && values['data-dir'] === undefined) throw new HetmmError('E_ARGUMENT', `serve needs --store STORE or --data-dir DIR\n${SERVE_USAGE}`);
  const port = intOption(values.port, 'port', 0) ?? 8080;
  if (port > 65535) throw new HetmmError('E_ARGUMENT', `Expected --port in 0..65535 but received ${port}`);
  const host = values.host ?? '127.0.0.1';
  const logLevel = values['log-level'] ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new HetmmError('E_ARGUMENT', `Expected --log-level fatal|error|warn|info|debug|trace|silent but received "${logLevel}"`);
  }
  if (values['data-dir'] !== undefined) {
    for (const u of await unservableStores(values['data-dir'])) ctx.stderr.write(`${oneLine(`hetmm serve: warning: '${u.file}' is not served: ${u.reason}`)}\n`);
  }
  const tokens = await resolveNamedTokens(values['token-file']);
  const record = await openHistory(values, queue !== undefined).catch(async (e: unknown) => {
    await queue?.close();
    throw e;
  });
  const app = await createServer({
    ...(record === undefined ? {} : { record }),
    ...(setting('shifts') === undefined ? {} : { shifts: setting('shifts')!.split(',') }),
    stores,
    ...(values['data-dir'] === undefined ? {} : { dataDir: values['data-dir'] }),
    ...(values.model === undefined ? {} : { model: values.model }),
    ...(values.backend === undefined ? {} : { backend: backendOption(values.backend)! }),
    ...(values.threads === undefined ? {} : { threads: intOption(values.threads, 'threads')! }),
    ...precisionOption(values),
    ...(values.concurrency === undefined ? {} : { concurrency: intOption(values.concurrency, 'concurrency')! }),
    ...(values.queue === undefined ? {} : { queueLimit: intOption(values.queue, 'queue', 0)! }),
    ...(values.timeout === undefined ? {} : { requestTimeout: intOption(values.timeout, 'timeout')! * 1000 }),
    ...(values['body-limit-mb'] === undefined ? {} : { bodyLimit: intOption(values['body-limit-mb'], 'body-limit-mb')! * 2 ** 20 }),
    ...maxPixels,
    tokens,
    host,
    ...(values['allowed-hosts'] === undefined ? {} : { allowedHosts: values['allowed-hosts'].split(',').map((h) => h.trim()).filter((h) => h !== '') }),
    logger: { level: logLevel },
    ...(queue === undefined ? {} : { executor: queue }),
  }).catch(async (e: unknown) => {
    await record?.close();
    throw e;
  });
  app.addHook('onClose', async () => record?.close());
  const stopped = new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      ctx.stderr.write(`hetmm serve: ${signal}: finishing accepted requests, then stopping\n`);
      app
        .close()
        .then(() => queue?.close())
        .then(resolve, resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  try {
    await app.listen({ port, host });
  } catch (e) {
    await app.close();
    await queue?.close();
    throw new HetmmError('E_ARGUMENT', `cannot listen on ${host}:${port}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
  const address = app.server.address();
  const shown = typeof address === 'object' && address !== null ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/` : String(address);
  const { lines, broken } = (await app.inject({ url: '/v1/lines' })).json<{ lines: Array<{ name: string; templates: number }>; broken: Array<{ line: string; reason: string }> }>();
  ctx.stderr.write(
    `hetmm serve: ${shown}  lines: ${lines.map((l) => `${l.name} (${l.templates} templates)`).join(', ') || 'none'}; ` +
      `${tokens.size === 0 ? 'changes DISABLED (no --token-file or HETMM_TOKEN)' : `changes need a bearer token (${[...tokens.keys()].join(', ')})`}\n`,
  );
  for (const b of broken) ctx.stderr.write(`hetmm serve: line ${b.line} is not served: ${b.reason}\n`);
  await stopped;
  ctx.stderr.write('hetmm serve: stopped\n');
  return 0;
}

/** Queue mode: the executor that turns every call into a job for `hetmm worker` processes. */
async function openQueueExecutor(redisUrl: string, blobDir: string | undefined, dataDir: string | undefined, limits: { maxPixels?: number }): Promise<QueueExecutor> {
  const dir = blobDir ?? (dataDir === undefined ? undefined : path.join(dataDir, '.blobs'));
  if (dir === undefined) throw new HetmmError('E_ARGUMENT', `serve --redis needs --blob-dir DIR (or --data-dir DIR): the directory workers share\n${SERVE_USAGE}`);
  return QueueExecutor.open({ redisUrl, blobs: new SharedDirBlobStore(dir), ...limits });
}

/** The inspection record asked for: --history, else HETMM_HISTORY, else sqlite in --data-dir (not in queue mode: one file cannot serve several API nodes). */
async function openHistory(values: Record<string, unknown>, queueMode: boolean): Promise<InspectionRecord | undefined> {
  const dataDir = values['data-dir'] as string | undefined;
  const history = (values.history as string | undefined) ?? setting('history') ?? (dataDir !== undefined && !queueMode ? 'sqlite' : 'off');
  const limit = (flag: string, name: 'historyMaxPerLine' | 'historyMaxAgeDays' | 'historyMaxFileMb'): number | undefined => {
    const v = (values[flag] as string | undefined) ?? setting(name);
    return v === undefined ? undefined : intOption(v, flag, 0);
  };
  const maxPerLine = limit('history-max-per-line', 'historyMaxPerLine');
  const maxAgeDays = limit('history-max-age-days', 'historyMaxAgeDays');
  const maxFileMb = limit('history-max-file-mb', 'historyMaxFileMb');
  const sync = setting('historySync') ?? 'normal';
  if (sync !== 'normal' && sync !== 'full') throw new HetmmError('E_ARGUMENT', `Expected HETMM_HISTORY_SYNC normal or full but received "${sync}"`);
  return openRecord({
    history,
    ...(dataDir === undefined ? {} : { dataDir }),
    ...((values['blob-dir'] ?? dataDir) === undefined ? {} : { filesDir: (values['blob-dir'] as string | undefined) ?? path.join(dataDir!, '.blobs') }),
    synchronous: sync,
    retention: {
      ...(maxPerLine === undefined ? {} : { maxPerLine }),
      ...(maxAgeDays === undefined ? {} : { maxAgeDays }),
      ...(maxFileMb === undefined ? {} : { maxFileBytes: maxFileMb * 2 ** 20 }),
    },
  });
}

/** Each --store names a line (its file name without .hetmm), and no two the same one: usage errors (exit 2), before anything loads. */
function checkStoreNames(stores: readonly string[]): void {
  const byLine = new Map<string, string>();
  for (const file of stores) {
    let line: string;
    try {
      line = lineNameOfStore(file);
    } catch (e) {
      throw new HetmmError('E_ARGUMENT', `--store '${file}' cannot name a line: ${(e as Error).message} (rename the file)`);
    }
    const other = byLine.get(line);
    if (other !== undefined) throw new HetmmError('E_ARGUMENT', `--store '${other}' and --store '${file}' would both serve line '${line}': rename one file`);
    byLine.set(line, file);
  }
}
