#!/usr/bin/env node
/**
 * Assembles the default model's npm package (e.g. @hetmm/model-resnet50v2:
 * the ONNX file, its description JSON, README and licence) from
 * ../shared/models into a temporary directory and runs `npm pack` there, the
 * way sharp ships libvips in its own package. Nothing is written into the
 * repository. Needs `npm run build` first (reads the shipped manifest).
 *
 *   node scripts/pack-model.mjs [OUT_DIR]   -> OUT_DIR/hetmm-model-resnet50v2-<version>.tgz
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { MODELS, DEFAULT_MODEL_NAME } = await import(path.join(repoRoot, 'dist/src/models/manifest.js'));
const { verifyModelFile } = await import(path.join(repoRoot, 'dist/src/models/download.js'));
const entry = MODELS.find((m) => m.name === DEFAULT_MODEL_NAME);
const outDir = path.resolve(process.argv[2] ?? '.');
mkdirSync(outDir, { recursive: true });
const sharedModels = path.resolve(repoRoot, '../shared/models');
const source = path.join(sharedModels, entry.file);

const check = await verifyModelFile(entry, source);
if (!check.ok) throw new Error(`${source} is not ${entry.name}: ${check.reason}`);

const dir = mkdtempSync(path.join(os.tmpdir(), 'hetmm-model-package-'));
try {
  const stem = entry.file.replace(/\.onnx$/, '');
  copyFileSync(source, path.join(dir, entry.file));
  writeFileSync(path.join(dir, `${stem}.json`), `${JSON.stringify(entry.description, null, 2)}\n`);
  copyFileSync(path.join(sharedModels, 'README.md'), path.join(dir, 'README.md'));
  // the Apache License 2.0 text (the model's licence), as shipped by TypeScript under the same licence
  copyFileSync(path.join(repoRoot, 'node_modules/typescript/LICENSE.txt'), path.join(dir, 'LICENSE'));
  const version = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version;
  const manifest = {
    name: entry.npmPackage,
    version,
    description: `${entry.summary}: the ONNX backbone of hetmm (${entry.name}, sha256 ${entry.sha256})`,
    license: entry.licence,
    files: [entry.file, `${stem}.json`, 'README.md', 'LICENSE'],
    // a scoped package is private by default on the registry; this one is published for everyone
    publishConfig: { access: 'public' },
    hetmm: { model: entry.name, file: entry.file, size: entry.size, sha256: entry.sha256, source: entry.source },
  };
  writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', outDir], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const [{ filename }] = JSON.parse(out);
  console.log(path.join(outDir, filename));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
