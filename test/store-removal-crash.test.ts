/**
 * Crash safety of removals (issue 21, item 1): two processes add and remove
 * normals on one store while one of them is killed with SIGKILL at random
 * points, again and again. After every kill the store loads, every template
 * is intact, every acknowledged removal is in effect and every acknowledged
 * addition that was not removed is there, once. HETMM_REMOVAL_KILLS sets the
 * number of kills (default 16).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TemplateStore } from '../src/store/index.js';
import { tempDir } from './helpers/io-paths.js';
import { checkStoreContents, createWorkerStore } from './helpers/store-fixtures.js';

const worker = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'store-worker.js');
const tmp = tempDir('store-removal-crash');
const KILLS = Number(process.env.HETMM_REMOVAL_KILLS ?? 16);

interface Run {
  readonly signal: NodeJS.Signals | null;
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A churn child; killed `killAfterMs` after its first operation starts (undefined: runs to the end). */
function churn(file: string, names: readonly string[], killAfterMs?: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, 'churn', file, ...names], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (killAfterMs !== undefined && timer === undefined && stdout.includes('start ')) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const lines = (stdout: string, prefix: string): string[] => stdout.split('\n').filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length));

test('kill -9 during adds and removals: the store loads, every acknowledged removal is in effect, every acknowledged add kept once', async () => {
  const file = path.join(tmp, 's.hetmm');
  await createWorkerStore(file, ['base0', 'base1']);
  const added = new Set<string>();
  const removed = new Set<string>();
  // operations a kill interrupted: committed or not, both are right (never acknowledged)
  const maybeAdded = new Set<string>();
  const maybeRemoved = new Set<string>();
  let seed = 4242;
  const random = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  let kills = 0;
  const interrupted = { add: 0, remove: 0 };
  for (let run = 0; kills < KILLS && run < KILLS * 4; run++) {
    const names = (who: string): string[] => Array.from({ length: 8 }, (_, k) => `${who}${run}-${k}`);
    // one child is killed at a random point, the other runs beside it to the end (the lock, merges)
    const [victim, survivor] = await Promise.all([churn(file, names('v'), Math.floor(random() * 120)), churn(file, names('s'))]);
    assert.equal(survivor.code, 0, survivor.stderr);
    if (victim.signal === 'SIGKILL') {
      kills++;
      const last = victim.stdout.trim().split('\n').at(-1) ?? '';
      if (last.startsWith('start add')) interrupted.add++;
      if (last.startsWith('start remove')) interrupted.remove++;
    } else assert.equal(victim.code, 0, victim.stderr);
    for (const r of [victim, survivor]) {
      for (const n of lines(r.stdout, 'ack add ')) added.add(n);
      for (const n of lines(r.stdout, 'ack remove ')) removed.add(n);
    }
    if (victim.signal === 'SIGKILL') {
      for (const n of lines(victim.stdout, 'start add ')) if (!added.has(n)) maybeAdded.add(n);
      for (const n of lines(victim.stdout, 'start remove ')) if (!removed.has(n)) maybeRemoved.add(n);
    }
    const store = await TemplateStore.load(file);
    checkStoreContents(store);
    const files = store.files;
    assert.equal(new Set(files).size, files.length, 'a normal is held twice');
    for (const n of removed) {
      assert.ok(!files.includes(n), `acknowledged removal of ${n} lost after ${kills} kills`);
      assert.ok(store.wasRemoved(`id-${n}`));
    }
    for (const n of ['base0', 'base1', ...added].filter((n) => !removed.has(n))) {
      assert.ok(files.includes(n) || maybeRemoved.has(n), `acknowledged ${n} lost after ${kills} kills`);
    }
    // what the store holds beyond the acknowledged: only interrupted adds
    const extra = files.filter((n) => !n.startsWith('base') && !added.has(n));
    assert.ok(extra.every((n) => maybeAdded.has(n)), `unexpected ${extra.join(',')}`);
  }
  assert.ok(kills >= KILLS, `${kills} kills`);
  // the kills landed in both kinds of operation (or the loop could not tell the difference)
  assert.ok(interrupted.add > 0 && interrupted.remove > 0, JSON.stringify(interrupted));
  assert.ok(readdirSync(tmp).every((n) => !n.includes('.tmp-')), 'no temp file left after the next writer');
  // a full save compacts what survived: the same normals
  const final = await TemplateStore.load(file);
  const before = final.files;
  await final.save(file);
  assert.deepEqual((await TemplateStore.load(file)).files, before);
});
