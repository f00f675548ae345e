/**
 * Issue 18, part A: a line is one unit. The findings of the adversarial
 * probe about int8 sidecar files (1, 2, 5) and the CLI's exit codes and
 * errors (10, 11, 13), each reproduced through the CLI or the server as
 * users met them. Real model, the 5 MVTec bottles (a fit takes seconds).
 * A full disk and a read-only folder are small tmpfs mounts (Linux, root).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli } from './helpers/cli.js';
import { datasetsDir, defaultModelPath, listImages, repoRoot, tempDir } from './helpers/io-paths.js';
import { bottleImageSets, fitKillLoop } from './helpers/fit-kill-loop.js';
import { auth, spawnServe, startServer, TEST_TOKEN } from './helpers/server.js';

const tmp = tempDir('line-unit');
const bottle = path.join(datasetsDir, 'mvtec-bottle-xs/bottle');
const trainDir = path.join(bottle, 'train/good');
const broken = listImages(path.join(bottle, 'test/broken_large'))[0]!;
/** an int8 store as `hetmm fit` writes it by default */
const base = path.join(tmp, 'base', 'line.hetmm');
const cliMain = path.join(repoRoot, 'dist/src/cli/main.js');

/** `dir` and the files in it, recursively, with their bytes: what must not change. */
function snapshotDir(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.set(path.relative(dir, path.join(entry.parentPath, entry.name)), readFileSync(path.join(entry.parentPath, entry.name)));
  }
  return out;
}

function assertSameDir(before: Map<string, Buffer>, dir: string): void {
  const now = snapshotDir(dir);
  assert.deepEqual([...now.keys()].sort(), [...before.keys()].sort(), 'the same files, no more, no less');
  for (const [f, bytes] of before) assert.ok(now.get(f)!.equals(bytes), `${f} unchanged`);
}

/**
 * A line's deployment elsewhere: the store copied into `dir` as users do
 * (`cp line.hetmm dir/name`), with whatever lies beside it (before format
 * version 3: the int8 sidecar files, which kept their names).
 */
function copyLine(dir: string, name = 'line.hetmm'): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(base, path.join(dir, name));
  for (const f of readdirSync(path.dirname(base))) if (f !== path.basename(base)) copyFileSync(path.join(path.dirname(base), f), path.join(dir, f));
  return path.join(dir, name);
}

const isRoot = process.getuid?.() === 0;
const needsRoot = isRoot ? false : 'a full disk and a read-only folder are tmpfs mounts: needs root (Linux)';

/** A tmpfs of `mib` MiB mounted at a new folder (read-only with `readOnly`); unmounted by the caller. */
function mountTmpfs(name: string, mib: number, readOnly = false): { dir: string; unmount: () => void } {
  const dir = path.join(tmp, name);
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m${readOnly ? ',ro' : ''}`, 'tmpfs', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, `mount: ${r.stderr}`);
  return { dir, unmount: () => void spawnSync('umount', [dir]) };
}

/** A command writing the store `name` onto a 4 MiB disk: exit 5 naming it (ENOSPC), and nothing left on the disk. */
async function writeOntoFullDisk(mount: string, name: string, argv: (output: string) => string[]): Promise<void> {
  const disk = mountTmpfs(mount, 4);
  try {
    const r = await runCli(...argv(path.join(disk.dir, name)));
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, new RegExp(`could not write template store .*${name.replace('.', '\\.')}.*ENOSPC`));
    assert.deepEqual(readdirSync(disk.dir), []);
  } finally {
    disk.unmount();
  }
}

before(async () => {
  mkdirSync(path.dirname(base), { recursive: true });
  const r = await runCli('fit', trainDir, '-o', base, '--quiet', '--preset', 'bottle');
  assert.equal(r.code, 0, r.stderr);
});

describe('finding 1: a failed refit never bricks the existing line', () => {
  test('fit --fail-fast over an existing store with a bad input: exit 3, nothing written, the old line loads and is unchanged', async () => {
    const dir = path.join(tmp, 'refit');
    const line = copyLine(dir);
    const bad = path.join(tmp, 'bad.png');
    writeFileSync(bad, 'not an image');
    const before = snapshotDir(dir);
    const r = await runCli('fit', trainDir, bad, '--fail-fast', '-o', line, '--quiet');
    assert.equal(r.code, 3, r.stderr);
    assertSameDir(before, dir);
    const info = await runCli('info', line);
    assert.equal(info.code, 0, info.stderr);
    const p = await runCli('predict', '-t', line, broken, '--quiet');
    assert.equal(p.code, 0, p.stderr);
  });

  test('refit onto a full disk: exit 5 naming the store, the old line unchanged and loadable, no partial files', { skip: needsRoot }, async () => {
    const size = readFileSync(base).length;
    // room for the old store and less than half of a new one
    const disk = mountTmpfs('full-refit', Math.ceil((size * 1.4) / 2 ** 20));
    try {
      const line = copyLine(disk.dir);
      const before = snapshotDir(disk.dir);
      const r = await runCli('fit', trainDir, '-o', line, '--preset', 'bottle', '--quiet');
      assert.equal(r.code, 5, r.stderr);
      assert.match(r.stderr, /could not write template store .*line\.hetmm.*ENOSPC.*untouched/);
      assertSameDir(before, disk.dir);
      assert.equal((await runCli('info', line)).code, 0);
    } finally {
      disk.unmount();
    }
  });
});

test('finding 2: deleting a line over HTTP never deletes another line\'s model (two copies of one store in a data dir)', async () => {
  const dataDir = path.join(tmp, 'data');
  copyLine(dataDir, 'bottle.hetmm');
  copyFileSync(path.join(dataDir, 'bottle.hetmm'), path.join(dataDir, 'copy.hetmm'));
  const bottleBefore = readFileSync(path.join(dataDir, 'bottle.hetmm'));
  let server = await startServer({ dataDir, token: TEST_TOKEN });
  let score: number;
  try {
    assert.equal((await fetch(`${server.base}/v1/lines/copy`, { method: 'DELETE', headers: auth })).status, 204);
    const r = await fetch(`${server.base}/v1/lines/bottle/predict?maps=none`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(readFileSync(broken)) });
    assert.equal(r.status, 200, await r.clone().text());
    score = ((await r.json()) as { score: number }).score;
  } finally {
    await server.close();
  }
  assert.ok(readFileSync(path.join(dataDir, 'bottle.hetmm')).equals(bottleBefore));
  // after a restart the remaining line still serves, with the same model
  server = await startServer({ dataDir, token: TEST_TOKEN });
  try {
    const lines = (await (await fetch(`${server.base}/v1/lines`)).json()) as { lines: Array<{ name: string }> };
    assert.deepEqual(lines.lines.map((l) => l.name), ['bottle']);
    const r = await fetch(`${server.base}/v1/lines/bottle/predict?maps=none`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(readFileSync(broken)) });
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal(((await r.json()) as { score: number }).score, score);
  } finally {
    await server.close();
  }
});

test('finding 5: a store reached through a symlink in another directory finds its model', async () => {
  const links = path.join(tmp, 'links');
  mkdirSync(links, { recursive: true });
  const link = path.join(links, 'linked.hetmm');
  symlinkSync(base, link);
  for (const argv of [['info', link], ['predict', '-t', link, broken, '--quiet']]) {
    const r = await runCli(...argv);
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
  }
});

/** `hetmm ARGS 2>&1 | head -1` in bash; returns hetmm's own exit code (PIPESTATUS). */
function pipedToHead(args: string[]): Promise<{ code: number; line: string }> {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `'${process.execPath}' '${cliMain}' ${quoted} 2>&1 | head -1; echo "exit=\${PIPESTATUS[0]}"`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.once('error', reject);
    child.once('exit', () => {
      const m = /exit=(\d+)/.exec(out);
      if (m === null) reject(new Error(`no exit code in ${JSON.stringify(out)}`));
      else resolve({ code: Number(m[1]), line: out.split('\n')[0]! });
    });
  });
}

test('finding 10: `predict ... 2>&1 | head -1` exits with the closed-pipe code every time (stderr EPIPE handled like stdout\'s)', async () => {
  // 40 bad inputs: the first error line closes the pipe (head -1), the next error lines hit it on stderr
  const bad = Array.from({ length: 40 }, (_, i) => path.join(tmp, `bad10-${i}.png`));
  for (const f of bad) writeFileSync(f, 'not an image');
  const inputs = [...bad, broken];
  const codes: number[] = [];
  for (let run = 0; run < 4; run++) {
    const r = await pipedToHead(['predict', '-t', base, ...inputs, '--pipelines', '1']);
    assert.match(r.line, /bad10-0\.png/);
    codes.push(r.code);
  }
  assert.deepEqual(codes, [141, 141, 141, 141]);
});

describe('finding 11: compress and serve exit codes', () => {
  test('compress -o into a read-only folder: exit 5 naming it, before any work, no files left', { skip: needsRoot }, async () => {
    const ro = mountTmpfs('read-only', 1, true);
    try {
      const r = await runCli('compress', '-t', base, '--size', '2', '-o', path.join(ro.dir, 'small.hetmm'), '--quiet');
      assert.equal(r.code, 5, r.stderr);
      assert.match(r.stderr, /^hetmm compress: error: cannot write template store .*small\.hetmm.*not writable \(EROFS\)\n$/);
      assert.deepEqual(readdirSync(ro.dir), []);
    } finally {
      ro.unmount();
    }
  });

  test('compress -o onto a full disk: exit 5 naming the store, no orphan files', { skip: needsRoot }, async () => {
    await writeOntoFullDisk('full-compress', 'small.hetmm', (out) => ['compress', '-t', base, '--size', '2', '-o', out, '--quiet']);
  });

  test('serve --store a/bottle.hetmm --store b/bottle.hetmm, and a store name with a space: exit 2 with a clear message', async () => {
    const a = copyLine(path.join(tmp, 'a'), 'bottle.hetmm');
    const b = copyLine(path.join(tmp, 'b'), 'bottle.hetmm');
    const spaced = copyLine(path.join(tmp, 'spaced'), 'bad name.hetmm');
    const twice = await runCli('serve', '--store', a, '--store', b, '--port', '0');
    assert.equal(twice.code, 2, twice.stderr);
    assert.match(twice.stderr, /^hetmm serve: error: --store '.*a\/bottle\.hetmm' and --store '.*b\/bottle\.hetmm' would both serve line 'bottle': rename one file\n$/);
    const space = await runCli('serve', '--store', spaced, '--port', '0');
    assert.equal(space.code, 2, space.stderr);
    assert.match(space.stderr, /^hetmm serve: error: --store '.*bad name\.hetmm' cannot name a line: invalid line name "bad name"/);
  });
});

describe('finding 13: output paths, full disks, file names and restarts', () => {
  test('fit -o missing_dir/x.hetmm fails at once (exit 5, naming the folder), before quantising', async () => {
    const r = await runCli('fit', trainDir, '-o', path.join(tmp, 'missing_dir', 'x.hetmm'));
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /^hetmm fit: error: cannot write template store .*x\.hetmm': the directory '.*missing_dir' does not exist\n$/);
  });

  test('fit onto a full disk: exit 5, no partial files (no model file, no temp store)', { skip: needsRoot }, async () => {
    // 4 MiB: smaller than the int8 model (~9 MB) that fit used to write beside the store
    await writeOntoFullDisk('full-fit', 'new.hetmm', (out) => ['fit', trainDir, '-o', out, '--preset', 'bottle', '--quiet']);
  });

  test('predict escapes file names on stdout: a newline or a terminal escape in a name stays one escaped line', async () => {
    const dir = path.join(tmp, 'names');
    mkdirSync(dir, { recursive: true });
    const odd = [path.join(dir, 'two\nlines.png'), path.join(dir, 'red\u001b[31m.png')];
    for (const f of odd) copyFileSync(broken, f);
    const r = await runCli('predict', '-t', base, ...odd, '--quiet', '--pipelines', '1');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2, r.stdout);
    assert.ok(lines[0]!.includes('two\\nlines.png  score'), lines[0]);
    assert.ok(lines[1]!.includes('red\\u001b[31m.png  score'), lines[1]);
    assert.ok(!r.stdout.includes('\u001b'), 'no raw escape on stdout');
  });

  test('serve --data-dir reports a store no line can serve (bad name.hetmm) instead of skipping it silently', async () => {
    const dataDir = path.join(tmp, 'data13');
    copyLine(dataDir, 'good.hetmm');
    copyLine(dataDir, 'bad name.hetmm');
    const serve = await spawnServe(['--data-dir', dataDir]);
    try {
      assert.match(serve.stderr(), /hetmm serve: warning: '.*bad name\.hetmm' is not served: invalid line name "bad name"/);
      assert.match(serve.stderr(), /lines: good \(5 templates\)/);
    } finally {
      serve.child.kill('SIGTERM');
      await new Promise((resolve) => serve.child.once('exit', resolve));
    }
  });

  test('after a restart, an old prediction id\'s 404 says predictions do not survive a restart', async () => {
    const dataDir = path.join(tmp, 'data404');
    copyLine(dataDir, 'good.hetmm');
    let server = await startServer({ dataDir, token: TEST_TOKEN, model: defaultModelPath });
    let id: string;
    try {
      const r = await fetch(`${server.base}/v1/lines/good/predict?maps=none`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(readFileSync(broken)) });
      id = ((await r.json()) as { id: string }).id;
      assert.equal((await fetch(`${server.base}/v1/predictions/${id}`)).status, 200);
    } finally {
      await server.close();
    }
    server = await startServer({ dataDir, token: TEST_TOKEN });
    try {
      const r = await fetch(`${server.base}/v1/predictions/${id}`);
      assert.equal(r.status, 404);
      const { error } = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, 'E_NOT_FOUND');
      assert.match(error.message, /do not survive a restart/);
    } finally {
      await server.close();
    }
  });
});

after(() => {
  // a mount left by a failed assertion must not outlive the run (tempDir's cleanup cannot remove a mount point)
  if (isRoot) for (const name of ['full-refit', 'read-only', 'full-compress', 'full-fit']) spawnSync('umount', [path.join(tmp, name)]);
  rmSync(path.join(tmp, 'links'), { recursive: true, force: true });
});

test('kill -9 at random moments during a refit over an existing line: the old line unchanged, or a complete new one (bench/fit-kill-loop.js --kills 20 runs more)', async () => {
  const dir = path.join(tmp, 'kill-loop');
  mkdirSync(dir, { recursive: true });
  // two kills: after quantising, and during the save (about 6 fits of a few seconds each on a quiet machine);
  // the refits alternate between 5 and 4 of the bottles, so each quantises another model than the line's
  const result = await fitKillLoop({ store: path.join(dir, 'line.hetmm'), imageSets: bottleImageSets(trainDir, tmp), kills: 2, deadlineMs: 600_000 });
  assert.equal(result.kills, 2, 'bounded by its deadline: fewer kills than asked');
  assert.deepEqual(result.broken, []);
  assert.equal(result.old + result.complete, 2);
  assert.deepEqual(result.leftovers, [], 'the next writer removed the killed fits\' temp files');
});
