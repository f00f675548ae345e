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

test('operator actions over HTTP are audited under the name of the token that made them', async () => {
  const { openRecord } = await import('../src/record/index.js');
  const { addNormal, bottleGood, fitBottleStore, readImage, startServer } = await import('./helpers/server.js');
  const dir = tempDir('audit');
  await fitBottleStore(path.join(dir, 'bottle.hetmm'), 2);
  const record = (await openRecord({ dataDir: dir }))!;
  const tokens = await resolveNamedTokens(file(`alice:${A}\nbob:${B}\n`));
  const server = await startServer({ dataDir: dir, tokens, record });
  try {
    const put = await fetch(`${server.base}/v1/lines/bottle/threshold`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${A}` },
      body: JSON.stringify({ value: 0.5 }),
    });
    assert.equal(put.status, 200, await put.clone().text());
    const add = await addNormal(server.base, 'bottle', readImage(bottleGood[0]!), 'extra.png', { authorization: `Bearer ${B}` });
    assert.equal(add.status, 200, await add.clone().text());
    const { ids } = (await add.clone().json()) as { ids: string[] };
    const undo = await fetch(`${server.base}/v1/lines/bottle/normals/${encodeURIComponent(ids[0]!)}`, { method: 'DELETE', headers: { authorization: `Bearer ${A}` } });
    assert.equal(undo.status, 200, await undo.clone().text());
    const wrong = await addNormal(server.base, 'bottle', readImage(bottleGood[0]!), 'x.png', { authorization: 'Bearer not-a-token-0123456789' });
    assert.equal(wrong.status, 401);
    const audit = await record.audit('bottle');
    const rows = audit.items.map((a) => [a.action, a.tokenName]).reverse();
    assert.deepEqual(rows, [['threshold', 'alice'], ['mark-normal', 'bob'], ['remove-normal', 'alice']]);
    const removal = audit.items.find((a) => a.action === 'remove-normal')!;
    assert.deepEqual((removal.before as { ids: string[] }).ids, ids);
    assert.deepEqual((audit.items.find((a) => a.action === 'mark-normal')!.after as { ids: string[] }).ids, ids);
    const threshold = audit.items.find((a) => a.action === 'threshold')!;
    assert.equal((threshold.after as { threshold: number }).threshold, 0.5);
    assert.equal(typeof (threshold.before as { threshold: number }).threshold, 'number');
    assert.ok(!JSON.stringify(audit).includes(A) && !JSON.stringify(audit).includes(B), 'no token in the audit');
  } finally {
    await server.close();
    await record.close();
  }
});
