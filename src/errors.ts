/**
 * Every error hetmm raises on purpose is a HetmmError with a stable `code`,
 * so the CLI (and later the server) can print one clear line and pick an exit
 * code without parsing messages. Anything else reaching the top is a bug.
 */
export type HetmmErrorCode =
  | 'E_ARGUMENT' // a wrong value passed to a public function or CLI option
  | 'E_IMAGE_READ' // file missing or unreadable
  | 'E_IMAGE_DECODE' // not an image, corrupt, or unsupported
  | 'E_IMAGE_TOO_LARGE' // over the decoder's pixel limit
  | 'E_IMAGE_TOO_SMALL'
  | 'E_NO_IMAGES' // a directory or list with no images
  | 'E_MODEL_NOT_FOUND'
  | 'E_MODEL_INVALID' // model loads but does not fit the backbone description
  | 'E_STORE_READ'
  | 'E_STORE_FORMAT' // bad magic/version/header, truncated, checksum mismatch
  | 'E_STORE_MISMATCH' // another backbone / input size / layers than expected
  | 'E_STORE_WRITE' // could not write (e.g. disk full); the old file is intact
  | 'E_STORE_LOCKED' // another process held the store's write lock for longer than the timeout
  | 'E_WRITE' // an output file (heat map, report) could not be written
  | 'E_DATASET' // data-set layout problems (missing mask, empty split)
  | 'E_BACKEND' // a kernel backend could not load or failed
  | 'E_UNAVAILABLE' // a service the call needs (Redis, a worker for the line) is not reachable now: retry later
  | 'E_TIMEOUT' // the work did not finish within the time the caller allowed (it may still finish)
  | 'E_INTERNAL';

export class HetmmError extends Error {
  readonly code: HetmmErrorCode;
  constructor(code: HetmmErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HetmmError';
    this.code = code;
  }
}

export function isHetmmError(e: unknown): e is HetmmError {
  return e instanceof HetmmError;
}
