/**
 * The server's one error shape, `{error: {code, message}}`, with the
 * library's HetmmError codes plus the few that only exist over HTTP, and the
 * status each code answers with. Executors (in-process or queue) throw
 * ServerError or HetmmError; the HTTP layer turns both into this shape.
 */
import { isHetmmError, type HetmmErrorCode } from '../errors.js';

export type ServerErrorCode =
  | HetmmErrorCode
  | 'E_NOT_FOUND' // unknown line, prediction, job or route
  | 'E_UNAUTHORIZED' // missing or wrong bearer token
  | 'E_FORBIDDEN' // mutating endpoints disabled (no token configured)
  | 'E_CONFLICT' // a line of that name exists / is being created
  | 'E_TOO_LARGE' // request body over the limit
  | 'E_UNSUPPORTED_MEDIA' // content type the endpoint does not take
  | 'E_BUSY' // the line's queue is full: retry after Retry-After seconds
  | 'E_TIMEOUT' // the request took longer than the server's timeout
  | 'E_UNAVAILABLE'; // shutting down, not ready, or under pressure

export class ServerError extends Error {
  readonly code: ServerErrorCode;
  /** seconds, for 429 and 503 answers */
  readonly retryAfter?: number;
  constructor(code: ServerErrorCode, message: string, options: { retryAfter?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'ServerError';
    this.code = code;
    if (options.retryAfter !== undefined) this.retryAfter = options.retryAfter;
  }
}

export function isServerError(e: unknown): e is ServerError {
  return e instanceof ServerError;
}

/** The HTTP status of each code. */
export function statusOf(code: ServerErrorCode): number {
  switch (code) {
    case 'E_ARGUMENT':
    case 'E_NO_IMAGES':
      return 400;
    case 'E_UNAUTHORIZED':
      return 401;
    case 'E_FORBIDDEN':
      return 403;
    case 'E_NOT_FOUND':
      return 404;
    case 'E_CONFLICT':
      return 409;
    case 'E_TOO_LARGE':
    case 'E_IMAGE_TOO_LARGE':
      return 413;
    case 'E_UNSUPPORTED_MEDIA':
      return 415;
    case 'E_IMAGE_DECODE':
    case 'E_IMAGE_TOO_SMALL':
    case 'E_IMAGE_READ':
      return 422;
    case 'E_BUSY':
      return 429;
    case 'E_TIMEOUT':
    case 'E_UNAVAILABLE':
      return 503;
    default:
      // store, model, backend and internal failures are the server's
      return 500;
  }
}

export interface ErrorBody {
  readonly error: { readonly code: ServerErrorCode; readonly message: string };
}

/** Any thrown value as {status, body, retryAfter}; unknown errors are E_INTERNAL without their message. */
export function toErrorResponse(e: unknown): { status: number; body: ErrorBody; retryAfter?: number } {
  if (isServerError(e) || isHetmmError(e)) {
    const code = e.code as ServerErrorCode;
    const retryAfter = isServerError(e) ? e.retryAfter : undefined;
    return { status: statusOf(code), body: { error: { code, message: e.message } }, ...(retryAfter === undefined ? {} : { retryAfter }) };
  }
  return { status: 500, body: { error: { code: 'E_INTERNAL', message: 'internal error (see the server log)' } } };
}
