/**
 * A progress bar on stderr for anything that takes more than a second. Drawn
 * only on a TTY and never with --quiet or --json, so piped output stays clean.
 */
export class Progress {
  readonly #label: string;
  readonly #total: number;
  readonly #enabled: boolean;
  readonly #start = Date.now();
  #lastDraw = 0;
  #done = 0;

  constructor(label: string, total: number, options: { enabled: boolean }) {
    this.#label = label;
    this.#total = total;
    this.#enabled = options.enabled && process.stderr.isTTY === true;
  }

  tick(done = this.#done + 1, note = ''): void {
    this.#done = done;
    if (!this.#enabled) return;
    const t = Date.now();
    // Redraw at most 10 times a second, and not at all during the first second.
    if (t - this.#start < 1000 || (t - this.#lastDraw < 100 && done < this.#total)) return;
    this.#lastDraw = t;
    const width = 28;
    const frac = this.#total > 0 ? Math.min(1, done / this.#total) : 1;
    const filled = Math.round(frac * width);
    const elapsed = (t - this.#start) / 1000;
    const eta = done > 0 ? (elapsed / done) * (this.#total - done) : 0;
    const line =
      `${this.#label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${this.#total}` +
      ` ${elapsed.toFixed(0)}s${done < this.#total ? ` eta ${eta.toFixed(0)}s` : ''}${note ? ` ${note}` : ''}`;
    process.stderr.write(`\r${line.slice(0, (process.stderr.columns ?? 100) - 1)}\x1b[K`);
  }

  end(): void {
    if (this.#enabled && this.#lastDraw > 0) process.stderr.write('\n');
  }
}
