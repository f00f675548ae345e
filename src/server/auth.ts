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

// ---- named tokens (issue 21: the audit names who changed what, never the token) ----------------------

/** Tokens by name; a name is what the audit records. */
export type NamedTokens = ReadonlyMap<string, string>;

/** The name a token file's bare (unnamed) token, and HETMM_TOKEN, are audited under. */
export const DEFAULT_TOKEN_NAME = 'default';

/**
 * The tokens of a --token-file: one per line, `name:token` (name 1-64 of
 * [A-Za-z0-9_.-]), or a bare token named 'default'; blank lines and lines
 * starting with # are skipped. A file of one bare line (the old format)
 * means what it meant before. No token configured: an empty map.
 */
export async function resolveNamedTokens(tokenFile: string | undefined, env?: Environment): Promise<NamedTokens> {
  const tokens = new Map<string, string>();
  if (tokenFile === undefined) {
    const token = await resolveToken(undefined, env);
    if (token !== undefined) tokens.set(DEFAULT_TOKEN_NAME, token);
    return tokens;
  }
  let text: string;
  try {
    text = await readFile(tokenFile, 'utf8');
  } catch (e) {
    throw new HetmmError('E_ARGUMENT', `cannot read --token-file '${tokenFile}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
  const seen = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const named = /^([A-Za-z0-9_.-]{1,64}):(\S+)$/.exec(line);
    const [name, token] = named === null ? [DEFAULT_TOKEN_NAME, line] : [named[1]!, named[2]!];
    const where = `--token-file '${tokenFile}' line ${i + 1}`;
    if (token.length < 16) throw new HetmmError('E_ARGUMENT', `${where}: the token is too short: use at least 16 characters (e.g. openssl rand -hex 24)`);
    if (tokens.has(name)) throw new HetmmError('E_ARGUMENT', `${where}: the name '${name}' is given twice`);
    if (seen.has(token)) throw new HetmmError('E_ARGUMENT', `${where}: the same token under two names (the audit could not tell them apart)`);
    tokens.set(name, token);
    seen.add(token);
  });
  return tokens;
}

/**
 * Like checkBearer, over named tokens: returns the name of the token sent
 * (for the audit). Every configured token is compared (constant time each),
 * so the time taken does not tell which one nearly matched.
 */
export function checkNamedBearer(tokens: NamedTokens, authorization: string | undefined): string {
  if (tokens.size === 0) checkBearer(undefined, authorization);
  const match = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
  if (match === null) {
    checkBearer([...tokens.values()][0], authorization); // throws: no Bearer header
    throw new ServerError('E_UNAUTHORIZED', 'wrong token');
  }
  const sent = digest(match[1]!);
  let found: string | undefined;
  for (const [name, token] of tokens) if (timingSafeEqual(sent, digest(token)) && found === undefined) found = name;
  if (found === undefined) throw new ServerError('E_UNAUTHORIZED', 'wrong token');
  return found;
}
