/**
 * Bearer tokens for mutating endpoints. Compared in constant time (both
 * sides hashed to 32 bytes first, so neither the content nor the length of
 * the configured token leaks through timing). No token configured: mutating
 * endpoints are disabled, never open.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { HetmmError } from '../errors.js';
import { setting, type Environment } from '../config.js';
import { ServerError } from './errors.js';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Throws E_FORBIDDEN (no token configured) or E_UNAUTHORIZED (missing or wrong token). */
export function checkBearer(configured: string | undefined, authorization: string | undefined): void {
  if (configured === undefined) {
    throw new ServerError(
      'E_FORBIDDEN',
      'changes are disabled on this server: it was started without a token (hetmm serve --token-file FILE, or HETMM_TOKEN)',
    );
  }
  const match = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
  if (match === null) throw new ServerError('E_UNAUTHORIZED', 'this call changes a line: send the header "Authorization: Bearer <token>"');
  if (!timingSafeEqual(digest(match[1]!), digest(configured))) throw new ServerError('E_UNAUTHORIZED', 'wrong token');
}

/** Loopback names and addresses: always accepted as Host (the server is reached on this machine). */
const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '::1'];

/** The Host values a server accepts: loopback, the bound host (unless a wildcard address) and the operator's list. */
export function hostAllowList(boundHost: string | undefined, allowed: readonly string[] = []): ReadonlySet<string> {
  const hosts = new Set(LOOPBACK_HOSTS);
  if (boundHost !== undefined && boundHost !== '0.0.0.0' && boundHost !== '::') hosts.add(boundHost.toLowerCase().replace(/^\[(.*)\]$/, '$1'));
  for (const h of allowed) {
    if (typeof h !== 'string' || !/^(\*|[A-Za-z0-9.:_-]{1,253}|\[[0-9A-Fa-f:.]+\])$/.test(h)) {
      throw new HetmmError('E_ARGUMENT', `Expected --allowed-hosts as host names or addresses (no ports), or '*', but received ${JSON.stringify(String(h).slice(0, 80))}`);
    }
    hosts.add(h.toLowerCase().replace(/^\[(.*)\]$/, '$1'));
  }
  return hosts;
}

/**
 * Throws E_FORBIDDEN unless the Host header names this server: a loopback
 * name, the bound host, one the operator allowed, or the very address the
 * connection arrived at (a client using the server's IP). A page of another
 * site that rebinds its name to this address sends that name, and is refused.
 */
export function checkHost(allowed: ReadonlySet<string>, hostHeader: string | undefined, localAddress: string | undefined): void {
  if (allowed.has('*') || hostHeader === undefined) return;
  const host = hostHeader.toLowerCase().replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  if (allowed.has(host)) return;
  const local = localAddress?.replace(/^::ffff:/, '');
  if (local !== undefined && (host === local || host === localAddress)) return;
  throw new ServerError(
    'E_FORBIDDEN',
    `Host ${JSON.stringify(hostHeader.slice(0, 100))} is not this server's name: add it with --allowed-hosts (a guard against DNS rebinding)`,
  );
}

/** The token from --token-file (first line, trimmed) or else HETMM_TOKEN; undefined when neither is set. */
export async function resolveToken(tokenFile: string | undefined, env?: Environment): Promise<string | undefined> {
  let token: string | undefined;
  if (tokenFile !== undefined) {
    try {
      token = (await readFile(tokenFile, 'utf8')).split(/\r?\n/)[0]!.trim();
    } catch (e) {
      throw new HetmmError('E_ARGUMENT', `cannot read --token-file '${tokenFile}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
    }
  } else {
    token = setting('token', env)?.trim();
    if (token === '') token = undefined;
  }
  if (token !== undefined && token.length < 16) {
    throw new HetmmError('E_ARGUMENT', 'the token is too short: use at least 16 characters (e.g. openssl rand -hex 24)');
  }
  return token;
}
