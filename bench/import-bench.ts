/**
 * How long `import('hetmm')` takes in a fresh process (`npm run bench:import`),
 * next to what the root would cost if it loaded onnxruntime-node and sharp
 * eagerly. Each sample is a new `node` process timing only its dynamic
 * import (not Node's own start-up); median and 90th percentile of --runs N
 * (default 15). The target (issue 9) is a median under 100 ms.
 */
import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const runsFlag = process.argv.indexOf('--runs');
const runs = runsFlag >= 0 ? Number(process.argv[runsFlag + 1]) : 15;
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${process.argv[runsFlag + 1]}`);

async function importMs(specifiers: string[]): Promise<number> {
  const script = `const t0 = performance.now(); for (const s of ${JSON.stringify(specifiers)}) await import(s); console.log(performance.now() - t0);`;
  const { stdout } = await exec(process.execPath, ['--input-type=module', '-e', script], { cwd: repoRoot });
  return Number(stdout.trim());
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

const cases: Array<[string, string[]]> = [
  ["import('hetmm')", ['hetmm']],
  ["import('hetmm') + onnxruntime-node + sharp (what an eager root would cost)", ['hetmm', 'onnxruntime-node', 'sharp']],
];
console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const results: number[] = [];
for (const [label, specifiers] of cases) {
  const samples: number[] = [];
  // alternate-free: one case at a time, sequential processes
  for (let i = 0; i < runs; i++) samples.push(await importMs(specifiers));
  const median = quantile(samples, 0.5);
  results.push(median);
  console.log(`${label}: median ${median.toFixed(1)} ms, p90 ${quantile(samples, 0.9).toFixed(1)} ms over ${runs} processes`);
}
console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log(results[0]! < 100 ? 'OK: import(\'hetmm\') median under 100 ms' : 'OVER: import(\'hetmm\') median is 100 ms or more');
process.exitCode = results[0]! < 100 ? 0 : 1;
