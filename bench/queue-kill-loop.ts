/**
 * Issue 18's done-when for queue mode at full size: `--kills N` (default 20)
 * worker kill -9s during hot updates, clients retrying every timeout with
 * their Idempotency-Key; prints how many images were acknowledged and checks
 * that each is stored exactly once (exit 1 otherwise). A real redis-server on
 * a loopback port and real `hetmm worker` processes (test/helpers/queue-kill-loop.ts).
 *
 *   node dist/bench/queue-kill-loop.js --kills 20 [--clients 2] [--max-minutes 15]
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { datasetsDir, listImages, tempDir } from '../test/helpers/io-paths.js';
import { runKillLoop } from '../test/helpers/queue-kill-loop.js';
import { TestRedis } from '../test/helpers/redis-server.js';

const { values } = parseArgs({
  options: { kills: { type: 'string', default: '20' }, clients: { type: 'string', default: '2' }, 'max-minutes': { type: 'string', default: '15' } },
});
const kills = Number(values.kills);
const good = listImages(path.join(datasetsDir, 'magnetic-tile/magnetic_tile/train/good'));
const redis = await TestRedis.start();
try {
  const load = os.loadavg()[0]!.toFixed(1);
  const r = await runKillLoop({
    redisUrl: redis.url,
    dataDir: tempDir('kill-loop'),
    line: 'kl',
    images: good.slice(100, 160),
    kills,
    clients: Number(values.clients),
    maxMs: Number(values['max-minutes']) * 60_000,
    workerEnv: { HETMM_QUEUE_LOCK_MS: '2000', HETMM_QUEUE_STALLED_MS: '1000', HETMM_QUEUE_HEARTBEAT_MS: '500' },
    log: (line) => console.log(line),
  });
  const wrong = r.acknowledged.filter((name) => r.stored.get(name) !== 1);
  const unacknowledgedTwice = [...r.stored].filter(([name, n]) => name.startsWith('c') && n > 1);
  console.log(
    `${r.kills} kills in ${(r.ms / 1000).toFixed(0)} s (load average ${load} at the start, ${os.loadavg()[0]!.toFixed(1)} at the end): ` +
      `${r.acknowledged.length} images acknowledged, ${r.retries} client retries, ${r.repeatedAnswers} answers said "already applied"; ` +
      `stored exactly once: ${r.acknowledged.length - wrong.length} of ${r.acknowledged.length}; unacknowledged stored twice: ${unacknowledgedTwice.length}`,
  );
  if (wrong.length > 0 || unacknowledgedTwice.length > 0) {
    console.log(`WRONG: ${[...wrong, ...unacknowledgedTwice.map(([n]) => n)].map((n) => `${n} x${r.stored.get(n) ?? 0}`).join(', ')}`);
    process.exitCode = 1;
  }
} finally {
  await redis.stop();
}
