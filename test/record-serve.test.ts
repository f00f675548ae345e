/**
 * `hetmm serve` and the inspection record: with --data-dir the SQLite record
 * is on by default and its routes answer; --history off turns it off; bad
 * --history values and retention flags are usage errors.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/io-paths.js';
import { spawnServe, type ErrorJson } from './helpers/server.js';

/** fetch, retrying the 503s a loaded machine gets from the event-loop guard (as a client honouring Retry-After would) */
async function fetchRetrying(url: string): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(url);
    if (res.status !== 503 || attempt >= 20) return res;
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function stop(child: import('node:child_process').ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

test('serve --data-dir: the record is on by default (DATA-DIR/inspections), its routes answer', async () => {
  const dataDir = tempDir('record-serve');
  const serve = await spawnServe(['--data-dir', dataDir, '--history-max-age-days', '30']);
  try {
    assert.ok(existsSync(path.join(dataDir, 'inspections', 'record.sqlite')));
    const res = await fetchRetrying(`${serve.base}/v1/lines/bottle/inspections`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { line: 'bottle', items: [] });
    const bad = await fetchRetrying(`${serve.base}/v1/lines/bottle/inspections?verdict=maybe`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as ErrorJson).error.code, 'E_ARGUMENT');
  } finally {
    await stop(serve.child);
  }
});

test('serve --history off: no record file, the routes say so', async () => {
  const dataDir = tempDir('record-serve-off');
  const serve = await spawnServe(['--data-dir', dataDir, '--history', 'off']);
  try {
    assert.ok(!existsSync(path.join(dataDir, 'inspections')));
    const res = await fetchRetrying(`${serve.base}/v1/inspections/abc`);
    assert.equal(res.status, 404);
    assert.match(((await res.json()) as ErrorJson).error.message, /--history off/);
  } finally {
    await stop(serve.child);
  }
});

test('serve: a bad --history or retention flag is a usage error', async () => {
  const dataDir = tempDir('record-serve-bad');
  const bogus = await runCli('serve', '--data-dir', dataDir, '--port', '0', '--history', 'mysql://x');
  assert.equal(bogus.code, 2, bogus.stderr);
  assert.match(bogus.stderr, /--history sqlite, off or a postgres/);
  const negative = await runCli('serve', '--data-dir', dataDir, '--port', '0', '--history-max-age-days', '-1');
  assert.equal(negative.code, 2, negative.stderr);
  assert.match(negative.stderr, /history-max-age-days/);
});
