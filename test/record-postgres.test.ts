/**
 * The shared inspection record of queue mode on a real PostgreSQL (Debian's
 * postgresql, started by the test on a loopback port, stopped afterwards):
 * the same behaviour suite as SQLite, the crash test, and two API nodes on
 * one record.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openPostgresRecord, openRecord } from '../src/record/index.js';
import { tempDir } from './helpers/io-paths.js';
import { postgresAvailable, TestPostgres } from './helpers/postgres-server.js';
import { addUntilKilled, assertAllThere } from './helpers/record-crash.js';
import { recordSuite } from './helpers/record-suite.js';

const skip = postgresAvailable ? false : 'PostgreSQL binaries not installed (apt-get install postgresql)';
let server: TestPostgres | undefined;
let databases = 0;

before(async () => {
  if (!skip) server = await TestPostgres.start();
});
after(async () => {
  await server?.stop();
});

async function freshDatabase(): Promise<string> {
  return server!.createDatabase(`record_${++databases}`);
}

if (skip) test('postgres record', { skip }, () => undefined);
else {
  recordSuite('postgres', async (retention) => {
    const filesDir = tempDir('record-pg-files');
    const record = await openPostgresRecord(await freshDatabase(), { filesDir, retentionIntervalMs: 0, ...(retention === undefined ? {} : { retention }) });
    return { record, filesRoot: filesDir };
  });

  test('postgres: kill -9 of an API node while inserting keeps every acknowledged inspection and its files', async () => {
    const url = await freshDatabase();
    const filesDir = tempDir('record-pg-crash');
    const acknowledged: string[] = [];
    for (let cycle = 0; cycle < 3; cycle++) acknowledged.push(...(await addUntilKilled([url, filesDir], 100 * (cycle + 1))));
    const record = await openPostgresRecord(url, { filesDir, retentionIntervalMs: 0 });
    try {
      assert.ok(acknowledged.length >= 600);
      await assertAllThere(record, acknowledged);
    } finally {
      await record.close();
    }
  });

  test('postgres: two API nodes write one record; the password never appears in its location', async () => {
    const url = await freshDatabase();
    const filesDir = tempDir('record-pg-two');
    const [a, b] = await Promise.all([openRecord({ history: url, filesDir }), openRecord({ history: url, filesDir })]);
    try {
      await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a! : b!).add({ line: 'bottle', score: i })));
      assert.equal((await a!.list('bottle', { limit: 100 })).items.length, 20);
      assert.equal((await b!.histogram('bottle')).n, 20);
      const [x, y] = await Promise.all([a!.enforceRetention(), b!.enforceRetention()]);
      assert.ok(x !== undefined && y !== undefined);
    } finally {
      await a!.close();
      await b!.close();
    }
    const withPassword = url.replace('postgres@', 'postgres:s3cret@');
    const r = await openPostgresRecord(withPassword, { filesDir, retentionIntervalMs: 0 });
    try {
      assert.doesNotMatch(r.location, /s3cret/);
    } finally {
      await r.close();
    }
    await assert.rejects(openPostgresRecord(`postgres://postgres@127.0.0.1:1/none`, { filesDir }), { code: 'E_UNAVAILABLE' });
  });
}
