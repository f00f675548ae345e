#!/usr/bin/env node
/**
 * The files `npm pack` adds to hetmm's package beyond the build, and removes
 * again afterwards so that packing leaves nothing in the work tree:
 *
 *   node scripts/pack-assets.mjs stage   (prepack)  the N-API prebuild
 *       (prebuildify: prebuilds/<platform>-<arch>/hetmm.node) and the demo set
 *       (../shared/datasets/hazelnut-toy/hazelnut -> demo/hazelnut, with
 *       demo/ATTRIBUTION.md from scripts/demo-attribution.md)
 *   node scripts/pack-assets.mjs clean   (postpack) removes prebuilds/ and demo/
 *
 * tsc runs once, in `prepare` (npm pack runs prepack, prepare, postpack).
 * Nothing from ../shared is committed: it is copied here at pack time only.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const demoSource = path.resolve(repoRoot, '../shared/datasets/hazelnut-toy/hazelnut');
const demoDir = path.join(repoRoot, 'demo');
const prebuildsDir = path.join(repoRoot, 'prebuilds');

function clean() {
  rmSync(demoDir, { recursive: true, force: true });
  rmSync(prebuildsDir, { recursive: true, force: true });
}

function stage() {
  if (!existsSync(path.join(demoSource, 'train', 'good'))) {
    throw new Error(`the demo set is not at ${demoSource}: npm pack needs ../shared beside the checkout`);
  }
  clean();
  cpSync(demoSource, path.join(demoDir, 'hazelnut'), { recursive: true });
  copyFileSync(path.join(repoRoot, 'scripts', 'demo-attribution.md'), path.join(demoDir, 'ATTRIBUTION.md'));
  // prebuildify runs `node-gyp rebuild`, which would replace the checkout's own build/: build in a copy of the sources
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'hetmm-prebuild-'));
  try {
    for (const f of ['package.json', 'binding.gyp', 'native']) cpSync(path.join(repoRoot, f), path.join(scratch, f), { recursive: true });
    // prebuildify's own bin, run with this Node; npm_config_nodedir (e.g. /usr) keeps node-gyp from downloading headers
    const prebuildify = path.join(repoRoot, 'node_modules', 'prebuildify', 'bin.js');
    execFileSync(process.execPath, [prebuildify, '--napi', '--strip'], { cwd: scratch, stdio: 'inherit' });
    cpSync(path.join(scratch, 'prebuilds'), prebuildsDir, { recursive: true });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

const step = process.argv[2];
if (step === 'stage') stage();
else if (step === 'clean') clean();
else {
  console.error('usage: node scripts/pack-assets.mjs stage|clean');
  process.exit(2);
}
