/**
 * The one worker-thread helper: every Worker in hetmm is started here
 * (test/architecture.test.ts holds that), so the rules of a thread are
 * written once:
 *  - requests carry ids; each call gets exactly one answer, its value or a
 *    HetmmError with the code and message the thread threw (errors that are
 *    not HetmmErrors cross as E_INTERNAL);
 *  - transfer lists move buffers instead of copying them, both ways;
 *  - a thread that exits or crashes rejects every pending call, and every
 *    later one, with HetmmError('E_INTERNAL'): a thread only dies through a
 *    bug or its environment (out of memory, a kill), never through a bad
 *    input or a missing backend, which the thread reports as errors of
 *    their own codes while it lives (E_BACKEND, exit code 4, means "fix the
 *    installation", which a dead thread does not say);
 *  - an idle thread does not keep the process alive (unref while nothing is
 *    pending);
 *  - a thread that may load onnxruntime gets its telemetry turned off first
 *    (config.ts disableOnnxruntimeTelemetry), and every thread starts with
 *    the settings of configure() (config.ts settingsEnvironment).
 *
 * Parent side:  const t = new WorkerThread<Req, Rep>(url, { name: 'the backbone thread', data, onnxruntime: true });
 *               await t.call(request, transfer);
 * Thread side:  answerRequests<Req, Rep>(async (request) => transferring(value, [buffer]));
 */
import { isMainThread, parentPort, Worker, workerData, type TransferListItem } from 'node:worker_threads';
import { disableOnnxruntimeTelemetry, settingsEnvironment } from '../config.js';
import { HetmmError, isHetmmError, type HetmmErrorCode } from '../errors.js';

/** A value and the buffers to move (not copy) with it. */
export class Transferring<T> {
  constructor(
    readonly value: T,
    readonly transfer: readonly TransferListItem[],
  ) {}
}

/** `value`, with `transfer` moved to the other side instead of copied. */
export function transferring<T>(value: T, transfer: readonly TransferListItem[]): Transferring<T> {
  return new Transferring(value, transfer);
}

/** The serialised form of an error crossing the thread boundary. */
export interface ThreadError {
  readonly code: HetmmErrorCode;
  readonly message: string;
}

/** Envelopes (internal to this module; exported for its tests). */
export type ToThread = { readonly id: number; readonly request: unknown } | { readonly control: 'exit'; readonly code: number };
export type FromThread =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: ThreadError }
  | { readonly event: unknown };

/** An error as it crosses: a HetmmError keeps its code, anything else is E_INTERNAL. */
export function serialiseError(e: unknown): ThreadError {
  return { code: isHetmmError(e) ? e.code : 'E_INTERNAL', message: e instanceof Error ? e.message : String(e) };
}

export interface WorkerThreadOptions<Event> {
  /** how messages name the thread: 'the backbone thread' */
  readonly name: string;
  /** the thread's workerData */
  readonly data?: unknown;
  /** the thread may load onnxruntime (its telemetry is turned off before it starts) */
  readonly onnxruntime?: boolean;
  /** called with what the thread sends besides answers (emitEvent), e.g. progress */
  readonly onEvent?: (event: Event) => void;
}

type Pending = { readonly resolve: (value: unknown) => void; readonly reject: (e: Error) => void };

const watchers = new Set<(thread: WorkerThread<unknown, unknown>) => void>();

/**
 * Calls `listener` with every WorkerThread started from now on, until the
 * returned function is called. For tests (stopping a wrapper's thread
 * mid-task) and diagnostics; not part of the package's API.
 */
export function watchThreads(listener: (thread: WorkerThread<unknown, unknown>) => void): () => void {
  watchers.add(listener);
  return () => watchers.delete(listener);
}

/** One worker thread answering requests of type Req with values of type Rep. */
export class WorkerThread<Req, Rep, Event = never> {
  readonly name: string;
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #next = 0;
  #failure: HetmmError | undefined;
  #closing = false;

  constructor(url: URL, options: WorkerThreadOptions<Event>) {
    this.name = options.name;
    if (options.onnxruntime === true) disableOnnxruntimeTelemetry(); // before the thread can load it (see config.ts)
    this.#worker = new Worker(url, { workerData: options.data, env: settingsEnvironment() });
    this.#worker.unref();
    this.#worker.on('message', (message: FromThread) => {
      if ('event' in message) {
        options.onEvent?.(message.event as Event);
        return;
      }
      const p = this.#pending.get(message.id);
      if (p === undefined) return;
      this.#pending.delete(message.id);
      if (this.#pending.size === 0) this.#worker.unref();
      if (message.ok) p.resolve(message.value);
      else p.reject(new HetmmError(message.error.code, message.error.message));
    });
    this.#worker.on('error', (e) => this.#stop(`${this.name} crashed: ${e.message}`, e));
    this.#worker.on('exit', (code) => this.#stop(this.#closing ? `${this.name} was closed` : `${this.name} exited (code ${code})`));
    for (const watch of watchers) watch(this as WorkerThread<unknown, unknown>);
  }

  /** Why the thread stopped (a HetmmError E_INTERNAL), undefined while it runs. */
  get failure(): HetmmError | undefined {
    return this.#failure;
  }

  /** calls sent and not answered yet */
  get pending(): number {
    return this.#pending.size;
  }

  /** Sends `request` (moving `transfer`); resolves with the thread's answer, rejects with its error or the thread's death. */
  call(request: Req, transfer: readonly TransferListItem[] = []): Promise<Rep> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const id = this.#next++;
    return new Promise<Rep>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#worker.ref();
      try {
        this.#worker.postMessage({ id, request } satisfies ToThread, transfer as TransferListItem[]);
      } catch (e) {
        // an uncloneable request: this call fails, the thread lives on
        this.#pending.delete(id);
        if (this.#pending.size === 0) this.#worker.unref();
        reject(new HetmmError('E_INTERNAL', `cannot send to ${this.name}: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
      }
    });
  }

  /**
   * Tests: makes the thread call process.exit(code) when it reads this
   * message (after the messages sent before it), as a thread that dies on
   * its own would.
   */
  exitForTest(code = 1): void {
    this.#worker.postMessage({ control: 'exit', code } satisfies ToThread);
  }

  /** Stops the thread now; pending calls reject (E_INTERNAL, "was closed"). */
  async close(): Promise<void> {
    this.#closing = true;
    await this.#worker.terminate();
    this.#stop(`${this.name} was closed`);
  }

  #stop(reason: string, cause?: unknown): void {
    this.#failure ??= new HetmmError('E_INTERNAL', reason, cause === undefined ? undefined : { cause });
    const failure = this.#failure;
    for (const p of this.#pending.values()) p.reject(failure);
    this.#pending.clear();
    this.#worker.unref();
  }
}

/** The thread's workerData (WorkerThreadOptions.data). */
export function threadData<T>(): T {
  return workerData as T;
}

/**
 * Thread side: answers each request with `handle`'s value (or a Transferring
 * of it) or its error. `serial`: one request at a time, in the order sent
 * (a request waits for the previous one to settle); else concurrently.
 */
export function answerRequests<Req, Rep>(
  handle: (request: Req) => Promise<Rep | Transferring<Rep>> | Rep | Transferring<Rep>,
  options: { readonly serial?: boolean } = {},
): void {
  if (isMainThread || parentPort === null) throw new HetmmError('E_INTERNAL', 'answerRequests runs on a worker thread');
  const port = parentPort;
  let previous: Promise<unknown> = Promise.resolve();
  port.on('message', (message: ToThread) => {
    if ('control' in message) {
      process.exit(message.code);
    }
    const run = (): Promise<Rep | Transferring<Rep>> => Promise.resolve().then(() => handle(message.request as Req));
    const work = options.serial === true ? previous.then(run) : run();
    if (options.serial === true) previous = work.catch(() => undefined);
    work.then(
      (answer) => {
        const [value, transfer] = answer instanceof Transferring ? [answer.value, answer.transfer] : [answer, []];
        try {
          port.postMessage({ id: message.id, ok: true, value } satisfies FromThread, transfer as TransferListItem[]);
        } catch (e) {
          // an answer that cannot be cloned fails its call, not the thread
          port.postMessage({ id: message.id, ok: false, error: serialiseError(e) } satisfies FromThread);
        }
      },
      (e: unknown) => port.postMessage({ id: message.id, ok: false, error: serialiseError(e) } satisfies FromThread),
    );
  });
}

/** Thread side: sends `event` to the parent's onEvent (e.g. progress), moving `transfer`. */
export function emitEvent(event: unknown, transfer: readonly TransferListItem[] = []): void {
  parentPort?.postMessage({ event } satisfies FromThread, transfer as TransferListItem[]);
}
