#!/usr/bin/env node
/**
 * hetmm command line. Each command is one library call plus output; errors
 * the user can fix print as one line and exit non-zero, never a stack trace
 * (HETMM_DEBUG=1 prints it).
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setting } from '../config.js';
import { isHetmmError, type HetmmErrorCode } from '../errors.js';
import type { CliContext } from './context.js';
import { addCommand } from './commands/add.js';
import { demoCommand } from './commands/demo.js';
import { fitCommand } from './commands/fit.js';
import { infoCommand } from './commands/info.js';
import { predictCommand } from './commands/predict.js';

type Command = (args: string[], ctx: CliContext) => Promise<number>;

const COMMANDS: Record<string, { run: Command; summary: string }> = {
  fit: { run: fitCommand, summary: 'build a template store from normal images' },
  predict: { run: predictCommand, summary: 'score images, write heat maps' },
  add: { run: addCommand, summary: 'add normal images to a store (hot update)' },
  info: { run: infoCommand, summary: 'describe and validate a store' },
  demo: { run: demoCommand, summary: 'fit and predict the bundled MVTec bottle images' },
  compress: { run: async (args, ctx) => (await import('./commands/compress.js')).compressCommand(args, ctx), summary: 'PTS: keep K template sheets (pixel-level template selection)' },
  eval: { run: async (args, ctx) => (await import('./commands/eval.js')).evalCommand(args, ctx), summary: 'evaluate on a data set: AUROC, AUPRO, PRO, thresholds, reports' },
  serve: { run: async (args, ctx) => (await import('./commands/serve.js')).serveCommand(args, ctx), summary: 'inspection server and web page: predict, review, hot-update over HTTP' },
};

export function registerCommand(name: string, run: Command, summary: string): void {
  COMMANDS[name] = { run, summary };
}

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`);
  return `usage: hetmm <command> [options]   (hetmm <command> --help for details)\n\ncommands:\n${lines.join('\n')}\n`;
}

/** Exit codes by error kind: 2 usage, 3 input data, 4 model/store, 5 write, 70 internal. */
function exitCode(code: HetmmErrorCode): number {
  switch (code) {
    case 'E_ARGUMENT':
      return 2;
    case 'E_IMAGE_READ':
    case 'E_IMAGE_DECODE':
    case 'E_IMAGE_TOO_LARGE':
    case 'E_IMAGE_TOO_SMALL':
    case 'E_NO_IMAGES':
    case 'E_DATASET':
      return 3;
    case 'E_MODEL_NOT_FOUND':
    case 'E_MODEL_INVALID':
    case 'E_STORE_READ':
    case 'E_STORE_FORMAT':
    case 'E_STORE_MISMATCH':
    case 'E_BACKEND':
      return 4;
    case 'E_STORE_WRITE':
      return 5;
    default:
      return 70;
  }
}

export async function main(argv: string[], ctx: CliContext = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    ctx.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    ctx.stdout.write('hetmm 0.1.0\n');
    return 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    const close = Object.keys(COMMANDS).find((c) => c.startsWith(name.slice(0, 2)));
    ctx.stderr.write(`hetmm: unknown command "${name}"${close ? ` (did you mean "${close}"?)` : ''}\n${usage()}`);
    return 2;
  }
  try {
    return await command.run(rest, ctx);
  } catch (e) {
    if (isHetmmError(e)) {
      ctx.stderr.write(`hetmm ${name}: error: ${e.message}\n`);
      if (setting('debug') !== undefined) ctx.stderr.write(`${e.stack ?? ''}\n`);
      return exitCode(e.code);
    }
    ctx.stderr.write(`hetmm ${name}: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
    ctx.stderr.write(setting('debug') !== undefined ? `${e instanceof Error ? e.stack : ''}\n` : 'run again with HETMM_DEBUG=1 for details, and please report it\n');
    return 70;
  }
}

// Run when executed directly (bin symlinks resolve to this file).
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`hetmm: internal error: ${String(e)}\n`);
      process.exitCode = 70;
    },
  );
}
