/**
 * The child of the record crash test: opens a record (argv[2]: a SQLite
 * directory, or a postgres:// URL with argv[3] the files directory), then
 * adds inspections with an image and a heat map in a loop, printing each
 * id on its own line only after add() resolved (acknowledged). It runs
 * until killed.
 */
import { openPostgresRecord, openSqliteRecord } from '../../src/record/index.js';

const [target, filesDir, synchronous] = process.argv.slice(2) as [string, string | undefined, string | undefined];
const record = target.startsWith('postgres://')
  ? await openPostgresRecord(target, { filesDir: filesDir!, retentionIntervalMs: 0 })
  : await openSqliteRecord(target, { retentionIntervalMs: 0, synchronous: synchronous === 'full' ? 'full' : 'normal' });
const image = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47]), Buffer.alloc(20_000, 1)]);
const heatmap = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47]), Buffer.alloc(5_000, 2)]);
process.stdout.write('ready\n');
for (let i = 0; ; i++) {
  const id = await record.add({ line: 'bottle', score: i, verdict: i % 2 === 0 ? 'ok' : 'defect', threshold: 0.5, image, heatmapPng: heatmap });
  // one write per id: a line is printed whole or not at all
  process.stdout.write(`${id}\n`);
}
