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
