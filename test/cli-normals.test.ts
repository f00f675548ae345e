/**
 * `hetmm normals list|remove` (issue 21, item 1): the normals of a store
 * with their ids, and their removal by id with the exit codes of `hetmm add`
 * (a bad id: exit 2, nothing written). `hetmm info` does not count removed
 * normals. Toy stores: these commands need no backbone.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { TemplateStore } from '../src/store/index.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/io-paths.js';
import { checkStoreContents, createWorkerStore, featuresOf } from './helpers/store-fixtures.js';

const tmp = tempDir('cli-normals');

test('normals list shows every normal with its id; remove takes ids, is durable, and refuses bad ids writing nothing', async () => {
  const file = path.join(tmp, 'line.hetmm');
  const store = await createWorkerStore(file, ['a.png', 'b.png']);
  await store.appendToFile(file, [{ features: featuresOf('c.png'), file: 'c.png', id: 'key:abc/0' }], { update: 'key:abc' });
  const list = await runCli('normals', 'list', '-t', file, '--json');
  assert.equal(list.code, 0, list.stderr);
  const rows = list.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; kind: string; file: string; update?: string });
  assert.deepEqual(rows.map((r) => [r.file, r.kind]), [['a.png', 'base'], ['b.png', 'base'], ['c.png', 'appended']]);
  assert.equal(rows[2]!.id, 'key:abc/0');
  const table = await runCli('normals', 'list', '-t', file);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^id\s+kind\s+added\s+update\s+file$/m);
  assert.match(table.stdout, /key:abc\/0\s+appended\s+\d{4}-\d\d-\d\dT\S+\s+key:abc\s+c\.png/);
  assert.match(table.stdout, /3 normals \(1 appended\)/);

  // a bad id among good ones: exit 2, nothing written
  const before = readFileSync(file);
  const bad = await runCli('normals', 'remove', '-t', file, 'key:abc/0', 'no-such-id');
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /no-such-id/);
  assert.ok(readFileSync(file).equals(before), 'the file is unchanged');
  assert.equal((await runCli('normals', 'remove', '-t', file)).code, 2);
  assert.equal((await runCli('normals', 'frobnicate', '-t', file)).code, 2);

  const removed = await runCli('normals', 'remove', '-t', file, 'key:abc/0', rows[0]!.id, '--json');
  assert.equal(removed.code, 0, removed.stderr);
  assert.deepEqual(JSON.parse(removed.stdout), { store: file, removed: ['key:abc/0', rows[0]!.id], alreadyRemoved: [], templates: 1 });
  const loaded = await TemplateStore.load(file);
  assert.deepEqual(loaded.files, ['b.png']);
  checkStoreContents(loaded);
  // again: a no-op that says so
  const again = await runCli('normals', 'remove', '-t', file, 'key:abc/0');
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /removed 0 \(1 removed before: key:abc\/0\), now 1 templates/);
  // info counts what is matched against, and says what was removed
  const info = await runCli('info', file, '--json');
  assert.equal(info.code, 0, info.stderr);
  const described = JSON.parse(info.stdout) as { count: number; files: string[]; removed: number };
  assert.deepEqual([described.count, described.files, described.removed], [1, ['b.png'], 2]);
  const listed = await runCli('normals', 'list', '-t', file);
  assert.match(listed.stdout, /1 normals \(0 appended\), 2 removed/);
});
