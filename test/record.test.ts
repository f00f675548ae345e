/**
 * The embedded inspection record (issue 21, item 2): SQLite through
 * node:sqlite in a temp directory, the shared behaviour suite, the crash
 * test (kill -9 while inserting), and durability settings.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { openRecord, openSqliteRecord } from '../src/record/index.js';
import { tempDir } from './helpers/io-paths.js';
import { addUntilKilled, assertAllThere } from './helpers/record-crash.js';
import { recordSuite } from './helpers/record-suite.js';

recordSuite('sqlite', async (retention) => {
  const dir = tempDir('record');
  return { record: await openSqliteRecord(dir, { retentionIntervalMs: 0, ...(retention === undefined ? {} : { retention }) }), filesRoot: dir };
});

for (const synchronous of ['full', 'normal'] as const) {
  test(`sqlite (synchronous=${synchronous}): kill -9 while inserting keeps every acknowledged inspection and its files`, async () => {
    const dir = tempDir('record-crash');
    const acknowledged: string[] = [];
    // full fsyncs three times per insert (slow on a loaded disk): fewer rows, the same three crashes
    const step = synchronous === 'full' ? 50 : 150;
    for (let cycle = 0; cycle < 3; cycle++) acknowledged.push(...(await addUntilKilled([dir, '', synchronous], step * (cycle + 1))));
    const record = await openSqliteRecord(dir, { retentionIntervalMs: 0 });
    try {
      assert.ok(acknowledged.length >= step * 6);
      await assertAllThere(record, acknowledged);
      // and the record is still consistent and writable after three crashes
      assert.match((await record.add({ line: 'bottle', score: 1 })), /^[A-Za-z0-9_-]+$/);
    } finally {
      await record.close();
    }
  });
}

test('sqlite: the record lives in <data-dir>/inspections, WAL mode, images in shards; --history off opens nothing', async () => {
  const dataDir = tempDir('record-open');
  const record = (await openRecord({ dataDir, history: 'sqlite' }))!;
  try {
    assert.equal(record.location, `sqlite:${path.join(dataDir, 'inspections', 'record.sqlite')}`);
    const id = await record.add({ line: 'bottle', score: 1, image: Buffer.from([0xff, 0xd8, 0xff, 0, 0]) });
    const [file, ...others] = readdirSync(path.join(dataDir, 'inspections', 'files', id.slice(0, 2)));
    assert.equal(others.length, 0);
    assert.match(file!, new RegExp(`^${id}-[0-9a-f]{6}\\.image\\.jpg$`));
    assert.ok(readdirSync(path.join(dataDir, 'inspections')).includes('record.sqlite-wal'), 'WAL journal');
  } finally {
    await record.close();
  }
  assert.equal(await openRecord({ dataDir, history: 'off' }), undefined);
  await assert.rejects(openRecord({ history: 'sqlite' }), { code: 'E_ARGUMENT' });
  await assert.rejects(openRecord({ dataDir, history: 'mysql://x' }), { code: 'E_ARGUMENT' });
  await assert.rejects(openRecord({ history: 'postgres://127.0.0.1:1/x' }), { code: 'E_ARGUMENT' }, 'postgres needs a files directory');
});

test('sqlite: opening a record prints no warning (Node 22 ExperimentalWarning is dropped, nothing else)', () => {
  const script = `import('${path.resolve('dist/src/record/index.js').replace(/\\/g, '/')}').then(async (m) => { const r = await m.openSqliteRecord(process.argv[1]); await r.close(); process.emitWarning('other', 'ExperimentalWarning'); })`;
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script, tempDir('record-warn')], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  assert.doesNotMatch(out.stderr, /SQLite/);
  assert.match(out.stderr, /ExperimentalWarning: other/, 'other warnings still print');
});
