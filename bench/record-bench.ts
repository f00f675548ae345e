/**
 * The inspection record's cost (issue 21): latency of one `record.add`
 * (p50/p99, sequential, what a predict answer would wait for) with real
 * images (bottle PNGs, hazelnut JPEGs) and rendered heat maps, and disk per
 * 1000 inspections, with and without stored images; SQLite (synchronous
 * normal and full) and PostgreSQL (a server started here on a loopback
 * port, stopped afterwards). Bounded: N inserts per case (default 300).
 *
 *   node dist/bench/record-bench.js [--n 300] [--no-postgres]
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { renderHeatmapOverlay } from '../src/image/encode.js';
import { openPostgresRecord, openSqliteRecord, type InspectionRecord } from '../src/record/index.js';
import { datasetsDir, listImages, tempDir } from '../test/helpers/io-paths.js';
import { postgresAvailable, TestPostgres } from '../test/helpers/postgres-server.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '300' }, 'no-postgres': { type: 'boolean', default: false } } });
const n = Number(values.n);

function duBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += statSync(path.join(e.parentPath, e.name)).blocks * 512;
  }
  return total;
}

async function inputs(): Promise<{ image: Buffer; heatmap: Buffer; name: string }[]> {
  const files = [
    ...listImages(path.join(datasetsDir, 'mvtec-bottle-xs/bottle/test/good')),
    ...listImages(path.join(datasetsDir, 'mvtec-bottle-xs/bottle/test/broken_large')),
    ...listImages(path.join(datasetsDir, 'hazelnut-toy/hazelnut/test/good')),
  ];
  // the server renders its overlay at the map's size (src/fit/line-state.ts): 256x256, a smooth blob as on a defect
  const map = new Float32Array(256 * 256).map((_, i) => Math.exp(-(((i % 256) - 160) ** 2 + (Math.floor(i / 256) - 96) ** 2) / 900));
  return Promise.all(files.map(async (f) => ({ image: readFileSync(f), heatmap: await renderHeatmapOverlay(f, map, 256, 256, { range: [0, 1], alpha: 0.5 }), name: path.basename(f) })));
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

async function run(label: string, record: InspectionRecord, withImages: boolean, data: Awaited<ReturnType<typeof inputs>>, disk: () => Promise<number>): Promise<void> {
  const before = await disk();
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const d = data[i % data.length]!;
    const t = process.hrtime.bigint();
    await record.add({ line: 'bottle', score: Math.random(), verdict: 'ok', threshold: 0.5, storeVersion: 1, imageName: d.name, model: { precision: 'int8' }, ...(withImages ? { image: d.image, heatmapPng: d.heatmap } : {}) });
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const after = await disk();
  ms.sort((a, b) => a - b);
  console.log(`${label.padEnd(28)} images=${withImages ? 'on ' : 'off'}  add p50 ${percentile(ms, 0.5).toFixed(2)} ms  p99 ${percentile(ms, 0.99).toFixed(2)} ms  disk/1000 ${(((after - before) / n) * 1000 / 2 ** 20).toFixed(1)} MiB`);
}

const data = await inputs();
const avgImage = data.reduce((a, d) => a + d.image.length, 0) / data.length;
const avgMap = data.reduce((a, d) => a + d.heatmap.length, 0) / data.length;
console.log(`record bench: n=${n} per case, ${data.length} real images (mean ${(avgImage / 1024).toFixed(0)} KiB) + rendered heat maps (mean ${(avgMap / 1024).toFixed(0)} KiB); load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; node ${process.version}`);

for (const synchronous of ['normal', 'full'] as const) {
  for (const withImages of [true, false]) {
    const dir = tempDir('record-bench');
    const record = await openSqliteRecord(dir, { synchronous, retentionIntervalMs: 0 });
    const db = (record as unknown as { db: { query(sql: string): Promise<unknown> } }).db;
    // fold the WAL into the database first, so its preallocated size is not counted as the rows'
    await run(`sqlite synchronous=${synchronous}`, record, withImages, data, async () => (await db.query('PRAGMA wal_checkpoint(TRUNCATE)'), duBytes(dir)));
    await record.close();
  }
}

if (!values['no-postgres'] && postgresAvailable) {
  const server = await TestPostgres.start();
  try {
    let k = 0;
    for (const withImages of [true, false]) {
      const url = await server.createDatabase(`bench_${++k}`);
      const filesDir = tempDir('record-bench-pg');
      const record = await openPostgresRecord(url, { filesDir, retentionIntervalMs: 0, synchronous: 'normal' });
      const pgBytes = async (): Promise<number> => {
        // the database's own size (tables, indexes, TOAST) plus the files; checkpoint so the WAL is not what is counted
        const rows = await (record as unknown as { db: { query(sql: string): Promise<Array<Record<string, unknown>>> } }).db.query(`SELECT pg_database_size(current_database()) AS b`);
        return Number(rows[0]!.b) + duBytes(filesDir);
      };
      await run('postgres (pg, loopback)', record, withImages, data, pgBytes);
      await record.close();
    }
  } finally {
    await server.stop();
  }
}
console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; uptime: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
