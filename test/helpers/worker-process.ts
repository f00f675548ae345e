/** `hetmm worker` as a child process (tests and the queue bench): started, watched through its --log-jobs lines, stopped. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { defaultModelPath, repoRoot } from './io-paths.js';

export interface WorkerProcess {
  readonly child: ChildProcess;
  /** stderr lines so far */
  readonly log: string[];
  /** the worker's id, from its "ready" line */
  readonly id: string;
  /** resolves with the exit code (null when killed by a signal) */
  readonly exited: Promise<number | null>;
}

export async function startWorker(
  redisUrl: string,
  dataDir: string,
  options: { args?: readonly string[]; env?: NodeJS.ProcessEnv; readyTimeoutMs?: number } = {},
): Promise<WorkerProcess> {
  const child = spawn(
    process.execPath,
    [path.join(repoRoot, 'dist/src/cli/main.js'), 'worker', '--redis', redisUrl, '--data-dir', dataDir, '--model', defaultModelPath, '--log-jobs', ...(options.args ?? [])],
    { env: { ...process.env, ...options.env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const log: string[] = [];
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let buffered = '';
  child.stderr!.on('data', (d: Buffer) => {
    buffered += d.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    log.push(...lines);
  });
  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  for (;;) {
    const ready = log.find((l) => / ready: /.test(l));
    if (ready !== undefined) return { child, log, exited, id: /worker (\S+) ready/.exec(ready)![1]! };
    if (child.exitCode !== null) throw new Error(`worker exited with ${child.exitCode}:\n${log.join('\n')}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`worker not ready in time:\n${log.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
