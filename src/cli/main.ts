#!/usr/bin/env node
/**
 * hetmm command line. Each command is one library call plus output; errors
 * the user can fix print as one line and exit non-zero, never a stack trace
 * (HETMM_DEBUG=1 prints it).
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setting } from '../config.js';
import { version } from '../version.js';
import { isHetmmError, type HetmmErrorCode } from '../errors.js';
import { isServerError } from '../server/errors.js';
import { BatchStopped, EXIT_STDOUT_CLOSED, exitCodeFor } from './batch.js';
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
  normals: { run: async (args, ctx) => (await import('./commands/normals.js')).normalsCommand(args, ctx), summary: 'list the normals of a store, or remove some by id (undo a hot update)' },
  demo: { run: demoCommand, summary: 'fit and predict the bundled hazelnut images' },
  compress: { run: async (args, ctx) => (await import('./commands/compress.js')).compressCommand(args, ctx), summary: 'PTS: keep K template sheets (pixel-level template selection)' },
  eval: { run: async (args, ctx) => (await import('./commands/eval.js')).evalCommand(args, ctx), summary: 'evaluate on a data set: AUROC, AUPRO, PRO, thresholds, reports' },
  serve: { run: async (args, ctx) => (await import('./commands/serve.js')).serveCommand(args, ctx), summary: 'inspection server and web page: predict, review, hot-update over HTTP' },
  models: { run: async (args, ctx) => (await import('./commands/models.js')).modelsCommand(args, ctx), summary: 'list, download (pull), verify and locate backbone models' },
  worker: { run: async (args, ctx) => (await import('./commands/worker.js')).workerCommand(args, ctx), summary: 'queue worker: process a cluster\'s jobs from Redis (docs/SCALING.md)' },
  queue: { run: async (args, ctx) => (await import('./commands/queue.js')).queueCommand(args, ctx), summary: 'queue status: depth, workers, store versions (docs/SCALING.md)' },
  'quantize-model': {
    run: async (args, ctx) => (await import('./commands/quantize-model.js')).quantizeModelCommand(args, ctx),
    summary: 'write an int8 backbone (static quantisation calibrated on normal images)',
  },
};

export function registerCommand(name: string, run: Command, summary: string): void {
  COMMANDS[name] = { run, summary };
}

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`);
  return `usage: hetmm <command> [options]   (hetmm <command> --help for details)\n\ncommands:\n${lines.join('\n')}\n`;
}

/** Exit codes: src/cli/batch.ts (the table) and README "Exit codes". */
const exitCode = exitCodeFor;

export async function main(argv: string[], ctx: CliContext = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    ctx.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    ctx.stdout.write(`hetmm ${version}\n`);
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
    if (e instanceof BatchStopped) return e.exitCode;
    // the server's errors carry the library's codes too (E_ARGUMENT: two stores for one line); its own codes are 70
    if (isHetmmError(e) || isServerError(e)) {
      ctx.stderr.write(`hetmm ${name}: error: ${e.message}\n`);
      if (setting('debug') !== undefined) ctx.stderr.write(`${e.stack ?? ''}\n`);
      return exitCode(e.code as HetmmErrorCode);
    }
    ctx.stderr.write(`hetmm ${name}: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
    ctx.stderr.write(setting('debug') !== undefined ? `${e instanceof Error ? e.stack : ''}\n` : 'run again with HETMM_DEBUG=1 for details, and please report it\n');
    return 70;
  }
}

// Run when executed directly (bin symlinks resolve to this file).
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // A closed stdout (`hetmm predict ... | head -1`) ends the run quietly, like SIGPIPE ends a C tool;
  // so does a closed stderr (`2>&1 | head -1`: whichever stream hits the closed pipe first).
  // Store writes are unaffected: an append is durable before anything is printed about it.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(EXIT_STDOUT_CLOSED);
      throw e;
    });
  }
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
