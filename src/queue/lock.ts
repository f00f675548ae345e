/**
 * The cluster-wide single-writer lock of a line's store: a Redis key set
 * with NX and a time to live, renewed while held and released only by its
 * holder (compare-and-delete). It orders hot updates from every node.
 *
 * A TTL lock alone cannot stop a holder that was paused (SIGSTOP, a long GC,
 * a frozen VM) past its TTL and then resumes: it still believes it holds the
 * lock. So each acquisition also takes a fencing token, a counter
 * incremented in the same atomic step, and the writer passes it to the store
 * (TemplateStore.appendToFile's `fence`), which records it and refuses, under
 * its file lock, a writer whose token is older than one already recorded.
 * The announcement in Redis is made only while the lock is still this
 * holder's (announceIfHeld in ./worker.ts).
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { HetmmError } from '../errors.js';

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
/**
 * Takes the lock and a fencing token at once. The token is kept above
 * ARGV[3], the highest token the store is known to record, so that a Redis
 * that lost its data (the counter restarts) does not fence out every writer.
 */
const ACQUIRE = `if redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then
  local f = redis.call('incr', KEYS[2])
  if f <= tonumber(ARGV[3]) then f = tonumber(ARGV[3]) + 1; redis.call('set', KEYS[2], f) end
  return f
end
return false`;

export interface HeldLock {
  readonly key: string;
  readonly token: string;
  /** the fencing token of this acquisition (higher than every earlier one on this key) */
  readonly fence: number;
  /** false once a renewal found the lock gone (expired while Redis was away): the holder must not commit */
  readonly held: boolean;
  /** asks Redis whether the lock is still this holder's */
  verify(): Promise<boolean>;
  release(): Promise<void>;
}

export async function acquireLock(
  redis: Redis,
  key: string,
  options: { ttlMs?: number; waitMs?: number; holder?: string; fenceKey?: string; fenceFloor?: number } = {},
): Promise<HeldLock> {
  const ttlMs = options.ttlMs ?? 30_000;
  const waitMs = options.waitMs ?? 60_000;
  const token = `${options.holder ?? 'hetmm'}:${randomBytes(8).toString('hex')}`;
  const deadline = Date.now() + waitMs;
  let delay = 20;
  let fence: number;
  for (;;) {
    const got = (await redis.eval(ACQUIRE, 2, key, options.fenceKey ?? `${key}:fence`, token, String(ttlMs), String(options.fenceFloor ?? 0))) as number | null;
    if (got !== null) {
      fence = Number(got);
      break;
    }
    if (Date.now() > deadline) {
      const holder = await redis.get(key);
      throw new HetmmError('E_TIMEOUT', `the store lock ${key} is held by ${holder ?? 'nobody (just released)'}; gave up after ${waitMs} ms`);
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 500);
  }
  let held = true;
  const timer = setInterval(() => {
    redis.eval(RENEW, 1, key, token, String(ttlMs)).then(
      (r) => {
        if (r !== 1) held = false;
      },
      () => undefined, // Redis away: the TTL decides; a later renewal tells
    );
  }, Math.max(1000, Math.floor(ttlMs / 3)));
  timer.unref();
  return {
    key,
    token,
    fence,
    get held() {
      return held;
    },
    async verify() {
      held = held && (await redis.get(key)) === token;
      return held;
    },
    async release() {
      clearInterval(timer);
      await redis.eval(RELEASE, 1, key, token).catch(() => undefined);
    },
  };
}
