/**
 * HTTP helpers shared by the app and its route modules: fastify's and the
 * plugins' errors in the server's vocabulary, a request's deadline, and the
 * route config flags the hooks read.
 */
import type { FastifyReply } from 'fastify';
import { ServerError } from './errors.js';

/** fastify's and the plugins' own errors in the server's vocabulary. */
export function asServerError(error: unknown): unknown {
  if (error instanceof ServerError || (error instanceof Error && 'code' in error && typeof error.code === 'string' && error.code.startsWith('E_'))) return error;
  const e = error as { statusCode?: number; code?: string; message?: string; validation?: unknown };
  const message = e.message ?? String(error);
  if (e.validation !== undefined) return new ServerError('E_ARGUMENT', `invalid request: ${message}`);
  switch (e.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ServerError('E_UNSUPPORTED_MEDIA', 'unsupported Content-Type: send an image (image/png, image/jpeg, ...), multipart/form-data, or JSON where the endpoint takes it');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_FILES_LIMIT':
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new ServerError('E_TOO_LARGE', `the request is over the server's limits (${message})`);
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new ServerError('E_UNSUPPORTED_MEDIA', message);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ServerError('E_ARGUMENT', message);
    default:
      break;
  }
  const status = e.statusCode;
  if (status === 413) return new ServerError('E_TOO_LARGE', message);
  if (status === 415) return new ServerError('E_UNSUPPORTED_MEDIA', message);
  if (status === 404) return new ServerError('E_NOT_FOUND', message);
  if (status === 503) return new ServerError('E_UNAVAILABLE', message, { retryAfter: 5 });
  if (status !== undefined && status >= 400 && status < 500) return new ServerError('E_ARGUMENT', message);
  // busboy's parse errors on malformed multipart bodies carry no status
  if (/multipart|boundary|unexpected end of form|malformed part header/i.test(message)) return new ServerError('E_ARGUMENT', `malformed multipart body: ${message}`);
  return error;
}

export interface RequestDeadline {
  readonly signal: AbortSignal;
  race<T>(p: Promise<T>): Promise<T>;
  done(): void;
}

/** A request's deadline: aborts the executor call's signal and answers 503 E_TIMEOUT; a client that goes away aborts it too. */
export function requestDeadline(reply: FastifyReply, ms: number): RequestDeadline {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new ServerError('E_TIMEOUT', `no answer within the server's ${ms / 1000} s request timeout`, { retryAfter: 5 })), ms);
  const onClose = (): void => {
    if (!reply.raw.writableFinished) controller.abort(new ServerError('E_TIMEOUT', 'the client went away'));
  };
  reply.raw.on('close', onClose);
  const aborted = new Promise<never>((_, reject) => {
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
  });
  aborted.catch(() => undefined);
  return {
    signal: controller.signal,
    race: (p) => Promise.race([p, aborted]),
    done: () => {
      clearTimeout(timer);
      reply.raw.off('close', onClose);
    },
  };
}

/** Route config of the health, metrics, events and page routes: they answer under pressure (@fastify/under-pressure's per-route handler). */
export const RELAXED = { pressureHandler: (): undefined => undefined } as const;

/** Route config of the calls that change a line: they need the bearer token (the app's onRequest hook checks it). */
export const MUTATING = { mutating: true } as const;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** needs the bearer token */
    mutating?: boolean;
    /** @fastify/under-pressure's per-route handler (health, metrics and the page answer under pressure) */
    pressureHandler?: () => undefined;
  }
}
