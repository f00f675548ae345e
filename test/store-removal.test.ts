/**
 * Undoable hot updates in the store (issue 21, item 1): every normal has a
 * stable id, and a removal record (format version 4) removes normals by id,
 * durably, seen by every other store object, surviving compaction; older
 * readers refuse a file with removals rather than ignore them.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { storeVersion } from '../src/fit/line-state.js';
import { indexStoreFile } from '../src/store/store-file.js';
import { TemplateStore } from '../src/store/index.js';
import { expectHetmm } from './helpers/errors.js';
import { tempDir } from './helpers/io-paths.js';
import { checkStoreContents, createWorkerStore, featuresOf } from './helpers/store-fixtures.js';

const tmp = tempDir('store-removal');
const item = (name: string, id?: string): { features: Float32Array[]; file: string; id?: string } => ({
  features: featuresOf(name),
  file: name,
  ...(id === undefined ? {} : { id }),
});
const versionOf = (file: string): number => readFileSync(file).readUInt32LE(8);

async function records(file: string): Promise<Array<Record<string, unknown>>> {
  const handle = await open(file, 'r');
  try {
    return (await indexStoreFile(handle, file)).records.map((r) => r.header as unknown as Record<string, unknown>);
  } finally {
    await handle.close();
  }
}

test('every normal has a stable id: fitted ones derived from the base, appended ones recorded', async () => {
  const file = path.join(tmp, 'ids.hetmm');
  const fitted = await createWorkerStore(file, ['a', 'b']);
  const loaded = await TemplateStore.load(file);
  const again = await TemplateStore.load(file);
  const ids = loaded.normals().map((n) => n.id);
  assert.equal(new Set(ids).size, 2);
  assert.ok(ids.every((id) => /^t-[0-9a-f]{8}-\d+$/.test(id)), ids.join(','));
  assert.deepEqual(again.normals().map((n) => n.id), ids, 'the same in every reader');
  assert.deepEqual(fitted.normals().map((n) => n.id), ids, 'the writer holds the ids its readers derive');
  assert.deepEqual(loaded.normals().map((n) => n.kind), ['base', 'base']);
  const before = Date.now();
  await loaded.appendToFile(file, [item('c', 'key:k/0'), item('d')], { update: 'key:k' });
  const listed = (await TemplateStore.load(file)).normals();
  assert.deepEqual(listed.map((n) => [n.file, n.kind]), [['a', 'base'], ['b', 'base'], ['c', 'appended'], ['d', 'appended']]);
  assert.equal(listed[2]!.id, 'key:k/0');
  assert.match(listed[3]!.id, /^n-[0-9a-f]{16}$/, 'an append without an id gets one, recorded');
  assert.equal(listed[3]!.id, loaded.normals()[3]!.id);
  assert.ok(Date.parse(listed[2]!.addedAt!) >= before - 1000 && listed[2]!.update === 'key:k');
  // a full save records the ids: they survive compaction
  await loaded.save(file);
  assert.deepEqual((await TemplateStore.load(file)).normals().map((n) => [n.id, n.kind, n.addedAt]), listed.map((n) => [n.id, n.kind, n.addedAt]));
});

test('a removal record removes normals by id, durably, for every reader; repeats are no-ops; bad ids write nothing', async () => {
  const file = path.join(tmp, 'remove.hetmm');
  await createWorkerStore(file, ['a', 'b', 'c']);
  const writer = await TemplateStore.load(file);
  const reader = await TemplateStore.load(file);
  await writer.appendToFile(file, [item('d', 'key:d/0')], { update: 'key:d' });
  const [a, , c] = writer.normals();
  const snapshot = writer.snapshot();
  assert.equal(versionOf(file), 2);
  const r = await writer.removeFromFile(file, ['key:d/0', a!.id], { update: 'key:undo' });
  assert.deepEqual([r.removed, r.alreadyRemoved, r.count, r.rewritten], [['key:d/0', a!.id], [], 2, false]);
  assert.equal(versionOf(file), 4, 'the file is marked: older readers refuse it');
  assert.deepEqual(writer.files, ['b', 'c']);
  checkStoreContents(writer);
  assert.equal(snapshot.count, 4, 'a snapshot taken before stays as it was');
  assert.equal(writer.removedCount, 2);
  // the record: no data, the ids
  const last = (await records(file)).at(-1)!;
  assert.deepEqual([last.count, last.files, last.remove, last.update], [0, [], ['key:d/0', a!.id], 'key:undo']);
  // another store object sees it by refresh, a new one by load
  await reader.refresh(file);
  assert.deepEqual(reader.files, ['b', 'c']);
  checkStoreContents(reader);
  const loaded = await TemplateStore.load(file);
  assert.deepEqual(loaded.files, ['b', 'c']);
  checkStoreContents(loaded);
  assert.ok(loaded.wasRemoved(a!.id) && !loaded.hasId(a!.id));
  // again: a no-op that says so, nothing written
  const size = statSync(file).size;
  const repeat = await loaded.removeFromFile(file, [a!.id]);
  assert.deepEqual([repeat.removed, repeat.alreadyRemoved], [[], [a!.id]]);
  assert.equal(statSync(file).size, size);
  // an unknown id, or removing every normal: E_ARGUMENT, nothing written
  await assert.rejects(loaded.removeFromFile(file, [c!.id, 'no-such-id']), expectHetmm('E_ARGUMENT', 'no-such-id'));
  await assert.rejects(loaded.removeFromFile(file, ['b', ...loaded.normals().map((n) => n.id)]), expectHetmm('E_ARGUMENT'));
  await assert.rejects(loaded.removeFromFile(file, loaded.normals().map((n) => n.id)), expectHetmm('E_ARGUMENT', 'without any'));
  assert.equal(statSync(file).size, size);
  assert.deepEqual((await TemplateStore.load(file)).files, ['b', 'c']);
  // an in-memory append after a removal is still "not yet written": refresh refuses to reorder it
  loaded.append(featuresOf('z'), 'z');
  await assert.rejects(loaded.refresh(file), expectHetmm('E_ARGUMENT', 'not yet written'));
});

test('appends and removals of several store objects interleave; a compaction keeps the removals', async () => {
  const file = path.join(tmp, 'interleave.hetmm');
  await createWorkerStore(file, ['a', 'b']);
  const one = await TemplateStore.load(file);
  const two = await TemplateStore.load(file);
  await one.appendToFile(file, [item('c', 'x/c')]);
  await two.removeFromFile(file, ['x/c']); // two merges c first, then removes it
  await one.appendToFile(file, [item('d', 'x/d')]); // one merges the removal, then appends
  await two.removeFromFile(file, [two.normals()[0]!.id]);
  await one.refresh(file);
  for (const s of [one, two, await TemplateStore.load(file)]) {
    assert.deepEqual(s.files, ['b', 'd']);
    checkStoreContents(s);
  }
  // the chain positions grow with every record (queue mode keys the cluster's tip by them)
  const heads = (await TemplateStore.load(file)).chain()!.heads.map(([n]) => n);
  assert.deepEqual(heads, [2, 3, 4, 5, 6]);
  assert.deepEqual(one.chain(), two.chain());
  // the store version grows with every append and every removal, the same in every reader
  assert.equal(storeVersion(one), 6);
  assert.equal(storeVersion(two), 6);
  // compaction: the removed templates are gone from the file, the ids stay known
  await one.save(file);
  assert.equal(storeVersion(await TemplateStore.load(file)), 6, 'a compaction keeps the version');
  assert.equal(versionOf(file), 2, 'a compacted file holds no removal records: readable by older hetmm');
  const compacted = await TemplateStore.load(file);
  assert.deepEqual(compacted.files, ['b', 'd']);
  checkStoreContents(compacted);
  assert.equal(compacted.removedCount, 2);
  assert.ok(compacted.wasRemoved('x/c'));
  assert.deepEqual((await compacted.removeFromFile(file, ['x/c'])).alreadyRemoved, ['x/c']);
  // a stale store object (before the compaction) appends: it reloads, nothing lost or revived
  await two.appendToFile(file, [item('e', 'x/e')]);
  assert.deepEqual((await TemplateStore.load(file)).files, ['b', 'd', 'e']);
  await one.refresh(file);
  assert.deepEqual(one.files, ['b', 'd', 'e']);
});

test('a reader of versions 1-3 refuses a file with removals (the version check); a removal record in a version 3 file is refused', async () => {
  const file = path.join(tmp, 'old-reader.hetmm');
  await createWorkerStore(file, ['a', 'b']);
  const s = await TemplateStore.load(file);
  await s.removeFromFile(file, [s.normals()[0]!.id]);
  const bytes = readFileSync(file);
  assert.equal(bytes.readUInt32LE(8), 4);
  // the newest version this hetmm reads is 4: one more is refused by the same check an older hetmm applies to 4
  const newer = path.join(tmp, 'newer.hetmm');
  const patched = Buffer.from(bytes);
  patched.writeUInt32LE(5, 8);
  writeFileSync(newer, patched);
  await assert.rejects(TemplateStore.load(newer), expectHetmm('E_STORE_FORMAT', 'newer hetmm (format version 5'));
  // a removal record where an older version is declared is refused, never skipped
  const old = path.join(tmp, 'declared-v2.hetmm');
  const back = Buffer.from(bytes);
  back.writeUInt32LE(2, 8);
  writeFileSync(old, back);
  await assert.rejects(TemplateStore.load(old), expectHetmm('E_STORE_FORMAT', 'record'));
});

test('undo of the last hot update costs no copy, and a snapshot taken before keeps its rows when the next image comes', async () => {
  const file = path.join(tmp, 'tail.hetmm');
  await createWorkerStore(file, ['a', 'b']);
  const store = await TemplateStore.load(file);
  await store.appendToFile(file, [item('x', 'x')]);
  const before = store.snapshot();
  const buffer = store.layer(0).data.buffer;
  await store.removeFromFile(file, ['x']);
  assert.equal(store.layer(0).data.buffer, buffer, 'the rows before stay in place');
  await store.appendToFile(file, [item('y', 'y')]);
  assert.notEqual(store.layer(0).data.buffer, buffer, 'the next append reallocates');
  checkStoreContents(store);
  const l0 = before.layers[0]!;
  const per = l0.shape[1] * l0.shape[2] * l0.shape[3];
  assert.deepEqual(Array.from(l0.data.subarray(2 * per, 3 * per)), Array.from(featuresOf('x')[0]!), "the old snapshot still holds x's row");
  checkStoreContents(await TemplateStore.load(file));
});
