/**
 * Redis connections and key names. Two kinds of connection, as BullMQ's
 * production guide says: workers (and blocking readers) retry forever
 * (`maxRetriesPerRequest: null`) so they ride out a Redis restart; producers
 * fail fast (no offline queue, one retry) so an API node answers 503 at once
 * instead of piling requests up while Redis is away.
 */
import type { ConnectionOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { HetmmError } from '../errors.js';

export type ConnectionRole = 'worker' | 'producer';

/** ioredis options from a redis:// or rediss:// URL. */
export function redisOptions(url: string, role: ConnectionRole): RedisOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new HetmmError('E_ARGUMENT', `Expected a Redis URL like redis://host:6379 but received "${url}"`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new HetmmError('E_ARGUMENT', `Expected a redis:// or rediss:// URL but received "${url}"`);
  }
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new HetmmError('E_ARGUMENT', `Expected a database number in "${url}"`);
  const base: RedisOptions = {
    host: parsed.hostname || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
    db,
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
    // reconnect quickly at first, then every 2 s at most
    retryStrategy: (times: number) => Math.min(100 * times, 2000),
  };
  return role === 'worker'
    ? { ...base, maxRetriesPerRequest: null, enableReadyCheck: true }
    : { ...base, maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000, commandTimeout: 5000 };
}

/** The same options in the shape BullMQ's constructors take (BullMQ opens its own connections from them). */
export function bullConnection(url: string, role: ConnectionRole): ConnectionOptions {
  return redisOptions(url, role) as ConnectionOptions;
}

/** A connection that has announced itself ready (or an E_UNAVAILABLE after `timeoutMs`). */
export async function connect(url: string, role: ConnectionRole, timeoutMs = 5000): Promise<Redis> {
  const redis = new Redis(redisOptions(url, role));
  redis.on('error', () => undefined); // reconnection is automatic; callers see failed commands
  if (redis.status === 'ready') return redis;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      redis.disconnect();
      reject(unavailable(`Redis at ${url} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    // producers fail fast: the first refused connection is the answer
    const onError = (e: Error): void => {
      if (role !== 'producer') return;
      cleanup();
      redis.disconnect();
      reject(unavailable(`Redis at ${url} is not reachable: ${e.message}`, e));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('error', onError);
    };
    redis.on('ready', onReady);
    redis.on('error', onError);
  });
  return redis;
}

export function unavailable(message: string, cause?: unknown): HetmmError {
  return new HetmmError('E_UNAVAILABLE', message, cause === undefined ? undefined : { cause });
}

/** True for errors that mean "Redis is not reachable right now" (retry later: HTTP 503). */
export function isConnectionError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  return /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Command timed out|MaxRetriesPerRequest|enableOfflineQueue|LOADING|connect ETIMEDOUT/i.test(
    e.message,
  );
}

const LINE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export function assertLineName(line: string): void {
  if (typeof line !== 'string' || !LINE_NAME.test(line)) {
    throw new HetmmError('E_ARGUMENT', `Expected a line name of letters, digits, '_' and '-' (at most 64) but received ${JSON.stringify(line)}`);
  }
}

/** Every Redis key and BullMQ name hetmm uses, in one place. */
export class QueueKeys {
  constructor(readonly prefix: string) {}
  /** BullMQ queue of one line's jobs (BullMQ adds its own `${prefix}:` in front). */
  queueName(line: string): string {
    return `line-${line}`;
  }
  /** the line's latest announced store version (templates + revision; set together with the stream entry) */
  version(line: string): string {
    return `${this.prefix}:line:${line}:version`;
  }
  /** stream of the line's store updates, one entry per version */
  updates(line: string): string {
    return `${this.prefix}:line:${line}:updates`;
  }
  /** cluster-wide single-writer lock of the line's store */
  lock(line: string): string {
    return `${this.prefix}:line:${line}:lock`;
  }
  /** the lock's fencing counter: each acquisition gets a higher token, recorded with the append it makes */
  fence(line: string): string {
    return `${this.prefix}:line:${line}:fence`;
  }
  /** the line's lineage: JSON {lineage, base, baseCount, tip: [count, head]} (TemplateStore.chain) of the shared store */
  lineage(line: string): string {
    return `${this.prefix}:line:${line}:lineage`;
  }
  /** lines any worker has registered */
  lines(): string {
    return `${this.prefix}:lines`;
  }
  workers(): string {
    return `${this.prefix}:workers`;
  }
  worker(id: string): string {
    return `${this.prefix}:worker:${id}`;
  }
}
