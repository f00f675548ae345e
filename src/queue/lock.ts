/**
 * The cluster-wide single-writer lock of a line's store: a Redis key set
 * with NX and a time to live, renewed while held and released only by its
 * holder (compare-and-delete). It orders hot updates from every node; the
 * store file itself is written only by the lock's holder, atomically
 * (temp file + rename), so readers always see a complete store.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { HetmmError } from '../errors.js';

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

export interface HeldLock {
  readonly key: string;
  readonly token: string;
  /** false once a renewal found the lock gone (expired while Redis was away): the holder must not commit */
  readonly held: boolean;
  release(): Promise<void>;
}

export async function acquireLock(
  redis: Redis,
  key: string,
  options: { ttlMs?: number; waitMs?: number; holder?: string } = {},
): Promise<HeldLock> {
  const ttlMs = options.ttlMs ?? 30_000;
  const waitMs = options.waitMs ?? 60_000;
  const token = `${options.holder ?? 'hetmm'}:${randomBytes(8).toString('hex')}`;
  const deadline = Date.now() + waitMs;
  let delay = 20;
  for (;;) {
    if ((await redis.set(key, token, 'PX', ttlMs, 'NX')) === 'OK') break;
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
    get held() {
      return held;
    },
    async release() {
      clearInterval(timer);
      await redis.eval(RELEASE, 1, key, token).catch(() => undefined);
    },
  };
}
