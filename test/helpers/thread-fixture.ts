/**
 * A worker thread for test/threads.test.ts, built on the helper like every
 * hetmm thread: it echoes, fails with a code, moves buffers back, waits,
 * crashes, exits, and reports what it sees of its environment.
 */
import { HetmmError } from '../../src/errors.js';
import { setting } from '../../src/config.js';
import { answerRequests, emitEvent, threadData, transferring } from '../../src/threads/index.js';

export type FixtureRequest =
  | { readonly op: 'echo'; readonly value: unknown }
  | { readonly op: 'fail'; readonly code: 'E_ARGUMENT' | 'E_BACKEND' }
  | { readonly op: 'throw-plain' }
  | { readonly op: 'double'; readonly data: Float32Array }
  | { readonly op: 'wait'; readonly ms: number }
  | { readonly op: 'crash' }
  | { readonly op: 'exit'; readonly code: number }
  | { readonly op: 'uncloneable' }
  | { readonly op: 'environment' }
  | { readonly op: 'progress'; readonly count: number };

const data = threadData<{ label?: string } | undefined>();

answerRequests<FixtureRequest, unknown>(
  async (request) => {
    switch (request.op) {
      case 'echo':
        return { value: request.value, label: data?.label };
      case 'fail':
        throw new HetmmError(request.code, `failed on purpose with ${request.code}`);
      case 'throw-plain':
        throw new TypeError('a plain TypeError');
      case 'double': {
        const out = request.data.map((v) => 2 * v);
        // the request's buffer arrived moved; the answer's is moved back
        return transferring({ out, received: request.data.length }, [out.buffer]);
      }
      case 'wait':
        await new Promise((resolve) => setTimeout(resolve, request.ms));
        return 'waited';
      case 'crash':
        setImmediate(() => {
          throw new Error('crashed on purpose');
        });
        return new Promise(() => undefined); // never answers: the crash must settle the call
      case 'exit':
        setImmediate(() => process.exit(request.code));
        return new Promise(() => undefined);
      case 'uncloneable':
        return { f: () => 1 };
      case 'environment':
        return { telemetry: process.env['ORT_DISABLE_TELEMETRY'], threads: setting('threads'), backend: setting('backend') };
      case 'progress':
        for (let i = 1; i <= request.count; i++) emitEvent({ done: i });
        return request.count;
    }
  },
);
