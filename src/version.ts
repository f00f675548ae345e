/** The package version, from hetmm's own package.json (two levels above dist/src/). */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
  if (manifest.name !== 'hetmm' || typeof manifest.version !== 'string') throw new Error('hetmm: cannot read its own package.json version');
  return manifest.version;
}

/** hetmm's version (package.json "version"). */
export const version: string = readVersion();
