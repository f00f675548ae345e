/**
 * The record's crash test (issue 21, done-when): a child process adds
 * inspections in a loop and prints each acknowledged id; it is killed with
 * SIGKILL mid-stream; every id it printed must be in the record, with its
 * files, when the record is opened again.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { InspectionRecord } from '../../src/record/index.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'record-kill-child.js');

/** Runs the child until it acknowledged `atLeast` ids (or `maxMs` passed), kills it, returns the acknowledged ids. */
export async function addUntilKilled(args: readonly string[], atLeast: number, maxMs = 20_000): Promise<string[]> {
  const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ids: string[] = [];
  let buffered = '';
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, maxMs);
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const l of lines) if (l !== 'ready') ids.push(l);
      if (ids.length >= atLeast) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`the child exited by itself (${code})`)));
  });
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  // what was in the pipe when it died was acknowledged too
  for (const l of buffered.split('\n')) if (/^[A-Za-z0-9_-]{12}$/.test(l)) ids.push(l);
  return ids;
}

export async function assertAllThere(record: InspectionRecord, ids: readonly string[]): Promise<void> {
  const missing: string[] = [];
  for (const id of ids) {
    const got = await record.get(id);
    if (got === undefined || (await record.readFile(got, 'image')) === undefined || (await record.readFile(got, 'heatmap')) === undefined) missing.push(id);
  }
  assert.deepEqual(missing, [], `${missing.length} of ${ids.length} acknowledged inspections lost`);
}
