/**
 * The behaviour every InspectionRecord must have, run against SQLite
 * (record.test.ts) and PostgreSQL (record-postgres.test.ts): insert, get,
 * list with filters and keyset cursors, counts per hour and shift, the
 * histogram with "would change verdict", CSV, retention and audit.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { csvLines, type InspectionRecord, type Inspection } from '../../src/record/index.js';

export interface RecordFixture {
  readonly record: InspectionRecord;
  /** the directory image files are relative to */
  readonly filesRoot: string;
}

/** A tiny valid-looking PNG (the record stores bytes, it never decodes them). */
export const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(100, 7)]);
export const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(200, 3)]);

const H = 3_600_000;
const T0 = Date.UTC(2026, 11, 1, 0, 0, 0);

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

export function recordSuite(name: string, open: (opts?: { maxFileBytes?: number; maxPerLine?: number; maxAgeDays?: number }) => Promise<RecordFixture>): void {
  test(`${name}: add, get by id, image and heat map as files beside the record`, async () => {
    const { record, filesRoot } = await open();
    try {
      const id = await record.add({ line: 'bottle', score: 0.7, verdict: 'defect', threshold: 0.5, storeVersion: 12, imageName: 'a.jpg', image: JPEG, heatmapPng: PNG, model: { precision: 'int8' } });
      const got = await record.get(id);
      assert.ok(got !== undefined);
      assert.equal(got.line, 'bottle');
      assert.equal(got.score, 0.7);
      assert.equal(got.verdict, 'defect');
      assert.equal(got.threshold, 0.5);
      assert.equal(got.storeVersion, 12);
      assert.equal(got.imageName, 'a.jpg');
      assert.deepEqual(got.model, { precision: 'int8' });
      assert.equal(got.imageExpired, false);
      assert.match(got.imageFile!, /\.image\.jpg$/);
      assert.ok(existsSync(path.join(filesRoot, got.imageFile!)));
      assert.deepEqual(await record.readFile(got, 'image'), JPEG);
      assert.deepEqual(await record.readFile(got, 'heatmap'), PNG);
      // the caller's id (the predict answer's) is kept; adding it again (a retry) changes nothing
      assert.equal(await record.add({ id: 'pred-1', line: 'bottle', score: 0.1 }), 'pred-1');
      assert.equal(await record.add({ id: 'pred-1', line: 'bottle', score: 0.9 }), 'pred-1');
      assert.equal(await record.add({ id: id, line: 'bottle', score: 0.1, image: PNG }), id);
      assert.deepEqual(await record.readFile((await record.get(id))!, 'image'), JPEG, 'a repeated id does not overwrite the first files');
      assert.equal((await record.get('pred-1'))!.score, 0.1);
      assert.equal((await record.get('pred-1'))!.verdict, null);
      assert.equal(await record.get('nope'), undefined);
      await assert.rejects(record.get('../etc'), { code: 'E_ARGUMENT' });
      await assert.rejects(record.add({ line: 'bad line', score: 1 }), { code: 'E_ARGUMENT' });
      await assert.rejects(record.add({ line: 'bottle', score: Number.NaN }), { code: 'E_ARGUMENT' });
      await assert.rejects(record.add({ line: 'bottle', score: 1, verdict: 'maybe' as 'ok' }), { code: 'E_ARGUMENT' });
    } finally {
      await record.close();
    }
  });

  test(`${name}: list newest first, filters, keyset cursor across inserts`, async () => {
    const { record } = await open();
    try {
      for (let i = 0; i < 25; i++) {
        await record.add({ id: `b${i}`, line: 'bottle', time: new Date(T0 + i * 60_000), score: i / 25, verdict: i % 3 === 0 ? 'defect' : 'ok', threshold: 0.5 });
      }
      await record.add({ id: 'other', line: 'hazelnut', time: new Date(T0), score: 1, verdict: 'defect' });
      const first = await record.list('bottle', { limit: 10 });
      assert.deepEqual(first.items.map((i) => i.id), Array.from({ length: 10 }, (_, k) => `b${24 - k}`));
      assert.ok(first.next !== undefined);
      // a row added between pages does not shift the next page (keyset, not offset)
      await record.add({ id: 'late', line: 'bottle', time: new Date(T0 + 99 * 60_000), score: 0.2, verdict: 'ok' });
      const second = await record.list('bottle', { limit: 10, cursor: first.next! });
      assert.deepEqual(second.items.map((i) => i.id), Array.from({ length: 10 }, (_, k) => `b${14 - k}`));
      const third = await record.list('bottle', { limit: 10, cursor: second.next! });
      assert.equal(third.items.length, 5);
      assert.equal(third.next, undefined);
      const defects = await collect(record.iterate('bottle', { verdict: 'defect' }, 3));
      assert.deepEqual(defects.map((i) => i.id), ['b24', 'b21', 'b18', 'b15', 'b12', 'b9', 'b6', 'b3', 'b0']);
      const window = await record.list('bottle', { since: new Date(T0 + 5 * 60_000), until: new Date(T0 + 8 * 60_000) });
      assert.deepEqual(window.items.map((i) => i.id), ['b7', 'b6', 'b5']);
      assert.equal((await record.list('hazelnut')).items.length, 1);
      assert.equal((await record.list('nothing')).items.length, 0);
      await assert.rejects(record.list('bottle', { cursor: 'garbage!' }), { code: 'E_ARGUMENT' });
      await assert.rejects(record.list('bottle', { limit: 0 }), { code: 'E_ARGUMENT' });
      await assert.rejects(record.list('bottle', { limit: 1001 }), { code: 'E_ARGUMENT' });
      await assert.rejects(record.list('bottle', { since: new Date(T0 + H), until: new Date(T0) }), { code: 'E_ARGUMENT' });
    } finally {
      await record.close();
    }
  });

  test(`${name}: counts per hour and per shift, in a UTC offset`, async () => {
    const { record } = await open();
    try {
      // 05:30 and 06:30 UTC+2 local fall in the 22:00 and 06:00 shifts
      const local = (h: number, m: number): Date => new Date(T0 + h * H + m * 60_000 - 2 * H);
      await record.add({ line: 'bottle', time: local(5, 30), score: 1, verdict: 'defect' });
      await record.add({ line: 'bottle', time: local(5, 45), score: 0, verdict: 'ok' });
      await record.add({ line: 'bottle', time: local(6, 30), score: 0, verdict: 'ok' });
      await record.add({ line: 'bottle', time: local(13, 59), score: 0 });
      await record.add({ line: 'bottle', time: local(14, 0), score: 1, verdict: 'defect' });
      await record.add({ line: 'hazelnut', time: local(6, 0), score: 1, verdict: 'defect' });
      const c = await record.counts('bottle', { since: new Date(T0 - 24 * H), until: new Date(T0 + 24 * H), utcOffsetMinutes: 120, shifts: ['06:00', '14:00', '22:00'] });
      assert.deepEqual(c.hours, [
        { start: local(5, 0).toISOString(), ok: 1, defect: 1, unscored: 0 },
        { start: local(6, 0).toISOString(), ok: 1, defect: 0, unscored: 0 },
        { start: local(13, 0).toISOString(), ok: 0, defect: 0, unscored: 1 },
        { start: local(14, 0).toISOString(), ok: 0, defect: 1, unscored: 0 },
      ]);
      assert.deepEqual(c.shifts, [
        { start: local(-2, 0).toISOString(), shift: '22:00', ok: 1, defect: 1, unscored: 0 },
        { start: local(6, 0).toISOString(), shift: '06:00', ok: 1, defect: 0, unscored: 1 },
        { start: local(14, 0).toISOString(), shift: '14:00', ok: 0, defect: 1, unscored: 0 },
      ]);
      await assert.rejects(record.counts('bottle', { since: new Date(T0), until: new Date(T0 + H), shifts: ['14:00', '06:00'] }), { code: 'E_ARGUMENT' });
      await assert.rejects(record.counts('bottle', { since: new Date(T0), until: new Date(T0 + H), shifts: ['25:00'] }), { code: 'E_ARGUMENT' });
      await assert.rejects(record.counts('bottle', { since: new Date(T0), until: new Date(T0 + 100 * 24 * H) }), { code: 'E_ARGUMENT' });
    } finally {
      await record.close();
    }
  });

  test(`${name}: score histogram of the last N, and how many would change verdict at t`, async () => {
    const { record } = await open();
    try {
      await record.add({ line: 'bottle', score: 100, verdict: 'defect' }); // older than the last 10
      for (let i = 0; i < 10; i++) await record.add({ line: 'bottle', score: i, verdict: i > 4.5 ? 'defect' : 'ok', threshold: 4.5 });
      const h = await record.histogram('bottle', { last: 10, bins: 3 });
      assert.equal(h.n, 10);
      assert.equal(h.min, 0);
      assert.equal(h.max, 9);
      assert.deepEqual(h.bins, [3, 3, 4]);
      assert.equal(h.wouldChange, undefined);
      // at 6.5: scores 5 and 6 become ok
      const t = await record.histogram('bottle', { last: 10, threshold: 6.5 });
      assert.deepEqual([t.wouldChange, t.toOk, t.toDefect], [2, 2, 0]);
      const low = await record.histogram('bottle', { last: 10, threshold: 2 });
      assert.deepEqual([low.wouldChange, low.toOk, low.toDefect], [2, 0, 2]);
      const empty = await record.histogram('nothing');
      assert.deepEqual([empty.n, empty.min, empty.bins.every((b) => b === 0)], [0, null, true]);
      await assert.rejects(record.histogram('bottle', { threshold: -1 }), { code: 'E_ARGUMENT' });
      await assert.rejects(record.histogram('bottle', { bins: 0 }), { code: 'E_ARGUMENT' });
    } finally {
      await record.close();
    }
  });

  test(`${name}: CSV export is escaped against formula injection`, async () => {
    const { record } = await open();
    try {
      await record.add({ id: 'c1', line: 'bottle', time: new Date(T0), score: 0.25, verdict: 'ok', threshold: 0.5, imageName: '=HYPERLINK("http://x","y")' });
      await record.add({ id: 'c2', line: 'bottle', time: new Date(T0 + 1000), score: 0.75, verdict: 'defect', imageName: 'a,b\nc' });
      await record.add({ id: 'c3', line: 'bottle', time: new Date(T0 + 2000), score: -0.5, imageName: '@SUM(1)' });
      const text = (await collect(csvLines(record.iterate('bottle')))).join('');
      const lines = text.split('\r\n');
      assert.equal(lines[0], 'id,line,time,score,verdict,threshold,store_version,image_name,image_expired');
      assert.equal(lines[1], `c3,bottle,${new Date(T0 + 2000).toISOString()},-0.5,,,,'@SUM(1),false`);
      assert.equal(lines[2], `c2,bottle,${new Date(T0 + 1000).toISOString()},0.75,defect,,,"a,b\nc",false`.split('\r\n')[0]);
      assert.ok(text.includes(`c1,bottle,${new Date(T0).toISOString()},0.25,ok,0.5,,"'=HYPERLINK(""http://x"",""y"")",false\r\n`));
    } finally {
      await record.close();
    }
  });

  test(`${name}: retention by count, by age, and the file budget (rows kept as image expired)`, async () => {
    const { record, filesRoot } = await open({ maxPerLine: 5, maxAgeDays: 30, maxFileBytes: 3 * (JPEG.length + PNG.length) });
    try {
      const old = await record.add({ line: 'bottle', time: new Date(Date.now() - 31 * 24 * H), score: 0, image: JPEG });
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) ids.push(await record.add({ line: 'bottle', score: i, image: JPEG, heatmapPng: PNG }));
      const keep = await record.add({ line: 'hazelnut', score: 1 });
      const files = await record.get(ids[0]!);
      const report = await record.enforceRetention();
      assert.equal(await record.get(old), undefined, 'older than maxAgeDays: dropped');
      assert.equal(await record.get(ids[0]!), undefined, 'over maxPerLine: the oldest dropped');
      assert.ok(!existsSync(path.join(filesRoot, files!.imageFile!)), 'a dropped row\'s files are deleted');
      const kept = (await record.list('bottle')).items;
      assert.deepEqual(kept.map((i) => i.id), ids.slice(3).reverse());
      // budget of 3 inspections' files: the 2 oldest of the 5 kept lose theirs, rows stay
      assert.deepEqual(kept.map((i) => i.imageExpired), [false, false, false, true, true]);
      const expired = kept[4]!;
      assert.equal(expired.imageFile, null);
      assert.equal(await record.readFile(expired, 'image'), undefined);
      assert.deepEqual(await record.readFile(kept[0]!, 'heatmap'), PNG);
      assert.equal(report.fileBytes, 3 * (JPEG.length + PNG.length));
      assert.ok((await record.get(keep)) !== undefined);
    } finally {
      await record.close();
    }
  });

  test(`${name}: audit rows name the token, never hold it`, async () => {
    const { record } = await open();
    try {
      await record.addAudit({ line: 'bottle', action: 'threshold', before: 0.5, after: 0.6, tokenName: 'operator-1' });
      await record.addAudit({ line: 'bottle', action: 'mark-normal', before: null, after: { ids: ['n1'] }, tokenName: 'operator-2' });
      await record.addAudit({ line: 'hazelnut', action: 'remove-normal', before: { ids: ['n9'] }, after: null, tokenName: 'default' });
      const page = await record.audit('bottle', { limit: 1 });
      assert.equal(page.items.length, 1);
      assert.equal(page.items[0]!.action, 'mark-normal');
      assert.deepEqual(page.items[0]!.after, { ids: ['n1'] });
      const rest = await record.audit('bottle', { cursor: page.next! });
      assert.deepEqual(rest.items.map((a) => [a.action, a.before, a.after, a.tokenName]), [['threshold', 0.5, 0.6, 'operator-1']]);
      await assert.rejects(record.addAudit({ line: 'bottle', action: 'threshold', tokenName: 'Bearer abc def' }), { code: 'E_ARGUMENT' });
      await assert.rejects(record.addAudit({ line: 'bottle', action: 'delete-all' as 'threshold', tokenName: 'x' }), { code: 'E_ARGUMENT' });
    } finally {
      await record.close();
    }
  });
}

export type { Inspection };
