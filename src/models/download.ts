/**
 * Downloading a model into the cache: from HETMM_MODEL_HOST (HOST/FILE),
 * verified against the shipped manifest's size and sha256 while streaming,
 * written to a unique temporary file beside the target and renamed into
 * place, so a reader sees either no file or the whole verified one, and two
 * processes pulling at once both end with the same good file. In one process,
 * concurrent pulls of one model share one download.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setting, type Environment } from '../config.js';
import { HetmmError } from '../errors.js';
import type { ModelEntry } from './manifest.js';

export interface PullOptions {
  /** base URL (default: HETMM_MODEL_HOST) */
  readonly host?: string;
  /** the file to write (the model's cache path) */
  readonly target: string;
  readonly env?: Environment;
  /** bytes received so far and the expected total */
  readonly onProgress?: (received: number, total: number) => void;
  /** idle time before giving up, ms (default 30 000) */
  readonly timeoutMs?: number;
}

const inFlight = new Map<string, Promise<string>>();

/** The URL a model is downloaded from, or undefined when no host is configured. */
export function modelUrl(entry: ModelEntry, host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined;
  return `${host.replace(/\/+$/, '')}/${encodeURIComponent(entry.file)}`;
}

/** Downloads `entry` to options.target (see the module comment); resolves to the target path. */
export function pullModel(entry: ModelEntry, options: PullOptions): Promise<string> {
  const key = path.resolve(options.target);
  let running = inFlight.get(key);
  if (running === undefined) {
    running = download(entry, options).finally(() => inFlight.delete(key));
    inFlight.set(key, running);
  }
  return running;
}

function unreachable(url: string, reason: string, entry: ModelEntry, target: string): HetmmError {
  return new HetmmError(
    'E_MODEL_NOT_FOUND',
    `could not reach ${url} (${reason}); copy ${entry.file} (sha256 ${entry.sha256}) to ${target} or set HETMM_MODEL=PATH`,
  );
}

function get(url: string, timeoutMs: number): Promise<http.IncomingMessage> {
  const client = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const request = client.get(url, { timeout: timeoutMs }, resolve);
    request.on('timeout', () => request.destroy(new Error(`no response for ${timeoutMs} ms`)));
    request.on('error', reject);
  });
}

async function download(entry: ModelEntry, options: PullOptions): Promise<string> {
  const host = options.host ?? setting('modelHost', options.env);
  const url = modelUrl(entry, host);
  const target = path.resolve(options.target);
  if (url === undefined) {
    throw new HetmmError(
      'E_MODEL_NOT_FOUND',
      `no model host is configured (HETMM_MODEL_HOST); copy ${entry.file} (sha256 ${entry.sha256}) to ${target} or set HETMM_MODEL=PATH`,
    );
  }
  if (!/^https?:\/\//.test(url)) throw new HetmmError('E_ARGUMENT', `Expected an http:// or https:// URL for HETMM_MODEL_HOST but received "${host}"`);
  let response: http.IncomingMessage;
  try {
    response = await get(url, options.timeoutMs ?? 30_000);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw unreachable(url, err.code ?? err.message, entry, target);
  }
  if (response.statusCode !== 200) {
    response.resume();
    throw unreachable(url, `HTTP ${response.statusCode}`, entry, target);
  }
  await mkdir(path.dirname(target), { recursive: true });
  const temp = `${target}.${process.pid}.${randomBytes(6).toString('hex')}.part`;
  const hash = createHash('sha256');
  let received = 0;
  const onProgress = options.onProgress ?? ttyProgress(entry.file);
  const verify = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length;
      if (received > entry.size) {
        done(new HetmmError('E_MODEL_INVALID', `${url} sent more than the ${entry.size} bytes of ${entry.file}; nothing was written to the cache`));
        return;
      }
      hash.update(chunk);
      onProgress?.(received, entry.size);
      done(null, chunk);
    },
  });
  try {
    response.setTimeout(options.timeoutMs ?? 30_000, () => response.destroy(new Error('the transfer stalled')));
    await pipeline(response, verify, createWriteStream(temp, { flags: 'wx' }));
    if (received !== entry.size) {
      throw unreachable(url, `the transfer ended after ${received} of ${entry.size} bytes`, entry, target);
    }
    const digest = hash.digest('hex');
    if (digest !== entry.sha256) {
      throw new HetmmError(
        'E_MODEL_INVALID',
        `${url} has sha256 ${digest}, but hetmm's manifest expects ${entry.sha256} for ${entry.file}; nothing was written to the cache`,
      );
    }
    await rename(temp, target);
    onProgress?.(-1, entry.size);
    return target;
  } catch (e) {
    await rm(temp, { force: true });
    if (e instanceof HetmmError) throw e;
    const reason = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
    if (received < entry.size) throw unreachable(url, `the transfer ended after ${received} of ${entry.size} bytes: ${reason}`, entry, target);
    throw new HetmmError('E_MODEL_NOT_FOUND', `cannot write ${target}: ${reason}`, { cause: e });
  }
}

/** A progress line on stderr when it is a terminal (received -1: done). */
function ttyProgress(file: string): PullOptions['onProgress'] {
  if (process.stderr.isTTY !== true) return undefined;
  let last = 0;
  return (received, total) => {
    const now = Date.now();
    if (received >= 0 && received < total && now - last < 100) return;
    last = now;
    if (received < 0) {
      process.stderr.write('\n');
      return;
    }
    const width = 28;
    const filled = Math.round((received / total) * width);
    const mb = (n: number): string => (n / 1e6).toFixed(1);
    process.stderr.write(`\rdownloading ${file} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${mb(received)}/${mb(total)} MB\x1b[K`);
  };
}

/** sha256 of a file, streamed. */
export async function sha256OfFile(file: string): Promise<string> {
  const { createReadStream } = await import('node:fs');
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Whether `file` is the manifest's model: size, then sha256. */
export async function verifyModelFile(entry: ModelEntry, file: string): Promise<{ ok: boolean; reason?: string }> {
  const size = (await stat(file)).size;
  if (size !== entry.size) return { ok: false, reason: `${size} bytes, expected ${entry.size}` };
  const digest = await sha256OfFile(file);
  if (digest !== entry.sha256) return { ok: false, reason: `sha256 ${digest}, expected ${entry.sha256}` };
  return { ok: true };
}
