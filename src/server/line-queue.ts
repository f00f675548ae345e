/**
 * One bounded queue per line: at most `concurrency` predictions run, at most
 * `limit` wait; past that a request is refused at once with 429 and a
 * Retry-After estimated from recent latencies, so memory stays bounded and
 * latency stays bounded instead of growing with the offered load.
 */
import { ServerError } from './errors.js';

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
  readonly cleanup: () => void;
}

export class LineQueue {
  readonly concurrency: number;
  readonly limit: number;
  #running = 0;
  readonly #waiting: Waiter[] = [];
  /** exponential moving average of the time a slot is held, ms */
  #averageMs = 0;

  constructor(concurrency: number, limit: number) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new ServerError('E_ARGUMENT', `Expected concurrency >= 1 but received ${concurrency}`);
    if (!Number.isInteger(limit) || limit < 0) throw new ServerError('E_ARGUMENT', `Expected a queue limit >= 0 but received ${limit}`);
    this.concurrency = concurrency;
    this.limit = limit;
  }

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#waiting.length;
  }

  /** Seconds until a slot is likely free for a new request (at least 1). */
  retryAfter(): number {
    const ms = this.#averageMs * (this.#waiting.length + this.#running) / this.concurrency;
    return Math.max(1, Math.ceil(ms / 1000));
  }

  /** Runs `work` when a slot is free; throws E_BUSY if the queue is full, E_TIMEOUT if `signal` aborts while waiting. */
  async run<T>(work: (queuedMs: number) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const t0 = performance.now();
    await this.#acquire(signal);
    const t1 = performance.now();
    try {
      return await work(t1 - t0);
    } finally {
      const held = performance.now() - t1;
      this.#averageMs = this.#averageMs === 0 ? held : 0.8 * this.#averageMs + 0.2 * held;
      this.#release();
    }
  }

  /** Resolves when nothing runs or waits. */
  async drained(): Promise<void> {
    while (this.#running > 0 || this.#waiting.length > 0) await new Promise((r) => setTimeout(r, 20));
  }

  #acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.#running < this.concurrency && this.#waiting.length === 0) {
      this.#running++;
      return Promise.resolve();
    }
    if (this.#waiting.length >= this.limit) {
      return Promise.reject(
        new ServerError('E_BUSY', `the line is busy (${this.#running} running, ${this.#waiting.length} waiting): retry later`, {
          retryAfter: this.retryAfter(),
        }),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#waiting.indexOf(waiter);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(abortError(signal!));
      };
      const waiter: Waiter = { resolve, reject, cleanup: () => signal?.removeEventListener('abort', onAbort) };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next === undefined) {
      this.#running--;
      return;
    }
    next.cleanup();
    next.resolve(); // the slot passes to the next waiter
  }
}

/** The error a request's abort signal carries (the HTTP layer aborts with a ServerError), else E_TIMEOUT. */
export function abortError(signal: AbortSignal): unknown {
  const reason: unknown = signal.reason;
  return reason instanceof ServerError ? reason : new ServerError('E_TIMEOUT', 'the request was cancelled or timed out');
}
