/** What every command gets: output streams and the logging rules of --quiet / --json. */
import { Progress } from './progress.js';

export interface CliContext {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

export class Reporter {
  readonly quiet: boolean;
  readonly json: boolean;
  readonly #ctx: CliContext;

  constructor(ctx: CliContext, options: { quiet?: boolean; json?: boolean }) {
    this.#ctx = ctx;
    this.quiet = options.quiet ?? false;
    this.json = options.json ?? false;
  }

  /** Human-readable result lines (stdout), suppressed under --json. */
  out(line: string): void {
    if (!this.json) this.#ctx.stdout.write(`${line}\n`);
  }

  /** One machine-readable JSON object per line (stdout), only under --json. */
  record(value: unknown): void {
    if (this.json) this.#ctx.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** Notes and warnings (stderr), suppressed under --quiet. */
  note(line: string): void {
    if (!this.quiet) this.#ctx.stderr.write(`${line}\n`);
  }

  /** Errors (stderr), printed even under --quiet. */
  error(line: string): void {
    this.#ctx.stderr.write(`${line}\n`);
  }

  progress(label: string, total: number): Progress {
    return new Progress(label, total, { enabled: !this.quiet && !this.json });
  }
}
