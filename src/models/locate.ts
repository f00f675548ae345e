/**
 * Finding a model file without the network, in order: an explicit path
 * (--model, the `model` option), HETMM_MODEL, the user's cache directory,
 * a local models directory (HETMM_MODELS_DIR, else ../shared/models beside the
 * current directory or beside hetmm: the development default), then the model's npm package
 * (e.g. @hetmm/model-resnet50v2) when it is installed. ./download.ts adds the
 * last resort, a download from HETMM_MODEL_HOST into the cache.
 */
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { cacheDir, setting, type Environment } from '../config.js';
import { HetmmError } from '../errors.js';
import { packageRoot } from '../package-root.js';
import { DEFAULT_MODEL_NAME, findModelEntry, MODELS, type ModelEntry } from './manifest.js';

/** Relative to the current directory or to hetmm's package root. */
export { packageRoot };

export const LOCAL_MODELS_DIR = path.join('..', 'shared', 'models');

function fileSize(p: string): number | undefined {
  try {
    const s = statSync(p);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

/** Where a model was found. */
export type ModelSource = '--model' | 'HETMM_MODEL' | 'cache' | 'local' | 'package' | 'download';

export interface LocateModelOptions {
  /** an explicit path (the --model option) */
  readonly model?: string;
  /** the manifest model to look for; default DEFAULT_MODEL_NAME */
  readonly name?: string;
  /** environment (default: the process environment, through ../config.ts) */
  readonly env?: Environment;
  /** default process.cwd() */
  readonly cwd?: string;
  /** default: the directory of hetmm's package.json, found from this module */
  readonly packageRoot?: string;
  /** default: cacheDir() of ../config.ts (HETMM_CACHE_DIR or the platform's cache directory) */
  readonly cacheDir?: string;
  /** the directory of an installed npm package, or undefined (default: Node's resolution from hetmm) */
  readonly resolvePackage?: (name: string) => string | undefined;
}

export interface LocatedModel {
  readonly path: string;
  readonly source: ModelSource;
  /** every path looked at, in order */
  readonly tried: string[];
  /** the manifest entry, when a named model was looked for */
  readonly entry?: ModelEntry;
}

export function modelEntry(name: string = DEFAULT_MODEL_NAME): ModelEntry {
  const entry = findModelEntry(name);
  if (entry === undefined) {
    throw new HetmmError('E_ARGUMENT', `Expected a model name (${MODELS.map((m) => m.name).join(', ')}) but received "${name}"`);
  }
  return entry;
}

/** The cache path of a model (where a download goes). */
export function cachedModelPath(entry: ModelEntry, options: Pick<LocateModelOptions, 'cacheDir' | 'env'> = {}): string {
  return path.join(options.cacheDir ?? cacheDir(options.env), entry.file);
}

function nodePackageDir(name: string): string | undefined {
  try {
    return path.dirname(createRequire(import.meta.url).resolve(`${name}/package.json`));
  } catch {
    return undefined;
  }
}

const HOW_TO = 'Supply a model with --model PATH or the environment variable HETMM_MODEL=PATH.';

/** What to do when a named model is nowhere: one sentence for the CLI's one error line. */
export function missingModelAdvice(entry: ModelEntry, cachePath: string): string {
  return (
    `copy ${entry.file} (sha256 ${entry.sha256}) to ${cachePath}, ` +
    `download it with HETMM_MODEL_HOST=URL hetmm models pull ${entry.name}, or set HETMM_MODEL=PATH (or --model PATH); ` +
    // not claimed to be on the registry until it is published: today it is built from a checkout
    `the npm package ${entry.npmPackage} is not on the npm registry yet (build it in a hetmm checkout with npm run pack:model, then npm install the tarball)`
  );
}

/**
 * The model file, found without the network (see the module comment).
 * Throws E_MODEL_NOT_FOUND naming every path tried and what to do. A cache
 * or package file of the wrong size is passed over (a partial copy).
 */
export function locateModel(options: LocateModelOptions = {}): LocatedModel {
  const cwd = options.cwd ?? process.cwd();
  // An explicit choice that does not exist is an error, never a silent fallback to the default.
  const explicit: Array<[string | undefined, '--model' | 'HETMM_MODEL']> = [
    [options.model, '--model'],
    [setting('model', options.env), 'HETMM_MODEL'],
  ];
  for (const [value, label] of explicit) {
    if (value === undefined || value === '') continue;
    const p = path.resolve(cwd, value);
    if (fileSize(p) !== undefined) return { path: p, source: label, tried: [p] };
    throw new HetmmError('E_MODEL_NOT_FOUND', `model not found: ${label} names '${value}' (tried ${p}), which is not a file. ${HOW_TO}`);
  }
  const entry = modelEntry(options.name);
  const tried: string[] = [];
  const candidates: Array<[string, ModelSource, boolean]> = [[cachedModelPath(entry, options), 'cache', true]];
  const localDir = setting('modelsDir', options.env);
  if (localDir !== undefined) candidates.push([path.resolve(cwd, localDir, entry.file), 'local', false]);
  else {
    const roots = [cwd];
    const root = options.packageRoot ?? packageRoot();
    if (root !== undefined) roots.push(root);
    for (const r of roots) candidates.push([path.resolve(r, LOCAL_MODELS_DIR, entry.file), 'local', false]);
  }
  const pkgDir = (options.resolvePackage ?? nodePackageDir)(entry.npmPackage);
  if (pkgDir !== undefined) candidates.push([path.join(pkgDir, entry.file), 'package', true]);
  for (const [p, source, checkSize] of candidates) {
    if (tried.includes(p)) continue;
    tried.push(p);
    const size = fileSize(p);
    if (size !== undefined && (!checkSize || size === entry.size)) return { path: p, source, tried, entry };
  }
  throw new HetmmError(
    'E_MODEL_NOT_FOUND',
    `model not found: no --model option, no HETMM_MODEL, and ${entry.name} is not at any of: ${tried.join(', ')}. ` +
      `To fix: ${missingModelAdvice(entry, tried[0]!)}.`,
  );
}
