/**
 * The public API: the names each package entry point (package.json
 * "exports") declares, pinned by test/api-snapshot.json; the root stays
 * small and is listed in the README; importing it loads neither onnxruntime
 * nor sharp. After an intended change: HETMM_UPDATE_API_SNAPSHOT=1 npm test.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const snapshotFile = path.join(repoRoot, 'test', 'api-snapshot.json');
const manifest = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
  version: string;
  exports: Record<string, string | { types: string; default: string }>;
};

/** entry point ('.', './metrics') -> sorted 'name (value|type)' from its .d.ts, through the type checker. */
function declaredApi(): Record<string, string[]> {
  const entries = Object.entries(manifest.exports).filter((e): e is [string, { types: string; default: string }] => typeof e[1] === 'object');
  const files = entries.map(([, t]) => path.join(repoRoot, t.types));
  const program = ts.createProgram(files, { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, strict: true, types: [] });
  const checker = program.getTypeChecker();
  const out: Record<string, string[]> = {};
  for (const [entry, target] of entries) {
    const source = program.getSourceFile(path.join(repoRoot, target.types));
    assert.ok(source, `${target.types} is missing: build first`);
    const moduleSymbol = checker.getSymbolAtLocation(source)!;
    out[entry] = checker
      .getExportsOfModule(moduleSymbol)
      .map((s) => {
        const resolved = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
        return `${s.name} (${resolved.flags & ts.SymbolFlags.Value ? 'value' : 'type'})`;
      })
      .sort();
  }
  return out;
}

test('API: every entry point declares exactly the snapshot (test/api-snapshot.json)', () => {
  const api = declaredApi();
  if (process.env['HETMM_UPDATE_API_SNAPSHOT'] === '1') writeFileSync(snapshotFile, `${JSON.stringify(api, null, 2)}\n`);
  const snapshot = JSON.parse(readFileSync(snapshotFile, 'utf8')) as Record<string, string[]>;
  assert.deepEqual(api, snapshot, 'the public API changed: if intended, run HETMM_UPDATE_API_SNAPSHOT=1 npm test and list root names in the README');
});

test('API: the root exports at most 30 names, each listed in the README API section', () => {
  const root = declaredApi()['.']!.map((n) => n.replace(/ \(.*\)$/, ''));
  assert.ok(root.length <= 30, `${root.length} root exports`);
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const start = readme.indexOf('## API');
  assert.ok(start >= 0, 'README has no "## API" section');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  for (const name of root) assert.ok(section.includes(`\`${name}\``), `README API section does not list \`${name}\``);
});

test('API: importing hetmm loads neither onnxruntime nor sharp; the version is package.json\'s', async () => {
  const script = `
    const native = () => process.report.getReport().sharedObjects.filter((s) => /onnxruntime|sharp|vips/.test(s));
    const m = await import('hetmm');
    const afterImport = native();
    const image = await import('hetmm/image');
    await image.encodeMaskPng(new Uint8Array(4), 2, 2);
    console.log(JSON.stringify({ version: m.version, afterImport, afterUse: native() }));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: repoRoot });
  const r = JSON.parse(stdout) as { version: string; afterImport: string[]; afterUse: string[] };
  assert.equal(r.version, manifest.version);
  assert.deepEqual(r.afterImport, []);
  assert.ok(r.afterUse.some((s) => /sharp/.test(s)), `the check must see sharp once it is used: ${r.afterUse.join(', ')}`);
});
