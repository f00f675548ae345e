/** Finding the .onnx model: --model, then HETMM_MODEL, then the shipped default. */
import { existsSync, statSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setting, type Environment } from '../config.js';
import { HetmmError } from '../errors.js';
import { DEFAULT_MODEL_RELATIVE_PATH } from './description.js';

/** The directory holding hetmm's package.json, found upwards from this module; undefined if none. */
export function packageRoot(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'package.json');
    if (existsSync(candidate)) {
      try {
        const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: unknown };
        if (pkg.name === 'hetmm') return dir;
      } catch {
        // not ours or unreadable: keep walking up
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

const HOW_TO = 'Supply a model with --model PATH or the environment variable HETMM_MODEL=PATH.';

export interface ResolveModelOptions {
  /** the --model option */
  readonly model?: string;
  /** environment for HETMM_MODEL (default: the process environment, through ../config.ts) */
  readonly env?: Environment;
  /** default process.cwd() */
  readonly cwd?: string;
  /** default: the directory of hetmm's package.json, found from this module */
  readonly packageRoot?: string;
}

export function resolveModelPath(options: ResolveModelOptions = {}): {
  path: string;
  tried: string[];
} {
  const cwd = options.cwd ?? process.cwd();
  // An explicit choice that does not exist is an error, never a silent fallback to the default.
  const explicit: Array<[string | undefined, string]> = [
    [options.model, '--model'],
    [setting('model', options.env), 'HETMM_MODEL'],
  ];
  for (const [value, label] of explicit) {
    if (value === undefined || value === '') continue;
    const p = path.resolve(cwd, value);
    if (isFile(p)) return { path: p, tried: [p] };
    throw new HetmmError('E_MODEL_NOT_FOUND', `model not found: ${label} names '${value}' (tried ${p}), which is not a file. ${HOW_TO}`);
  }
  const tried: string[] = [];
  const roots = [cwd];
  const root = options.packageRoot ?? packageRoot();
  if (root !== undefined) roots.push(root);
  for (const r of roots) {
    const p = path.resolve(r, DEFAULT_MODEL_RELATIVE_PATH);
    if (tried.includes(p)) continue;
    tried.push(p);
    if (isFile(p)) return { path: p, tried };
  }
  throw new HetmmError(
    'E_MODEL_NOT_FOUND',
    `model not found: no --model option, no HETMM_MODEL, and the default model is not at any of: ${tried.join(', ')}. ${HOW_TO}`,
  );
}
