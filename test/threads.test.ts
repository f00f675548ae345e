/**
 * The worker-thread helper (src/threads/), on a fixture thread
 * (./helpers/thread-fixture.ts): answers by request id, buffers moved both
 * ways, errors with their HetmmError codes, and a thread that crashes, exits
 * or is closed rejects every pending and later call with E_INTERNAL instead
 * of leaving it hanging; idle threads do not keep the process alive; the
 * onnxruntime telemetry switch and configure() settings reach the thread.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { configure } from '../src/config.js';
import { WorkerThread, watchThreads } from '../src/threads/index.js';
import { expectHetmm } from './helpers/errors.js';
import { tempDir } from './helpers/io-paths.js';
import type { FixtureRequest } from './helpers/thread-fixture.js';

const fixture = new URL('./helpers/thread-fixture.js', import.meta.url);
const start = (label?: string): WorkerThread<FixtureRequest, unknown, { done: number }> =>
  new WorkerThread(fixture, { name: 'the fixture thread', data: { label } });

test('threads: answers by id, concurrently, with workerData, buffers moved both ways', async () => {
  const thread = start('L');
  try {
    const slow = thread.call({ op: 'wait', ms: 150 });
    const quick = thread.call({ op: 'echo', value: [1, 'two'] });
    assert.deepEqual(await quick, { value: [1, 'two'], label: 'L' }, 'the later, quicker call is answered first, by its id');
    assert.equal(await slow, 'waited');
    const input = Float32Array.of(1, 2, 3);
    const reply = (await thread.call({ op: 'double', data: input }, [input.buffer])) as { out: Float32Array; received: number };
    assert.equal(input.byteLength, 0, "the caller's buffer was moved, not copied");
    assert.equal(reply.received, 3);
    assert.deepEqual([...reply.out], [2, 4, 6]);
    assert.equal(thread.pending, 0);
  } finally {
    await thread.close();
  }
});

test('threads: errors cross with their HetmmError code; others are E_INTERNAL; the thread lives on', async () => {
  const thread = start();
  try {
    await assert.rejects(thread.call({ op: 'fail', code: 'E_BACKEND' }), expectHetmm('E_BACKEND', 'failed on purpose with E_BACKEND'));
    await assert.rejects(thread.call({ op: 'fail', code: 'E_ARGUMENT' }), expectHetmm('E_ARGUMENT', 'failed on purpose'));
    await assert.rejects(thread.call({ op: 'throw-plain' }), expectHetmm('E_INTERNAL', 'a plain TypeError'));
    await assert.rejects(thread.call({ op: 'uncloneable' }), expectHetmm('E_INTERNAL', 'could not be cloned'));
    await assert.rejects(thread.call({ op: 'echo', value: () => 1 } as never), expectHetmm('E_INTERNAL', 'cannot send to the fixture thread'));
    assert.deepEqual(await thread.call({ op: 'echo', value: 5 }), { value: 5, label: undefined });
    assert.equal(thread.failure, undefined);
  } finally {
    await thread.close();
  }
});

test('threads: events reach onEvent before the answer', async () => {
  const events: number[] = [];
  const thread = new WorkerThread<FixtureRequest, unknown, { done: number }>(fixture, { name: 'the fixture thread', onEvent: (e) => events.push(e.done) });
  try {
    assert.equal(await thread.call({ op: 'progress', count: 3 }), 3);
    assert.deepEqual(events, [1, 2, 3]);
  } finally {
    await thread.close();
  }
});

for (const [how, request, fragment] of [
  ['crashes (an uncaught exception)', { op: 'crash' }, 'the fixture thread crashed: crashed on purpose'],
  ['exits (process.exit in the thread)', { op: 'exit', code: 3 }, 'the fixture thread exited (code 3)'],
] as const) {
  test(`threads: a thread that ${how} mid-task rejects every pending call and every later one with E_INTERNAL`, { timeout: 30_000 }, async () => {
    const thread = start();
    const waiting = thread.call({ op: 'wait', ms: 60_000 });
    const dying = thread.call(request);
    await assert.rejects(dying, expectHetmm('E_INTERNAL', fragment));
    await assert.rejects(waiting, expectHetmm('E_INTERNAL', fragment));
    await assert.rejects(thread.call({ op: 'echo', value: 1 }), expectHetmm('E_INTERNAL', fragment));
    assert.equal(thread.failure?.code, 'E_INTERNAL');
    assert.equal(thread.pending, 0);
  });
}

test('threads: exitForTest and close stop a thread mid-task; its calls reject, none hangs', { timeout: 30_000 }, async () => {
  const seen: WorkerThread<unknown, unknown>[] = [];
  const stop = watchThreads((t) => seen.push(t));
  const a = start();
  const b = start();
  stop();
  assert.equal(seen.length, 2, 'watchThreads sees the threads started while it watches');
  assert.ok(seen[0] === (a as unknown) && seen[1] === (b as unknown));
  const pendingA = a.call({ op: 'wait', ms: 60_000 });
  a.exitForTest(9);
  await assert.rejects(pendingA, expectHetmm('E_INTERNAL', 'exited (code 9)'));
  const pendingB = b.call({ op: 'wait', ms: 60_000 });
  await b.close();
  await assert.rejects(pendingB, expectHetmm('E_INTERNAL', 'the fixture thread was closed'));
  await assert.rejects(b.call({ op: 'echo', value: 1 }), expectHetmm('E_INTERNAL', 'was closed'));
});

test('threads: telemetry off before an onnxruntime thread starts; configure() settings reach the thread', async () => {
  configure({ threads: '3', backend: 'reference' });
  const thread = new WorkerThread<FixtureRequest, unknown>(fixture, { name: 'the fixture thread', onnxruntime: true });
  try {
    assert.deepEqual(await thread.call({ op: 'environment' }), { telemetry: '1', threads: '3', backend: 'reference' });
  } finally {
    configure({ threads: undefined, backend: undefined });
    await thread.close();
  }
});

test('threads: an idle thread does not keep the process alive; a busy one does until it answers', () => {
  const script = `
    import { WorkerThread } from ${JSON.stringify(new URL('../src/threads/index.js', import.meta.url).href)};
    const t = new WorkerThread(new URL(${JSON.stringify(fixture.href)}), { name: 'the fixture thread' });
    t.call({ op: 'wait', ms: 300 }).then((v) => console.log('answer', v));
    // never closed: the process must end by itself once the answer is in
  `;
  const file = path.join(tempDir('threads'), 'idle.mjs');
  writeFileSync(file, script);
  const started = Date.now();
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.signal, null, `the process did not exit by itself (${r.stderr})`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'answer waited', 'the pending call kept the process alive until it was answered');
  assert.ok(Date.now() - started < 25_000);
});
