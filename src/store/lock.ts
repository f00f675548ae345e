/**
 * A cross-process writer lock for one store file: `<target>.lock`, holding
 * JSON {pid, host, startTicks, since, purpose} of its owner.
 *
 * Why not proper-lockfile: it records no owner (so a timeout cannot say who
 * holds the lock) and recognises stale locks by age only; a crashed writer
 * would block others for its whole stale period. This is ~150 lines with
 * no dependency:
 *  - acquire: write the owner JSON to a unique file, then link(2) it to
 *    `<target>.lock` (atomic, fails with EEXIST when held; the lock file is
 *    never seen half-written);
 *  - stale: same host and the owner pid is gone (or is another process
 *    reusing the pid: its /proc start time differs); another host and the
 *    lock's mtime, refreshed by the owner every `staleMs / 4`, is older than
 *    `staleMs`. A stale lock is broken under a short-lived `<lock>.break`
 *    lock after re-reading it, so two waiters never both break and re-take;
 *  - timeout: E_STORE_LOCKED naming the owner and how to clear it.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { HetmmError } from '../errors.js';

export interface LockOptions {
  /** give up waiting after this long (ms); default 120000 */
  readonly timeoutMs?: number;
  /** a lock of another host not refreshed for this long is stale (ms); default 30000 */
  readonly staleMs?: number;
  /** what the owner is doing, shown to waiters ("hetmm add", ...) */
  readonly purpose?: string;
}

export interface LockOwner {
  readonly pid: number;
  readonly host: string;
  /** Linux: the process start time in clock ticks (field 22 of /proc/PID/stat); guards against pid reuse */
  readonly startTicks?: number;
  readonly since: string;
  readonly purpose: string;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_STALE_MS = 30_000;
/** A break lock older than this belongs to a breaker that died in its few-millisecond window. */
const BREAK_STALE_MS = 10_000;

function startTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the parenthesised command name (which may contain spaces).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

/** Whether process `pid` on this host is alive (and, when known, is the same process as recorded). */
export function processAlive(pid: number, ticks?: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (ticks === undefined) return true;
  const now = startTicks(pid);
  return now === undefined || now === ticks;
}

function describeOwner(owner: LockOwner | undefined, lockPath: string): string {
  if (owner === undefined) return `an unknown process (unreadable ${lockPath})`;
  return `pid ${owner.pid} on host ${owner.host} (${owner.purpose}) since ${owner.since}`;
}

async function readOwner(lockPath: string): Promise<{ owner?: LockOwner; text: string; mtimeMs: number } | undefined> {
  try {
    const [text, info] = await Promise.all([readFile(lockPath, 'utf8'), stat(lockPath)]);
    let owner: LockOwner | undefined;
    try {
      const parsed = JSON.parse(text) as LockOwner;
      if (typeof parsed.pid === 'number' && typeof parsed.host === 'string') owner = parsed;
    } catch {
      owner = undefined;
    }
    return { owner, text, mtimeMs: info.mtimeMs };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

function isStale(found: { owner?: LockOwner; mtimeMs: number }, staleMs: number): boolean {
  const { owner } = found;
  if (owner !== undefined && owner.host === os.hostname()) return !processAlive(owner.pid, owner.startTicks);
  return Date.now() - found.mtimeMs > staleMs;
}

/** Whether the lock file at `lockPath` exists and belongs to a dead process (or, another host's, is old). */
export async function isStaleLockFile(lockPath: string, staleMs = BREAK_STALE_MS): Promise<boolean> {
  const found = await readOwner(lockPath).catch(() => undefined);
  return found !== undefined && isStale(found, staleMs);
}

/** Creates `lockPath` holding `content` atomically; false if it exists. */
async function tryCreate(lockPath: string, content: string): Promise<boolean> {
  const candidate = `${lockPath}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(candidate, content, { flag: 'wx' });
  try {
    await link(candidate, lockPath);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    await rm(candidate, { force: true });
  }
}

/**
 * Removes `lockPath` if it still holds exactly `text` (the stale owner we
 * judged), under the break lock `<lock>.break` (itself recovered when its
 * owner died). Returns whether the caller should retry at once.
 */
async function breakStale(lockPath: string, text: string, staleMs: number, me: string): Promise<boolean> {
  const breakPath = `${lockPath}.break`;
  if (!(await tryCreate(breakPath, me))) {
    const breaker = await readOwner(breakPath);
    if (breaker === undefined) return true;
    if (isStale(breaker, Math.min(staleMs, BREAK_STALE_MS))) {
      await rm(breakPath, { force: true });
      return true;
    }
    return false;
  }
  try {
    const again = await readOwner(lockPath);
    if (again === undefined) return true;
    if (again.text === text && isStale(again, staleMs)) {
      await rm(lockPath, { force: true });
      return true;
    }
    return false;
  } finally {
    await rm(breakPath, { force: true });
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `fn` holding the writer lock of `target` (an absolute path; the lock
 * is `<target>.lock`). Waits up to `timeoutMs`, recovering stale locks.
 */
export async function withFileLock<T>(target: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const staleMs = options.staleMs ?? DEFAULT_STALE_MS;
  const lockPath = `${target}.lock`;
  const me: LockOwner = {
    pid: process.pid,
    host: os.hostname(),
    ...(startTicks(process.pid) === undefined ? {} : { startTicks: startTicks(process.pid) }),
    since: new Date().toISOString(),
    purpose: options.purpose ?? 'hetmm store write',
  };
  const content = JSON.stringify(me);
  const deadline = Date.now() + timeoutMs;
  let wait = 5;
  for (;;) {
    let created: boolean;
    try {
      created = await tryCreate(lockPath, content);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      throw new HetmmError('E_STORE_WRITE', `cannot create the lock file '${lockPath}': ${code}`, { cause: e });
    }
    if (created) break;
    const found = await readOwner(lockPath);
    if (found === undefined) continue; // released just now
    if (isStale(found, staleMs) && (await breakStale(lockPath, found.text, staleMs, content))) continue;
    if (Date.now() >= deadline) {
      throw new HetmmError(
        'E_STORE_LOCKED',
        `timed out after ${(timeoutMs / 1000).toFixed(1)} s waiting for the write lock of '${target}', held by ${describeOwner(found.owner, lockPath)}; ` +
          `if that process no longer runs, delete '${lockPath}'`,
      );
    }
    await sleep(Math.min(wait, Math.max(1, deadline - Date.now())));
    wait = Math.min(200, wait * 2);
  }
  // Keep the lock's mtime fresh so another host does not take it for stale during a long write.
  const heartbeat = setInterval(() => {
    const t = new Date();
    utimes(lockPath, t, t).catch(() => undefined);
  }, Math.max(50, staleMs / 4));
  heartbeat.unref();
  try {
    return await fn();
  } finally {
    clearInterval(heartbeat);
    // Only remove the lock if it is still ours (it is, unless someone deleted it by hand).
    const still = await readOwner(lockPath).catch(() => undefined);
    if (still?.text === content) await rm(lockPath, { force: true });
  }
}
