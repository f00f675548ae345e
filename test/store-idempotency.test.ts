/**
 * Idempotent hot updates in the store (issue 18, item 2): an appended image
 * carries an id, recorded in its append record with the update's id and the
 * writer's fencing token; a repeated id is not appended again (by another
 * store object, after a reload, after a compaction), and a writer whose
 * fencing token is older than one recorded writes nothing.
 */
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { indexStoreFile } from '../src/store/store-file.js';
import { TemplateStore } from '../src/store/index.js';
import { expectHetmm } from './helpers/errors.js';
import { tempDir } from './helpers/io-paths.js';
import { checkStoreContents, createWorkerStore, featuresOf } from './helpers/store-fixtures.js';

const tmp = tempDir('store-idem');
const item = (name: string, id?: string): { features: Float32Array[]; file: string; id?: string } => ({
  features: featuresOf(name),
  file: name,
  ...(id === undefined ? {} : { id }),
});

async function recordHeaders(file: string): Promise<Array<Record<string, unknown>>> {
  const handle = await open(file, 'r');
  try {
    return (await indexStoreFile(handle, file)).records.map((r) => r.header as unknown as Record<string, unknown>);
  } finally {
    await handle.close();
  }
}

test('a repeated image id is appended once, by any store object, and the record names the update and its ids', async () => {
  const file = path.join(tmp, 'repeat.hetmm');
  const a = await createWorkerStore(file, ['base']);
  const first = await a.appendToFile(file, [item('x', 'job:1/0'), item('y', 'job:1/1')], { update: 'job:1' });
  assert.deepEqual([first.appended, first.duplicates, first.count], [2, 0, 3]);
  // the same update again from this store, then from a store loaded before it was written
  const again = await a.appendToFile(file, [item('x', 'job:1/0'), item('y', 'job:1/1')], { update: 'job:1' });
  assert.deepEqual([again.appended, again.duplicates, again.count], [0, 2, 3]);
  const b = await TemplateStore.load(file);
  const stale = await TemplateStore.load(file);
  await b.appendToFile(file, [item('z', 'key:k/0')], { update: 'key:k' });
  const retried = await stale.appendToFile(file, [item('z', 'key:k/0'), item('w', 'key:k2/0')], { update: 'key:k2' });
  assert.deepEqual([retried.appended, retried.duplicates, retried.merged, retried.count], [1, 1, 1, 5]);
  // ids repeated within one call count once
  const within = await stale.appendToFile(file, [item('v', 'image:aa'), item('v', 'image:aa')]);
  assert.deepEqual([within.appended, within.duplicates], [1, 1]);
  const loaded = await TemplateStore.load(file);
  assert.deepEqual(loaded.files, ['base', 'x', 'y', 'z', 'w', 'v']);
  checkStoreContents(loaded);
  assert.ok(loaded.hasId('job:1/1') && loaded.hasId('image:aa') && !loaded.hasId('job:1'));
  const headers = await recordHeaders(file);
  assert.deepEqual(
    headers.map((h) => [h.update, h.ids]),
    [
      ['job:1', ['job:1/0', 'job:1/1']],
      ['key:k', ['key:k/0']],
      ['key:k2', ['key:k2/0']],
      [undefined, ['image:aa']],
    ],
  );
});

test('ids survive a full save (compaction), so a retry after it still changes nothing', async () => {
  const file = path.join(tmp, 'compact.hetmm');
  const a = await createWorkerStore(file, ['base']);
  await a.appendToFile(file, [item('x', 'u/0')], { update: 'u', fence: 7 });
  a.meta = { ...a.meta, threshold: 0.5 };
  await a.save(file); // compacts the record into the base section
  assert.equal((await recordHeaders(file)).length, 0);
  const b = await TemplateStore.load(file);
  assert.ok(b.hasId('u/0'));
  const r = await b.appendToFile(file, [item('x', 'u/0')], { update: 'u' });
  assert.deepEqual([r.appended, r.duplicates, r.count], [0, 1, 2]);
  // the fencing token survived the compaction too
  await assert.rejects(b.appendToFile(file, [item('y', 'v/0')], { fence: 6 }), expectHetmm('E_STORE_LOCKED', "fencing token 6 is older than the store's 7"));
});

test('a writer with an older fencing token than one recorded writes nothing (a worker that lost the cluster lock)', async () => {
  const file = path.join(tmp, 'fence.hetmm');
  const paused = await createWorkerStore(file, ['base']);
  const successor = await TemplateStore.load(file);
  await successor.appendToFile(file, [item('new', 'job:b/0')], { update: 'job:b', fence: 2 });
  // the paused writer held token 1 and resumes: refused under the file lock, memory and file unchanged
  await assert.rejects(paused.appendToFile(file, [item('late', 'job:a/0')], { update: 'job:a', fence: 1 }), expectHetmm('E_STORE_LOCKED', 'lost the cluster lock'));
  const loaded = await TemplateStore.load(file);
  assert.deepEqual(loaded.files, ['base', 'new']);
  assert.deepEqual(paused.files, ['base', 'new'], 'the refused writer merged the file, added nothing');
  // equal or newer tokens write; writes without a token (hetmm add) are not fenced
  await successor.appendToFile(file, [item('more', 'job:c/0')], { fence: 2 });
  await paused.appendToFile(file, [item('cli')]);
  assert.deepEqual((await TemplateStore.load(file)).files, ['base', 'new', 'more', 'cli']);
});

test('invalid ids are refused before anything is written', async () => {
  const file = path.join(tmp, 'bad-id.hetmm');
  const a = await createWorkerStore(file, ['base']);
  await assert.rejects(a.appendToFile(file, [item('x', '')]), expectHetmm('E_ARGUMENT', 'items[0].id'));
  await assert.rejects(a.appendToFile(file, [item('x', 'a'.repeat(201))]), expectHetmm('E_ARGUMENT', 'items[0].id'));
  await assert.rejects(a.appendToFile(file, [item('x')], { fence: -1 }), expectHetmm('E_ARGUMENT', 'fence'));
  assert.equal((await TemplateStore.load(file)).count, 1);
});

test("a store's chain (base checksum, a head after each record) is the same in every process that read the file, and differs for a diverged copy", async () => {
  const file = path.join(tmp, 'chain.hetmm');
  const copy = path.join(tmp, 'chain-copy.hetmm');
  const a = await createWorkerStore(file, ['base']);
  const saved = a.chain()!;
  assert.equal(saved.heads.length, 1);
  await a.appendToFile(file, [item('x')]);
  const b = await TemplateStore.load(file);
  await b.appendToFile(file, [item('y')]);
  await a.refresh(file); // merges b's record
  const loaded = await TemplateStore.load(file);
  for (const s of [a, b]) assert.deepEqual(s.chain(), loaded.chain());
  assert.deepEqual(loaded.chain()!.heads.map(([n]) => n), [1, 2, 3]);
  assert.equal(loaded.chain()!.base, saved.base);
  assert.equal(loaded.chain()!.lineage, a.lineage);
  // a copy of the file that then took another append: same lineage and base, another head at 3
  const { copyFile } = await import('node:fs/promises');
  await copyFile(file, copy);
  const diverged = await TemplateStore.load(copy);
  assert.deepEqual(diverged.chain(), loaded.chain());
  const c = await TemplateStore.load(copy);
  await c.appendToFile(copy, [item('z')]);
  await loaded.appendToFile(file, [item('w')]);
  assert.deepEqual(c.chain()!.heads.slice(0, 3), loaded.chain()!.heads.slice(0, 3));
  assert.notEqual(c.chain()!.heads[3]![1], loaded.chain()!.heads[3]![1], 'same count, different record: another head');
});
