/** Paths for the I/O tests: the repository root and ../shared beside it. */
import { existsSync, readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
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

const createdTempDirs: string[] = [];
let removeOnExit = false;

/**
 * A fresh directory under the OS temp dir, removed when the test process
 * exits (each test file runs in its own process): stores of real features
 * are hundreds of MiB, and leaving them would fill the disk run after run.
 * HETMM_KEEP_TEST_TMP=1 keeps them for debugging.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `hetmm-${prefix}-`));
  createdTempDirs.push(dir);
  if (!removeOnExit && process.env.HETMM_KEEP_TEST_TMP !== '1') {
    removeOnExit = true;
    process.on('exit', () => {
      for (const d of createdTempDirs) rmSync(d, { recursive: true, force: true });
    });
  }
  return dir;
}

/** The image files (JPEG, PNG, BMP) of a directory, sorted, as full paths. */
export function listImages(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => /\.(jpe?g|png|bmp)$/i.test(f))
    .sort()
    .map((f) => path.join(dir, f));
}
