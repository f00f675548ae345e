/**
 * Ways to use the cores for the int8 pipeline (int8 backbone + int8
 * matching, 60 templates, preset default, 256x256), measured in one run:
 *   - one multi-threaded pipeline (2 onnxruntime threads, the 2-thread
 *     kernel pool), `predictMany` with 1, 2, 3 images in flight;
 *   - N single-threaded pipelines in one process, `predictMany({ pipelines: N })`
 *     (the product's mode for many images: `hetmm predict --pipelines`);
 *   - P processes side by side, each with 1 onnxruntime thread and
 *     HETMM_THREADS=1, one image at a time each (the reference the
 *     pipelines should reach).
 * `node dist/bench/process-parallel.js [--reps R] [--rounds K] [--processes P] [--pipelines N,M] [--templates 60,209]`.
 * Every mode runs in a fresh child process, once per round; the rounds
 * rotate the order of the modes, so load from other jobs spreads over all
 * of them, and the table gives each mode's median over the rounds (img/s)
 * and its mean CPU per image. The children of a mode warm up, then start
 * their timed run together (a go line on stdin); img/s is all their images
 * over the time from that start to the last child's end. (The sum of each
 * process's own rate, the earlier figures' basis, is given beside it: it
 * overstates processes that do not finish together.) The store is the first 60 (or T) magnetic-tile
 * train/good images, fitted with an int8 backbone quantised on them (`hetmm
 * fit --precision int8`; float16 features above 60 templates, to bound the
 * store's size: the int8 matching quantises either the same way); the images are 24 test images (6 of each of the
 * first 4 classes), repeated R times; each child first warms up on 4 images
 * with the same options (for pipelines: the same pipeline threads then run
 * the timed images). RSS: the child's resident memory after its run. The
 * last two rows time the whole `hetmm predict --json` command in the child
 * (opening the store included, no warm-up), with one pipeline and with the
 * default `--pipelines auto`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { main as cliMain } from '../src/cli/main.js';
import { Detector } from '../src/detector/detector.js';
import { loadImagesFrom } from '../src/image/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tile = path.resolve(repoRoot, '../shared/datasets/magnetic-tile/magnetic_tile');
const images = (dir: string): Promise<string[]> => loadImagesFrom([dir]);

interface RunResult {
  readonly images: number;
  readonly ms: number;
  /** wall-clock ms (Date.now) at the start and end of the timed run */
  readonly start: number;
  readonly end: number;
  readonly cpuMs: number;
  readonly rssMiB: number;
}

/** One child's settings: onnxruntime + kernel-pool threads, images in flight, pipelines. */
interface ChildSpec {
  readonly threads: number;
  readonly concurrency: number;
  readonly pipelines: number;
  readonly reps: number;
  /** run `hetmm predict --json --pipelines <cli>` on the images instead (start-up included, no warm-up) */
  readonly cli?: string;
}

/** Tells the parent this child is ready and waits for its go (a line on stdin): all children of a mode start timing together. */
async function readyThenGo(): Promise<void> {
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  process.stdin.pause();
}

/** Child mode: predict the test images R times and print one JSON line. */
async function child(store: string, spec: ChildSpec): Promise<void> {
  const test = path.join(tile, 'test');
  const classes = readdirSync(test).filter((c) => c !== 'ground_truth').sort().slice(0, 4);
  const files = (await Promise.all(classes.map(async (c) => (await images(path.join(test, c))).slice(0, 6)))).flat();
  if (spec.cli !== undefined) {
    const list = Array.from({ length: spec.reps }, () => files).flat();
    const sink = new Writable({ write: (_chunk, _enc, done) => done() });
    await readyThenGo();
    const start = Date.now();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const code = await cliMain(['predict', '-t', store, ...list, '--json', '--quiet', '--pipelines', spec.cli], { stdout: sink, stderr: process.stderr });
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    if (code !== 0) throw new Error(`hetmm predict exited ${code}`);
    const result: RunResult = { images: list.length, ms, start, end: Date.now(), cpuMs: (cpu.user + cpu.system) / 1000, rssMiB: process.memoryUsage().rss / 2 ** 20 };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const detector = await Detector.open({ store, precision: 'int8', threads: spec.threads });
  const options = { concurrency: spec.concurrency, pipelines: spec.pipelines };
  for await (const r of detector.predictMany(files.slice(0, 4), options)) if (r.error) throw r.error;
  const list = Array.from({ length: spec.reps }, () => files).flat();
  await readyThenGo();
  const start = Date.now();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for await (const r of detector.predictMany(list, options)) if (r.error) throw r.error;
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const result: RunResult = { images: list.length, ms, start, end: Date.now(), cpuMs: (cpu.user + cpu.system) / 1000, rssMiB: process.memoryUsage().rss / 2 ** 20 };
  detector.dispose();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function runChildren(store: string, count: number, spec: ChildSpec): Promise<RunResult[]> {
  const script = fileURLToPath(import.meta.url);
  const children = Array.from({ length: count }, () =>
    spawn(process.execPath, [script, '--child', store, JSON.stringify(spec)], {
      env: { ...process.env, HETMM_THREADS: String(spec.threads) },
      stdio: ['pipe', 'pipe', 'inherit'],
    }),
  );
  let ready = 0;
  return Promise.all(
    children.map(
      (p) =>
        new Promise<RunResult>((resolve, reject) => {
          let out = '';
          p.stdout.on('data', (b: Buffer) => {
            out += b.toString();
            if (out.startsWith('ready\n')) {
              out = out.slice('ready\n'.length);
              // every child warmed up: start them together
              if (++ready === count) for (const c of children) c.stdin.write('go\n');
            }
          });
          p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as RunResult) : reject(new Error(`child exited ${code}`))));
        }),
    ),
  );
}

interface Mode {
  readonly name: string;
  readonly processes: number;
  readonly spec: ChildSpec;
}

const loadText = (): string => os.loadavg().map((l) => l.toFixed(2)).join(' ');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

async function main(): Promise<void> {
  const arg = (name: string, fallback: string): string => {
    const i = process.argv.indexOf(name);
    return i < 0 ? fallback : process.argv[i + 1]!;
  };
  const reps = Number(arg('--reps', '4'));
  const rounds = Number(arg('--rounds', '2'));
  const processes = Number(arg('--processes', '2'));
  const pipelineCounts = arg('--pipelines', '2').split(',').map(Number);
  const cores = os.availableParallelism();
  const modes: Mode[] = [
    ...[1, 2, 3].map((c) => ({ name: `one multi-threaded pipeline, ${c} in flight`, processes: 1, spec: { threads: cores, concurrency: c, pipelines: 1, reps } })),
    ...pipelineCounts.map((n) => ({
      name: `**${n} single-threaded pipelines, one process** (\`predictMany({ pipelines: ${n} })\`)`,
      processes: 1,
      spec: { threads: cores, concurrency: 1, pipelines: n, reps },
    })),
    { name: `${processes} processes side by side, 1 thread each (reference)`, processes, spec: { threads: 1, concurrency: 1, pipelines: 1, reps } },
    ...['1', 'auto'].map((cli) => ({
      name: `\`hetmm predict --pipelines ${cli}\` (whole command: store load, start-up)`,
      processes: 1,
      spec: { threads: cores, concurrency: 2, pipelines: 1, reps, cli },
    })),
  ];
  const templateCounts = arg('--templates', '60').split(',').map(Number);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hetmm-process-parallel-'));
  try {
    console.log(`${new Date().toISOString()} load average ${loadText()}, ${cores} cores, ${rounds} rounds of ${reps * 24} images per mode`);
    console.log('| templates | mode | img/s (median; each round) | img/s, sum of per-process rates (median) | CPU ms/img | RSS MiB (per process) |');
    console.log('|---:|---|---:|---:|---:|---:|');
    for (const templates of templateCounts) {
      const store = path.join(dir, `mt${templates}.hetmm`);
      const train = (await images(path.join(tile, 'train', 'good'))).slice(0, templates);
      const dtype = templates > 60 ? ['--dtype', 'float16'] : [];
      execFileSync(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'fit', ...train, '-o', store, '--precision', 'int8', '--preset', 'default', '--no-calibrate', ...dtype], { stdio: 'ignore' });
      const results = new Map<Mode, RunResult[][]>(modes.map((m) => [m, []]));
      for (let round = 0; round < rounds; round++) {
        for (let k = 0; k < modes.length; k++) {
          const mode = modes[(k + round) % modes.length]!;
          results.get(mode)!.push(await runChildren(store, mode.processes, mode.spec));
        }
        console.error(`${templates} templates: round ${round + 1} done, load average ${loadText()}`);
      }
      for (const mode of modes) {
        const runs = results.get(mode)!;
        // all images over the time from the common start to the last child's end (summing each
        // process's own rate, as earlier figures did, overstates processes that finish at different times)
        const rates = runs.map((rs) => (rs.reduce((s, r) => s + r.images, 0) * 1000) / (Math.max(...rs.map((r) => r.end)) - Math.min(...rs.map((r) => r.start))));
        const summed = runs.map((rs) => rs.reduce((s, r) => s + (r.images / r.ms) * 1000, 0));
        const cpu = runs.flat().reduce((s, r) => s + r.cpuMs, 0) / runs.flat().reduce((s, r) => s + r.images, 0);
        const rss = Math.max(...runs.flat().map((r) => r.rssMiB));
        console.log(`| ${templates} | ${mode.name} | ${median(rates).toFixed(2)} (${rates.map((r) => r.toFixed(2)).join(' / ')}) | ${median(summed).toFixed(2)} | ${cpu.toFixed(1)} | ${rss.toFixed(0)} |`);
      }
      rmSync(store, { force: true });
    }
    console.log(`${new Date().toISOString()} load average ${loadText()}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  await child(process.argv[3]!, JSON.parse(process.argv[4]!) as ChildSpec);
} else {
  await main();
}
