/**
 * The CLI's one error policy for batches (README "Exit codes"):
 *
 *   0   every input was processed
 *   2   usage error (unknown option, bad value)
 *   3   bad input: at least one input was missing, unreadable, not an
 *       accepted image, or too large. Each is reported on its own stderr
 *       line (and as {"file", "error", "code"} under --json) and the other
 *       inputs still run, unless --fail-fast stops at the first.
 *   4   model or store error (missing, corrupt, another backbone)
 *   5   write error (store or output file; E_STORE_LOCKED included): the
 *       path is named and no partial file is left
 *   70  internal error (a bug)
 *   141 stdout or stderr was closed (e.g. `| head`, `2>&1 | head`): the run stops quietly, as a
 *       SIGPIPE would stop a C tool
 */
import { isHetmmError, type HetmmErrorCode } from '../errors.js';
import type { Reporter } from './context.js';

export const EXIT_OK = 0;
export const EXIT_BAD_INPUT = 3;
export const EXIT_STDOUT_CLOSED = 141;

/** Exit codes by error kind (the table above). */
export function exitCodeFor(code: HetmmErrorCode): number {
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
    case 'E_STORE_LOCKED':
    case 'E_WRITE':
      return 5;
    case 'E_UNAVAILABLE':
    case 'E_TIMEOUT':
      return 69; // sysexits EX_UNAVAILABLE: a service (Redis) is down; retry later
    default:
      return 70;
  }
}

/** Control characters (a newline in a file name) escaped, so that one error stays one line. */
export function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
    return named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/** Ends a run whose reason was already reported (--fail-fast): main() exits with `exitCode` and prints nothing more. */
export class BatchStopped extends Error {
  readonly exitCode: number;
  constructor(exitCode: number) {
    super('stopped at the first bad input (--fail-fast)');
    this.exitCode = exitCode;
  }
}

/** Per-input failures of one command run. */
export class BatchFailures {
  readonly #report: Reporter;
  readonly #command: string;
  readonly #failFast: boolean;
  count = 0;

  constructor(report: Reporter, command: string, failFast: boolean) {
    this.#report = report;
    this.#command = command;
    this.#failFast = failFast;
  }

  /**
   * Reports one input's failure on its own line. Errors that are not about
   * the input (store, model, write, bugs) are rethrown: they end the run.
   * With --fail-fast the first input failure ends it too (exit 3).
   */
  add(file: string, error: Error): void {
    const code = isHetmmError(error) ? error.code : undefined;
    if (code === undefined || exitCodeFor(code) !== EXIT_BAD_INPUT) throw error;
    this.count++;
    const where = error.message.includes(file) ? '' : `${file}: `;
    this.#report.error(oneLine(`hetmm ${this.#command}: error: ${where}${error.message}`));
    this.#report.record({ file, error: error.message, code });
    if (this.#failFast) throw new BatchStopped(EXIT_BAD_INPUT);
  }

  /** 0 when every input ran, 3 when some were bad. */
  exitCode(): number {
    return this.count > 0 ? EXIT_BAD_INPUT : EXIT_OK;
  }
}

export const FAIL_FAST_OPTION = { 'fail-fast': { type: 'boolean', default: false } } as const;
