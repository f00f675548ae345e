/**
 * Two ways to use 2 cores for the int8 pipeline (int8 backbone + int8
 * matching, 60 templates, preset default, 256x256), measured in one run:
 *   - one process, 2 onnxruntime threads and 2 kernel-pool threads,
 *     `predictMany` with 2 images in flight (what hetmm does today);
 *   - P processes side by side, each with 1 onnxruntime thread and
 *     HETMM_THREADS=1, each predicting one image at a time (no barriers
 *     between threads, no oversubscription).
 * `node dist/bench/process-parallel.js [--reps R] [--processes P]`.
 * The store is the first 60 magnetic-tile train/good images, fitted with an
 * int8 backbone quantised on them (`fitStore`'s int8 path via the CLI's
 * defaults); images are 24 test images (6 of each of the first 4 classes),
 * repeated R times; each process warms up on 4 images first.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Detector } from '../src/detector/detector.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tile = path.resolve(repoRoot, '../shared/datasets/magnetic-tile/magnetic_tile');
const images = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => /\.(jpe?g|png|bmp)$/i.test(f))
    .sort()
    .map((f) => path.join(dir, f));

interface RunResult {
  readonly images: number;
  readonly ms: number;
  readonly cpuMsPerImage: number;
}

/** Child mode: predict the test images R times with the given thread counts and print one JSON line. */
async function child(store: string, threads: number, concurrency: number, reps: number): Promise<void> {
  const test = path.join(tile, 'test');
  const classes = readdirSync(test).filter((c) => c !== 'ground_truth').sort().slice(0, 4);
  const files = classes.flatMap((c) => images(path.join(test, c)).slice(0, 6));
  const detector = await Detector.open({ store, precision: 'int8', threads });
  for await (const r of detector.predictMany(files.slice(0, 4), { concurrency })) if (r.error) throw r.error;
  const list = Array.from({ length: reps }, () => files).flat();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for await (const r of detector.predictMany(list, { concurrency })) if (r.error) throw r.error;
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const result: RunResult = { images: list.length, ms, cpuMsPerImage: (cpu.user + cpu.system) / 1000 / list.length };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function runChildren(store: string, count: number, threads: number, concurrency: number, reps: number): Promise<RunResult[]> {
  const script = fileURLToPath(import.meta.url);
  return Promise.all(
    Array.from({ length: count }, () =>
      new Promise<RunResult>((resolve, reject) => {
        const p = spawn(process.execPath, [script, '--child', store, String(threads), String(concurrency), String(reps)], {
          env: { ...process.env, HETMM_THREADS: String(threads) },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        p.stdout.on('data', (b: Buffer) => (out += b.toString()));
        p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as RunResult) : reject(new Error(`child exited ${code}`))));
      }),
    ),
  );
}

async function main(): Promise<void> {
  const arg = (name: string, fallback: number): number => {
    const i = process.argv.indexOf(name);
    return i < 0 ? fallback : Number(process.argv[i + 1]);
  };
  const reps = arg('--reps', 4);
  const processes = arg('--processes', 2);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hetmm-process-parallel-'));
  try {
    const store = path.join(dir, 'mt60.hetmm');
    const train = images(path.join(tile, 'train', 'good')).slice(0, 60);
    execFileSync(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'fit', ...train, '-o', store, '--precision', 'int8', '--no-calibrate'], { stdio: 'ignore' });
    console.log(`load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    console.log('| mode | processes | threads each | img/s (all processes) | CPU ms/img |');
    console.log('|---|---:|---:|---:|---:|');
    const row = (mode: string, n: number, threads: number, rs: RunResult[]): void => {
      const rate = rs.reduce((s, r) => s + (r.images / r.ms) * 1000, 0);
      const cpu = rs.reduce((s, r) => s + r.cpuMsPerImage, 0) / rs.length;
      console.log(`| ${mode} | ${n} | ${threads} | ${rate.toFixed(2)} | ${cpu.toFixed(1)} |`);
    };
    row('one process, predictMany 2 in flight', 1, 2, await runChildren(store, 1, 2, 2, reps));
    row('one process, one image at a time', 1, 1, await runChildren(store, 1, 1, 1, reps));
    row('processes side by side, one image at a time each', processes, 1, await runChildren(store, processes, 1, 1, reps));
    console.log(`load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  await child(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6]));
} else {
  await main();
}
