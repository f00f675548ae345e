/**
 * Named tokens (issue 21: the audit names which token changed what, never
 * the token): `--token-file` lines `name:token`, the old one-line file still
 * meaning one token, and the name of the token a request sent.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { checkNamedBearer, resolveNamedTokens, resolveToken } from '../src/server/auth.js';
import { tempDir } from './helpers/io-paths.js';

const A = 'a-token-0123456789abcdef';
const B = 'b-token-0123456789abcdef';

function file(text: string): string {
  const f = path.join(tempDir('tokens'), 'tokens');
  writeFileSync(f, text);
  return f;
}

test('token file: name:token lines, comments, the request names its token', async () => {
  const tokens = await resolveNamedTokens(file(`# operators\nalice:${A}\n\nbob:${B}\n`));
  assert.deepEqual([...tokens.keys()], ['alice', 'bob']);
  assert.equal(checkNamedBearer(tokens, `Bearer ${B}`), 'bob');
  assert.equal(checkNamedBearer(tokens, `Bearer ${A}`), 'alice');
  assert.throws(() => checkNamedBearer(tokens, 'Bearer wrong-token-0123456789'), { code: 'E_UNAUTHORIZED' });
  assert.throws(() => checkNamedBearer(tokens, undefined), { code: 'E_UNAUTHORIZED' });
  assert.throws(() => checkNamedBearer(new Map(), `Bearer ${A}`), { code: 'E_FORBIDDEN' });
});

test('token file: the old format (one bare line) is one token named default, as before', async () => {
  const f = file(`${A}\n`);
  assert.equal(await resolveToken(f), A);
  const tokens = await resolveNamedTokens(f);
  assert.deepEqual([...tokens], [['default', A]]);
  assert.equal(checkNamedBearer(tokens, `Bearer ${A}`), 'default');
  assert.deepEqual([...(await resolveNamedTokens(undefined, { HETMM_TOKEN: B }))], [['default', B]]);
  assert.equal((await resolveNamedTokens(undefined, {})).size, 0);
});

test('token file: short tokens, a name twice, one token under two names are refused', async () => {
  await assert.rejects(resolveNamedTokens(file('alice:short\n')), { code: 'E_ARGUMENT', message: /line 1: the token is too short/ });
  await assert.rejects(resolveNamedTokens(file(`alice:${A}\nalice:${B}\n`)), { code: 'E_ARGUMENT', message: /given twice/ });
  await assert.rejects(resolveNamedTokens(file(`alice:${A}\nbob:${A}\n`)), { code: 'E_ARGUMENT', message: /two names/ });
  await assert.rejects(resolveNamedTokens('/nonexistent/tokens'), { code: 'E_ARGUMENT' });
});
