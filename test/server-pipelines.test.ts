/**
 * The in-process server runs the predict command's pipelines (issue 22,
 * item 6): HTTP predictions of an int8 line go to single-threaded pipeline
 * threads (decode, int8 backbone, int8 matching, scoring and the PNG maps on
 * the thread), a hot update or a threshold set over HTTP reaches the very
 * next prediction of every thread (as does another process's `hetmm add`,
 * within 1 s), and a pipeline thread that dies answers
 * E_INTERNAL (not a hang) and is restarted.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Detector } from '../src/detector/detector.js';
import { fitStore } from '../src/fit/fit-store.js';
import { watchThreads, type WorkerThread } from '../src/threads/index.js';
import { repoRoot, tempDir } from './helpers/io-paths.js';
import { addNormal, auth, bottleBroken, bottleGood, bottleTrain, postImage, readImage, startServer, TEST_TOKEN, type RunningServer } from './helpers/server.js';

const run = promisify(execFile);
const tmp = tempDir('server-pipelines');
const storeFile = path.join(tmp, 'line.hetmm');
/** pipelines per model (the executor's threads option) */
const PIPELINES = 2;

interface Answer {
  readonly score: number;
  readonly templates: number;
  readonly version: number;
  readonly threshold?: number;
  readonly label?: string;
  readonly maps?: { readonly heatmap?: string };
}

let server: RunningServer;
const threads: WorkerThread<unknown, unknown>[] = [];
const pipelineThreads = (): WorkerThread<unknown, unknown>[] => threads.filter((t) => t.name === 'a pipeline thread' && t.failure === undefined);

before(async () => {
  // int8 end to end (fitStore's default), 4 normals, calibrated: a threshold to label with
  const fitted = await fitStore({ preset: 'bottle' }, { files: bottleTrain.slice(0, 4), output: storeFile, calibrationSamples: 4 });
  fitted.detector.dispose();
  const stop = watchThreads((t) => threads.push(t));
  try {
    server = await startServer({ stores: [storeFile], token: TEST_TOKEN, threads: PIPELINES });
  } finally {
    stop();
  }
});

after(async () => {
  await server?.close();
});

/** Scores of `file` by Detector.open on the store file as it is now. */
async function scoreByDetector(file: string): Promise<{ score: number; templates: number }> {
  const detector = await Detector.open({ store: storeFile });
  try {
    const p = await detector.predict(file);
    return { score: p.score, templates: p.templates };
  } finally {
    detector.dispose();
  }
}

/** `count` predictions of `file` at once (every pipeline thread gets some). */
async function predictAtOnce(file: string, count: number, query = '?maps=none'): Promise<Answer[]> {
  const answers = await Promise.all(
    Array.from({ length: count }, async () => {
      const r = await postImage(server.base, 'line', readImage(file), query);
      assert.equal(r.status, 200, await r.clone().text());
      return (await r.json()) as Answer;
    }),
  );
  return answers;
}

describe('the in-process server on pipelines', () => {
  it('runs its predictions on the pipeline threads, PNG maps rendered there, scores as Detector.open', async () => {
    assert.equal(pipelineThreads().length, PIPELINES, `threads started: ${threads.map((t) => t.name).join(', ')}`);
    const busy = new Set<WorkerThread<unknown, unknown>>();
    const timer = setInterval(() => {
      for (const t of pipelineThreads()) if (t.pending > 0) busy.add(t);
    }, 1);
    let answers: Answer[];
    try {
      answers = await predictAtOnce(bottleBroken[0]!, 4 * PIPELINES, '?maps=png');
    } finally {
      clearInterval(timer);
    }
    assert.equal(busy.size, PIPELINES, 'every pipeline thread predicted');
    const expected = await scoreByDetector(bottleBroken[0]!);
    for (const a of answers) {
      assert.equal(a.score, expected.score, 'bit-identical to Detector.open');
      assert.equal(a.templates, expected.templates);
      assert.equal(typeof a.maps?.heatmap, 'string', JSON.stringify(a));
    }
    const png = await fetch(`${server.base}${answers[0]!.maps!.heatmap!}`);
    assert.equal(png.status, 200);
    assert.deepEqual([...new Uint8Array(await png.arrayBuffer()).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'a PNG');
  });

  it('an acknowledged hot update and a threshold set over HTTP reach the next prediction of every pipeline', async () => {
    const probe = bottleBroken[1]!;
    const before = await predictAtOnce(probe, 2 * PIPELINES);
    const r = await addNormal(server.base, 'line', readImage(probe), 'probe.png');
    assert.equal(r.status, 200, await r.clone().text());
    const added = (await r.json()) as { templates: number; version: number };
    // the image is now a template: every thread matches it against itself
    const afterAdd = await predictAtOnce(probe, 4 * PIPELINES);
    const expected = await scoreByDetector(probe);
    assert.equal(expected.templates, added.templates);
    for (const a of afterAdd) {
      assert.equal(a.templates, added.templates, 'the new template count');
      assert.equal(a.version, added.version);
      assert.equal(a.score, expected.score, 'bit-identical to Detector.open on the updated store');
      assert.ok(a.score < before[0]!.score, `the added image scores lower (${a.score} vs ${before[0]!.score})`);
    }
    const value = expected.score + 1;
    const t = await fetch(`${server.base}/v1/lines/line/threshold`, { method: 'PUT', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ value }) });
    assert.equal(t.status, 200, await t.clone().text());
    for (const a of await predictAtOnce(probe, 4 * PIPELINES)) {
      assert.equal(a.threshold, value, 'the new threshold');
      assert.equal(a.label, 'ok');
    }
  });

  it("another process's hetmm add reaches the next prediction of every pipeline within 1 s", async () => {
    const probe = bottleBroken[2]!;
    const before = await predictAtOnce(probe, 2);
    await run(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'add', '-t', storeFile, probe, '--quiet']);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const expected = await scoreByDetector(probe);
    assert.equal(expected.templates, before[0]!.templates + 1);
    for (const a of await predictAtOnce(probe, 4 * PIPELINES)) {
      assert.equal(a.templates, expected.templates, 'the added template');
      assert.equal(a.score, expected.score, 'bit-identical to Detector.open on the file');
    }
  });

  it('a pipeline thread that dies mid-request answers E_INTERNAL, not a hang, and is restarted', { timeout: 120_000 }, async () => {
    const stop = watchThreads((t) => threads.push(t));
    try {
      const victims = pipelineThreads();
      assert.equal(victims.length, PIPELINES);
      const requests = Array.from({ length: 2 * PIPELINES }, () => postImage(server.base, 'line', readImage(bottleGood[0]!), '?maps=png'));
      // every thread holds an image: stopped now, it dies in the middle of it
      while (!victims.every((v) => v.pending > 0)) await new Promise((resolve) => setTimeout(resolve, 1));
      for (const v of victims) v.exitForTest(5);
      const answers = await Promise.all(requests);
      const codes = await Promise.all(answers.map(async (a) => (a.status === 200 ? 200 : ((await a.json()) as { error: { code: string } }).error.code)));
      assert.ok(codes.includes('E_INTERNAL'), `answers: ${codes.join(', ')}`);
      for (const c of codes) assert.ok(c === 200 || c === 'E_INTERNAL', `answers: ${codes.join(', ')}`);
      assert.ok(answers.filter((a) => a.status !== 200).every((a) => a.status === 500));
      // the server recovers: new threads in place of the dead ones
      const recovered = await predictAtOnce(bottleGood[0]!, 2 * PIPELINES);
      assert.equal(recovered.length, 2 * PIPELINES);
      assert.equal(pipelineThreads().length, PIPELINES, 'as many live pipeline threads as before');
      assert.ok(victims.every((v) => v.failure !== undefined));
      assert.equal((await fetch(`${server.base}/readyz`)).status, 200);
    } finally {
      stop();
    }
  });
});
