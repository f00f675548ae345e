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
import { bottleBroken, fitBottleStore, postImage, readImage, spawnServe, type ErrorJson } from './helpers/server.js';

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

test('a camera\'s prediction (no maps asked) is recorded with its image and heat map before the answer, and survives kill -9 and a restart', async () => {
  const dataDir = tempDir('record-serve-camera');
  await fitBottleStore(path.join(dataDir, 'bottle.hetmm'), 2);
  const first = await spawnServe(['--data-dir', dataDir]);
  let id: string;
  let score: number;
  try {
    let res = await postImage(first.base, 'bottle', readImage(bottleBroken[0]!));
    for (let i = 0; i < 20 && res.status === 503; i++) {
      await new Promise((r) => setTimeout(r, 500));
      res = await postImage(first.base, 'bottle', readImage(bottleBroken[0]!));
    }
    assert.equal(res.status, 200, await res.clone().text());
    ({ id, score } = (await res.json()) as { id: string; score: number });
    // the map was rendered although the camera did not ask for one (observation 3)
    const map = await fetchRetrying(`${first.base}/v1/predictions/${id}/heatmap.png`);
    assert.equal(map.status, 200);
  } finally {
    const exited = new Promise((r) => first.child.once('exit', r));
    first.child.kill('SIGKILL');
    await exited;
  }
  const second = await spawnServe(['--data-dir', dataDir]);
  try {
    const res = await fetchRetrying(`${second.base}/v1/inspections/${id}`);
    assert.equal(res.status, 200, await res.clone().text());
    const inspection = (await res.json()) as { id: string; line: string; score: number; verdict?: string };
    assert.deepEqual([inspection.id, inspection.line, inspection.score], [id, 'bottle', score]);
    assert.equal(inspection.verdict, 'defect');
    const map = await fetchRetrying(`${second.base}/v1/inspections/${id}/heatmap.png`);
    assert.equal(map.status, 200);
    assert.equal(map.headers.get('content-type'), 'image/png');
    const image = await fetchRetrying(`${second.base}/v1/inspections/${id}/image`);
    assert.deepEqual(Buffer.from(await image.arrayBuffer()), readImage(bottleBroken[0]!));
    const list = (await (await fetchRetrying(`${second.base}/v1/lines/bottle/inspections`)).json()) as { items: Array<{ id: string }> };
    assert.deepEqual(list.items.map((i) => i.id), [id]);
  } finally {
    await stop(second.child);
  }
});
