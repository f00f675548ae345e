/**
 * Issue 18's done-when for queue mode: worker kill -9s during hot updates,
 * with clients that retry every timeout (the same Idempotency-Key), must
 * leave each acknowledged image in the store exactly once. Used by
 * test/queue-idempotency.test.ts (a few kills) and by
 * bench/queue-kill-loop.ts (`--kills 20`).
 *
 * Two workers serve one line from a data directory of their own; clients
 * post distinct normal images over HTTP to an API node (`serve --redis`)
 * with a short request timeout and retry anything that is not a 200; a
 * killer SIGKILLs a worker and starts a replacement: every other kill
 * lands at a random moment on a random worker, the others are targeted:
 * the writer (the line lock's holder) the moment its append record is
 * complete, before it can announce the version and complete the job (the
 * window where a retried job used to append again). Bounded in time: it
 * stops at `maxMs` whatever the count.
 */
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Detector } from '../../src/detector/detector.js';
import { SharedDirBlobStore } from '../../src/queue/blob-store.js';
import { QueueExecutor } from '../../src/queue/executor.js';
import { createServer } from '../../src/server/index.js';
import { TemplateStore } from '../../src/store/index.js';
import { defaultModelPath } from './io-paths.js';
import { startWorker, type WorkerProcess } from './worker-process.js';

export interface KillLoopOptions {
  readonly redisUrl: string;
  /** an empty directory: the line's store and the blobs go there */
  readonly dataDir: string;
  readonly line: string;
  /** images to fit the line from, and to post (under unique names) */
  readonly images: readonly string[];
  readonly kills: number;
  /** concurrent clients */
  readonly clients?: number;
  /** the API node's request timeout: a client retries after it */
  readonly requestTimeoutMs?: number;
  /** hard bound of the whole loop */
  readonly maxMs: number;
  readonly workerEnv?: NodeJS.ProcessEnv;
  readonly log?: (line: string) => void;
}

export interface KillLoopResult {
  readonly kills: number;
  /** images whose hot update answered 200 */
  readonly acknowledged: readonly string[];
  /** per name, how many templates of that name the store holds */
  readonly stored: ReadonlyMap<string, number>;
  /** client attempts that did not answer 200 (timeouts, 503s while no worker ran) */
  readonly retries: number;
  /** 200 answers that said the update was already applied (repeated or duplicates) */
  readonly repeatedAnswers: number;
  readonly ms: number;
}

const TOKEN = 'kill-loop-token-0123456789';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The file grew past `size` and ends with a record's end magic: an append just became complete (durable). */
export function recordCompleteSince(file: string, size: number): boolean {
  const now = statSync(file).size;
  if (now <= size) return false;
  const fd = openSync(file, 'r');
  try {
    const tail = Buffer.alloc(8);
    readSync(fd, tail, 0, 8, now - 8);
    return tail.toString('latin1') === 'HETMMRCE';
  } finally {
    closeSync(fd);
  }
}

export async function runKillLoop(options: KillLoopOptions): Promise<KillLoopResult> {
  const log = options.log ?? (() => undefined);
  const started = Date.now();
  const deadline = started + options.maxMs;
  const storeFile = path.join(options.dataDir, `${options.line}.hetmm`);
  const detector = await Detector.open({ model: defaultModelPath, preset: 'default', dtype: 'float32' });
  try {
    await detector.add(options.images.slice(0, 2));
    await detector.store.save(storeFile);
  } finally {
    detector.dispose();
  }
  const workers: WorkerProcess[] = [];
  const spawnWorker = async (): Promise<void> => {
    workers.push(await startWorker(options.redisUrl, options.dataDir, { args: ['--threads', '1'], env: options.workerEnv ?? {}, readyTimeoutMs: 120_000 }));
  };
  await Promise.all([spawnWorker(), spawnWorker()]);
  const executor = await QueueExecutor.open({
    redisUrl: options.redisUrl,
    blobs: new SharedDirBlobStore(path.join(options.dataDir, '.blobs')),
    settings: { heartbeatMs: 500 },
  });
  const server: FastifyInstance = await createServer({ executor, token: TOKEN, logger: false, requestTimeout: options.requestTimeoutMs ?? 4000 });
  const acknowledged: string[] = [];
  let retries = 0;
  let repeatedAnswers = 0;
  let kills = 0;
  let stopClients = false;
  try {
    const client = async (c: number): Promise<void> => {
      for (let n = 0; !stopClients && Date.now() < deadline; n++) {
        const name = `c${c}-${n}.png`;
        const bytes = readFileSync(options.images[(c * 7 + n) % options.images.length]!);
        // the same key on every retry: the server and the store recognise the update
        for (;;) {
          if (Date.now() > deadline) return;
          const r = await server.inject({
            method: 'POST',
            url: `/v1/lines/${options.line}/normals?name=${name}`,
            payload: bytes,
            headers: { 'content-type': 'image/jpeg', authorization: `Bearer ${TOKEN}`, 'idempotency-key': `kill-loop-${name}` },
          });
          if (r.statusCode === 200) {
            const body = r.json<{ repeated?: boolean; duplicates: number }>();
            if (body.repeated === true || body.duplicates > 0) repeatedAnswers++;
            acknowledged.push(name);
            break;
          }
          retries++;
          await sleep(200);
        }
      }
    };
    const clients = Array.from({ length: options.clients ?? 2 }, (_, c) => client(c));
    while (kills < options.kills && Date.now() < deadline) {
      const alive = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
      let victim: WorkerProcess | undefined;
      if (kills % 2 === 1) {
        const size = statSync(storeFile).size;
        const limit = Math.min(deadline, Date.now() + 30_000);
        while (!recordCompleteSince(storeFile, size) && Date.now() < limit) await sleep(1);
        const holder = (await executor.client.redis.get(executor.client.keys.lock(options.line))) ?? '';
        victim = alive.find((w) => holder.startsWith(`${w.id}:`));
      } else {
        await sleep(800 + Math.random() * 2500);
        victim = alive[Math.floor(Math.random() * alive.length)];
      }
      if (victim === undefined) continue;
      victim.child.kill('SIGKILL');
      await victim.exited;
      kills++;
      log(`kill ${kills}: ${victim.id} (${acknowledged.length} acknowledged, ${retries} retries so far)`);
      await spawnWorker();
    }
    stopClients = true;
    await Promise.all(clients);
  } finally {
    stopClients = true;
    await server.close();
    await executor.close();
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
  }
  const stored = new Map<string, number>();
  for (const f of (await TemplateStore.load(storeFile)).files) stored.set(f, (stored.get(f) ?? 0) + 1);
  return { kills, acknowledged, stored, retries, repeatedAnswers, ms: Date.now() - started };
}
