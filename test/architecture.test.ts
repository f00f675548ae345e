/**
 * The import graph of src/: layers only import downwards, there are no
 * cycles, only src/config.ts reads process.env, and dynamic imports name
 * their module literally. LAYERS below is the one definition of the layer
 * order; README.md's "How it works" table lists the folders in this order.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const srcDir = path.join(repoRoot, 'src');

/**
 * Layer order, low to high; entries of one inner array share a rank (they may
 * import each other, without cycles). A folder `x` stands for src/x/, a name
 * ending in .ts for that file directly in src/.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts', 'config.ts', 'version.ts', 'package-root.ts'],
  // the one worker-thread helper: every layer above may start threads
  ['threads'],
  ['image', 'metrics'],
  ['backbone', 'models'],
  // the template store and the inspection record (issue 21): durable files and databases
  ['store', 'record'],
  ['kernels'],
  ['matching'],
  ['selection'],
  ['detector'],
  ['fit'],
  ['eval'],
  ['server'],
  ['queue'],
  ['cli'],
  // the package root: the public API re-exports from every layer
  ['index.ts'],
];


function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(full));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(full);
  }
  return out.sort();
}

/** src-relative path ('kernels/fast/index.ts') -> rank in LAYERS, or undefined when not placed. */
export function rankOf(rel: string, layers: readonly (readonly string[])[] = LAYERS): number | undefined {
  const top = rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : rel;
  const rank = layers.findIndex((names) => names.includes(top));
  return rank < 0 ? undefined : rank;
}

export interface ImportEdge {
  readonly from: string;
  readonly to: string;
}

/** Relative imports of each file (static, type-only, re-exports and literal dynamic imports), src-relative; and its package and builtin imports. */
function importEdges(files: readonly string[]): { edges: ImportEdge[]; nonLiteral: string[]; packages: ImportEdge[] } {
  const edges: ImportEdge[] = [];
  const nonLiteral: string[] = [];
  const packages: ImportEdge[] = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const from = path.relative(srcDir, file).split(path.sep).join('/');
    const info = ts.preProcessFile(text, true, true);
    for (const ref of info.importedFiles) {
      if (!ref.fileName.startsWith('.')) {
        packages.push({ from, to: ref.fileName });
        continue;
      }
      const target = path.resolve(path.dirname(file), ref.fileName).replace(/\.js$/, '.ts');
      edges.push({ from, to: path.relative(srcDir, target).split(path.sep).join('/') });
    }
    // import(specifier) with a computed specifier hides an edge from this test (and from bundlers)
    if (/\bimport\(\s*[^'"`\s)]/.test(text)) nonLiteral.push(from);
  }
  return { edges, nonLiteral, packages };
}

/** Imports of the fast backend's modules (src/kernels/fast/) from outside src/kernels: the registry is the only door to a backend. */
export function kernelSideDoors(edges: readonly ImportEdge[]): string[] {
  return edges.filter(({ from, to }) => to.startsWith('kernels/fast/') && !from.startsWith('kernels/')).map(({ from, to }) => `${from} imports ${to}`);
}

/** Files other than the helper (src/threads/) that use node:worker_threads: only the helper starts and answers threads. */
export function threadsOffTheHelper(packages: readonly ImportEdge[]): string[] {
  return packages
    .filter(({ from, to }) => (to === 'node:worker_threads' || to === 'worker_threads') && !from.startsWith('threads/'))
    .map(({ from }) => `${from} imports node:worker_threads`);
}

/** Edges that go up the layer order (or touch an unplaced file). */
export function upwardEdges(edges: readonly ImportEdge[], layers: readonly (readonly string[])[] = LAYERS): string[] {
  const bad: string[] = [];
  for (const { from, to } of edges) {
    const a = rankOf(from, layers);
    const b = rankOf(to, layers);
    if (a === undefined) bad.push(`${from} is in no layer`);
    else if (b === undefined) bad.push(`${to} (imported by ${from}) is in no layer`);
    else if (b > a) bad.push(`${from} imports ${to}, a higher layer`);
  }
  return [...new Set(bad)];
}

/** Strongly connected components with more than one file (Tarjan), each sorted. */
export function cycles(edges: readonly ImportEdge[]): string[][] {
  const graph = new Map<string, string[]>();
  for (const { from, to } of edges) {
    if (!graph.has(from)) graph.set(from, []);
    if (!graph.has(to)) graph.set(to, []);
    graph.get(from)!.push(to);
  }
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || graph.get(v)!.includes(v)) out.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

const files = sourceFiles(srcDir);
const { edges, nonLiteral, packages } = importEdges(files);

test('architecture: every import goes down the layer order', () => {
  const bad = upwardEdges(edges);
  assert.deepEqual(bad, []);
});

test('architecture: the import graph has no cycles', () => {
  const found = cycles(edges);
  assert.deepEqual(found, []);
});

test('architecture: the checks catch an upward edge and a cycle', () => {
  const synthetic = [
    { from: 'store/a.ts', to: 'kernels/b.ts' },
    { from: 'kernels/b.ts', to: 'store/a.ts' },
    { from: 'nowhere/c.ts', to: 'errors.ts' },
  ];
  assert.deepEqual(upwardEdges(synthetic), ['store/a.ts imports kernels/b.ts, a higher layer', 'nowhere/c.ts is in no layer']);
  assert.deepEqual(cycles(synthetic), [['kernels/b.ts', 'store/a.ts']]);
});

/**
 * The queue is a door beside the server, not behind it: its worker side
 * (the compute thread and what drives it) imports nothing from src/server/,
 * and the queue executor (the server's client of the queue) only the
 * server's contract and error type. What both need lives lower (src/fit/line-state.ts).
 */
export function queueImportsOfServer(edges: readonly ImportEdge[]): string[] {
  const contract = new Set(['server/executor.ts', 'server/errors.ts']);
  return edges
    .filter(({ from, to }) => from.startsWith('queue/') && to.startsWith('server/'))
    .filter(({ from, to }) => from !== 'queue/executor.ts' || !contract.has(to))
    .map(({ from, to }) => `${from} imports ${to}`);
}

test('architecture: the queue does not import the server (only the queue executor its contract)', () => {
  assert.deepEqual(queueImportsOfServer(edges), []);
  assert.deepEqual(
    queueImportsOfServer([
      { from: 'queue/compute-thread.ts', to: 'server/in-process-executor.ts' },
      { from: 'queue/executor.ts', to: 'server/executor.ts' },
      { from: 'queue/executor.ts', to: 'server/app.ts' },
    ]),
    ['queue/compute-thread.ts imports server/in-process-executor.ts', 'queue/executor.ts imports server/app.ts'],
  );
});

test('architecture: nothing outside src/kernels imports the fast backend directly (kernels/fast); backends come from the registry', () => {
  assert.deepEqual(kernelSideDoors(edges), []);
});

test('architecture: only the helper (src/threads/) creates or answers worker threads', () => {
  assert.deepEqual(threadsOffTheHelper(packages), []);
});

test('architecture: the side-door and thread checks catch an offender', () => {
  const synthetic = [
    { from: 'detector/pipelines.ts', to: 'kernels/fast/index.ts' },
    { from: 'cli/main.ts', to: 'kernels/fast/binding.ts' },
    { from: 'kernels/registry.ts', to: 'kernels/fast/index.ts' },
    { from: 'detector/x.ts', to: 'kernels/index.ts' },
  ];
  assert.deepEqual(kernelSideDoors(synthetic), ['detector/pipelines.ts imports kernels/fast/index.ts', 'cli/main.ts imports kernels/fast/binding.ts']);
  const imports = [
    { from: 'queue/compute.ts', to: 'node:worker_threads' },
    { from: 'selection/pts-worker.ts', to: 'worker_threads' },
    { from: 'threads/index.ts', to: 'node:worker_threads' },
    { from: 'queue/worker.ts', to: 'bullmq' },
  ];
  assert.deepEqual(threadsOffTheHelper(imports), ['queue/compute.ts imports node:worker_threads', 'selection/pts-worker.ts imports node:worker_threads']);
});

test('architecture: dynamic imports name their module literally', () => {
  assert.deepEqual(nonLiteral, []);
});

test('architecture: only src/config.ts reads process.env', () => {
  const readers = files
    .filter((f) => /process\.env\b/.test(readFileSync(f, 'utf8')))
    .map((f) => path.relative(srcDir, f).split(path.sep).join('/'));
  assert.deepEqual(readers, ['config.ts']);
});

test('architecture: README "How it works" lists the src folders in layer order', () => {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## How it works'));
  const listed = [...section.slice(0, section.indexOf('\n\n', section.indexOf('|'))).matchAll(/`src\/([a-z-]+)\/`/g)].map((m) => m[1]!);
  const existing = readdirSync(srcDir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name);
  // every folder is placed and documented; the table follows LAYERS
  for (const folder of existing) {
    assert.notEqual(rankOf(`${folder}/x.ts`), undefined, `src/${folder}/ is in no layer: add it to LAYERS`);
    assert.ok(listed.includes(folder), `README "How it works" does not list src/${folder}/`);
  }
  const ranks = listed.map((f) => rankOf(`${f}/x.ts`));
  assert.ok(ranks.every((r) => r !== undefined), `README lists a folder that is in no layer: ${listed.join(', ')}`);
  assert.deepEqual(ranks, [...ranks].sort((a, b) => a! - b!), `README table order ${listed.join(', ')} does not follow LAYERS`);
});
