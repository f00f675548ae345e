/**
 * The done-when of issue 18's item 1: kill -9 `hetmm fit` at random moments
 * while it refits over an existing line, and check after every kill that the
 * line is either the old one, byte for byte (the store and any file beside
 * it but the writers' temp and lock files), or a complete new one (a
 * detector opens it: every checksum, its int8 model; all the images and a
 * threshold). Used by test/line-unit.test.ts (a few kills) and
 * bench/fit-kill-loop.ts (`--kills 20`). Bounded: a deadline stops it.
 *
 * The kills take turns between three kinds of moment, each at a random
 * delay: after the quantiser's note (the int8 model exists; features and
 * calibration run), after the new store's temp file appears (the save), and
 * any time in the fit (scaled by the last complete fit's duration).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Detector } from '../../src/detector/detector.js';
import { repoRoot } from './io-paths.js';

export interface FitKillLoopOptions {
  /** the line: an existing store, refitted again and again */
  readonly store: string;
  /**
   * folders of normal images, used in turn (refits from other images than
   * the line on disk quantise another model: a kill between writing the
   * model and the store then shows), each with its image count
   */
  readonly imageSets: ReadonlyArray<{ readonly dir: string; readonly count: number }>;
  readonly kills: number;
  /** stop (and report fewer kills) after this long */
  readonly deadlineMs: number;
  /** deterministic kill moments */
  readonly seed?: number;
  readonly log?: (line: string) => void;
}

export interface FitKillLoopResult {
  readonly kills: number;
  /** kills after which the old line was still there, byte for byte */
  readonly old: number;
  /** kills after which a complete new line was there */
  readonly complete: number;
  /** fits that finished before their kill moment (not counted as kills; each left a complete new line or is in `broken`) */
  readonly finished: number;
  /** one entry per kill that left anything else (must stay empty) */
  readonly broken: string[];
  /** the last completed fit's duration, the scale of the kill moments (ms) */
  readonly fitMs: number;
  /** temp and lock files in the store's folder after the loop's last, completed fit (those of killed fits are removed by the next writer) */
  readonly leftovers: string[];
}

const cli = path.join(repoRoot, 'dist/src/cli/main.js');

/** The line's bytes: the store and what lies beside it, except writers' temp and lock files (garbage the next writer removes). */
function lineDigest(store: string): string {
  const dir = path.dirname(store);
  const hash = createHash('sha256');
  for (const name of readdirSync(dir).sort()) {
    if (/\.(tmp-|lock)/.test(name)) continue;
    hash.update(name).update(readFileSync(path.join(dir, name)));
  }
  return hash.digest('hex');
}

/** When to kill: `ms` after the start, or `ms` after fit's int8 note, or `ms` after the new store's temp file appears. */
type KillMoment = { readonly after: 'start' | 'quantised' | 'saving'; readonly ms: number };

/** Runs one `hetmm fit` over the store; SIGKILL at `kill` (undefined: let it finish). Resolves with its exit code or signal. */
function fitOnce(o: FitKillLoopOptions, images: string, kill: KillMoment | undefined): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [cli, 'fit', images, '-o', o.store, '--preset', 'bottle', '--calibrate', '2'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let armed: NodeJS.Timeout | undefined;
  const arm = (): void => {
    armed ??= setTimeout(() => child.kill('SIGKILL'), kill!.ms);
  };
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
    if (kill?.after === 'quantised' && /^int8 backbone /m.test(stderr)) arm();
  });
  if (kill?.after === 'start') arm();
  const temp = `${path.basename(o.store)}.tmp-`;
  const poll =
    kill?.after === 'saving'
      ? setInterval(() => {
          if (readdirSync(path.dirname(o.store)).some((f) => f.startsWith(temp))) arm();
        }, 5)
      : undefined;
  const guard = setTimeout(() => child.kill('SIGKILL'), 300_000);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(armed);
      clearInterval(poll);
      clearTimeout(guard);
      if (code !== null && code !== 0) reject(new Error(`hetmm fit exited ${code}: ${stderr}`));
      else resolve({ code, signal, ms: performance.now() - t0 });
    });
  });
}

/** Why the store at `file` is not a complete, openable fit of `count` images, or undefined when it is. */
async function incomplete(file: string, count: number): Promise<string | undefined> {
  try {
    const detector = await Detector.open({ store: file });
    try {
      if (detector.store.count !== count) return `${detector.store.count} templates, expected ${count}`;
      if (detector.store.identity.name !== 'resnet50v2-imagenet-l123-int8') return `backbone ${detector.store.identity.name}, expected the int8 one`;
      if (detector.store.meta.threshold === undefined) return 'no threshold';
      return undefined;
    } finally {
      detector.dispose();
    }
  } catch (e) {
    return (e as Error).message;
  }
}

/** The 5 bottles and 4 of them (copied into `tmp`): the two image sets the loop alternates. */
export function bottleImageSets(trainDir: string, tmp: string): Array<{ dir: string; count: number }> {
  const four = path.join(tmp, 'four-bottles');
  mkdirSync(four, { recursive: true });
  for (const f of readdirSync(trainDir).sort().slice(0, 4)) copyFileSync(path.join(trainDir, f), path.join(four, f));
  return [
    { dir: trainDir, count: 5 },
    { dir: four, count: 4 },
  ];
}

export async function fitKillLoop(o: FitKillLoopOptions): Promise<FitKillLoopResult> {
  const log = o.log ?? (() => {});
  const deadline = performance.now() + o.deadlineMs;
  let seed = o.seed ?? 18;
  const random = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  // a completed fit first: the line exists, and its duration scales the kill moments
  let fits = 0;
  const nextImages = (): { dir: string; count: number } => o.imageSets[fits++ % o.imageSets.length]!;
  let fitMs = (await fitOnce(o, nextImages().dir, undefined)).ms;
  log(`a complete fit took ${(fitMs / 1000).toFixed(1)} s`);
  let kills = 0;
  let old = 0;
  let complete = 0;
  let finished = 0;
  const broken: string[] = [];
  while (kills < o.kills && performance.now() < deadline) {
    const before = lineDigest(o.store);
    // the two moments the sidecar files made fatal first (a kill after quantising, during the save), then any time
    const kinds = ['quantised', 'saving', 'start'] as const;
    const after = kinds[(kills + finished) % kinds.length]!;
    // any time in the fit; up to 2 s into the features and calibration; up to 400 ms into the save (temp file, fsync, rename)
    const span = after === 'start' ? fitMs : after === 'quantised' ? 2000 : 400;
    const at: KillMoment = { after, ms: Math.round(random() * span) };
    const images = nextImages();
    const run = await fitOnce(o, images.dir, at);
    const when = `${at.ms} ms after ${after === 'start' ? 'the start' : after === 'quantised' ? 'quantising' : 'the save began'}`;
    const what = run.signal === 'SIGKILL' ? `kill ${++kills} at ${when}` : `a fit that finished before its kill at ${when}`;
    if (run.signal !== 'SIGKILL') {
      finished++;
      fitMs = run.ms; // the machine's pace now
    }
    if (lineDigest(o.store) === before) {
      if (run.signal === 'SIGKILL') old++;
      else broken.push(`${what}: the line did not change`);
      log(`${what}: the old line, unchanged`);
      continue;
    }
    const why = await incomplete(o.store, images.count);
    if (why === undefined) {
      if (run.signal === 'SIGKILL') complete++;
      log(`${what}: a complete new line`);
    } else {
      broken.push(`${what}: ${why}`);
      log(`${what}: BROKEN: ${why}`);
    }
  }
  // a last, completed fit removes the temp files of the killed ones
  await fitOnce(o, nextImages().dir, undefined);
  const leftovers = readdirSync(path.dirname(o.store)).filter((f) => /\.(tmp-|lock)/.test(f));
  return { kills, old, complete, finished, broken, fitMs, leftovers };
}
