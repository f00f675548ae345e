/** Paths for the I/O tests: the repository root and ../shared beside it. */
import { existsSync, readFileSync, readdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'hetmm') return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('hetmm package.json not found above the test file');
    dir = parent;
  }
}

export const repoRoot = findRepoRoot();
export const sharedDir = path.resolve(repoRoot, '../shared');
export const datasetsDir = path.join(sharedDir, 'datasets');
export const defaultModelPath = path.join(sharedDir, 'models', 'resnet50v2-imagenet-l123.onnx');

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `hetmm-${prefix}-`));
}

/** The image files (JPEG, PNG, BMP) of a directory, sorted, as full paths. */
export function listImages(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => /\.(jpe?g|png|bmp)$/i.test(f))
    .sort()
    .map((f) => path.join(dir, f));
}
