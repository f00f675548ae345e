/**
 * kill -9 during `hetmm fit` over an existing line, N times (issue 18's
 * done-when): after every kill the line is the old one, byte for byte, or a
 * complete new one. Usage: node dist/bench/fit-kill-loop.js [--kills 20]
 * [--minutes 30]. Refits from the 5 bottles of ../shared and from 4 of them
 * in turn (a fit takes seconds) in a temp folder; exits 1 if any kill left
 * anything else.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { bottleImageSets, fitKillLoop } from '../test/helpers/fit-kill-loop.js';
import { datasetsDir, tempDir } from '../test/helpers/io-paths.js';

const { values } = parseArgs({ options: { kills: { type: 'string', default: '20' }, minutes: { type: 'string', default: '30' }, seed: { type: 'string', default: '18' } } });
const dir = path.join(tempDir('fit-kill-loop'), 'line');
mkdirSync(dir, { recursive: true });
const result = await fitKillLoop({
  store: path.join(dir, 'line.hetmm'),
  imageSets: bottleImageSets(path.join(datasetsDir, 'mvtec-bottle-xs/bottle/train/good'), path.dirname(dir)),
  kills: Number(values.kills),
  deadlineMs: Number(values.minutes) * 60_000,
  seed: Number(values.seed),
  log: (line) => console.log(line),
});
console.log(
  `${result.kills} kills: ${result.old} left the old line unchanged, ${result.complete} a complete new line; ${result.finished} fits finished before their kill; ` +
    `${result.broken.length} anything else${result.broken.length === 0 ? '' : ` (${result.broken.join('; ')})`}; ` +
    `leftovers after the last fit: ${result.leftovers.length === 0 ? 'none' : result.leftovers.join(', ')}`,
);
process.exitCode = result.broken.length === 0 && result.leftovers.length === 0 && result.kills === Number(values.kills) ? 0 : 1;
