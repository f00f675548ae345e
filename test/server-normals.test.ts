/**
 * Undoable hot updates over HTTP (issue 21, item 1): the answer of POST
 * /v1/lines/{line}/normals carries the new ids, GET .../normals lists the
 * normals, DELETE .../normals/{id} (token) removes one durably; a removed
 * normal no longer takes part in matching; an unknown id is 404 and writes
 * nothing; a removal made by another process reaches the served line.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { TemplateStore } from '../src/store/index.js';
import { tempDir } from './helpers/io-paths.js';
import { addNormal, auth, bottleBroken, fitBottleStore, postImage, readImage, startServer, TEST_TOKEN, type RunningServer } from './helpers/server.js';

const tmp = tempDir('server-normals');
const storeFile = path.join(tmp, 'bottle.hetmm');
const broken = readImage(bottleBroken[0]!);
let server: RunningServer;

interface NormalsJson {
  line: string;
  version: number;
  templates: number;
  removed: number;
  normals: Array<{ id: string; file: string; kind: string; addedAt?: string }>;
}

before(async () => {
  await fitBottleStore(storeFile, 3);
  server = await startServer({ stores: [storeFile], token: TEST_TOKEN });
});

after(async () => {
  await server?.close();
});

const url = (id: string): string => `${server.base}/v1/lines/bottle/normals/${encodeURIComponent(id)}`;
const listNormals = async (): Promise<NormalsJson> => {
  const r = await fetch(`${server.base}/v1/lines/bottle/normals`);
  assert.equal(r.status, 200);
  return (await r.json()) as NormalsJson;
};
const score = async (): Promise<number> => {
  const r = await postImage(server.base, 'bottle', broken);
  assert.equal(r.status, 200);
  return ((await r.json()) as { score: number }).score;
};

test('mark a defect as normal, then undo it by the id the answer gave: matching is as before', async () => {
  const listed = await listNormals();
  assert.deepEqual([listed.templates, listed.removed, listed.normals.map((n) => n.kind)], [3, 0, ['base', 'base', 'base']]);
  assert.ok(listed.normals.every((n) => n.id.length > 0));
  const before = await score();
  const added = await addNormal(server.base, 'bottle', broken, 'oops.png');
  assert.equal(added.status, 200);
  const answer = (await added.json()) as { added: number; ids: string[]; version: number };
  assert.equal(answer.added, 1);
  assert.equal(answer.ids.length, 1, 'the answer names the new normal');
  assert.ok((await score()) < before / 2, 'the defect now matches itself');
  const after = await listNormals();
  assert.deepEqual(after.normals.map((n) => [n.id, n.kind, n.file]).at(-1), [answer.ids[0], 'appended', 'oops.png']);
  assert.ok(Date.parse(after.normals.at(-1)!.addedAt!) > 0);

  // no token: refused, nothing removed
  const anonymous = await fetch(url(answer.ids[0]!), { method: 'DELETE' });
  assert.equal(anonymous.status, 401);
  const removed = await fetch(url(answer.ids[0]!), { method: 'DELETE', headers: auth });
  const text = await removed.text();
  assert.equal(removed.status, 200, text);
  const r = JSON.parse(text) as { removed: string[]; alreadyRemoved: string[]; templates: number; version: number };
  assert.deepEqual([r.removed, r.alreadyRemoved, r.templates], [answer.ids, [], 3]);
  assert.ok(r.version > answer.version, 'a removal is a new store version');
  assert.equal(await score(), before, 'the removed normal takes no part in matching');
  // durable: the file holds the removal
  assert.deepEqual((await TemplateStore.load(storeFile)).normals().map((n) => n.kind), ['base', 'base', 'base']);
  // again: 200, a no-op that says so
  const again = await fetch(url(answer.ids[0]!), { method: 'DELETE', headers: auth });
  assert.equal(again.status, 200);
  assert.deepEqual(((await again.json()) as { alreadyRemoved: string[] }).alreadyRemoved, answer.ids);
});

test('an unknown id is 404 and writes nothing; the last normal is not removed', async () => {
  const bytes = readFileSync(storeFile);
  const unknown = await fetch(url('key:nope/0'), { method: 'DELETE', headers: auth });
  assert.equal(unknown.status, 404);
  assert.equal(((await unknown.json()) as { error: { code: string } }).error.code, 'E_NOT_FOUND');
  const unknownLine = await fetch(`${server.base}/v1/lines/nope/normals/x`, { method: 'DELETE', headers: auth });
  assert.equal(unknownLine.status, 404);
  assert.ok(readFileSync(storeFile).equals(bytes), 'nothing written');
});

test("another process's removal reaches the served line", async () => {
  const other = await TemplateStore.load(storeFile);
  const id = other.normals()[0]!.id;
  await other.removeFromFile(storeFile, [id]);
  const deadline = Date.now() + 10_000;
  let listed = await listNormals();
  while (listed.templates !== 2 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    listed = await listNormals();
  }
  assert.equal(listed.templates, 2);
  assert.ok(!listed.normals.some((n) => n.id === id));
  const line = (await (await fetch(`${server.base}/v1/lines/bottle`)).json()) as { templates: number; version: number };
  assert.deepEqual([line.templates, line.version], [2, listed.version]);
  // the last normal cannot be removed
  await fetch(url(listed.normals[0]!.id), { method: 'DELETE', headers: auth });
  const last = await fetch(url((await listNormals()).normals[0]!.id), { method: 'DELETE', headers: auth });
  assert.equal(last.status, 400);
  assert.equal((await listNormals()).templates, 1);
});
