/**
 * Reading images out of a request: a raw `image/*` (or octet-stream) body,
 * or multipart with one or many files. Everything is held in memory and
 * bounded: the body limit applies to the whole request, multipart included.
 */
import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { ServerError } from './errors.js';
import type { ImageUpload } from './executor.js';

export interface UploadLimits {
  /** bytes in one request, all files together */
  readonly bodyLimit: number;
  /** files in one multipart request */
  readonly maxFiles: number;
}

export interface ReadUploads {
  readonly images: ImageUpload[];
  /** multipart text fields (name, preset, ...) */
  readonly fields: Record<string, string>;
}

/** A display name from an upload's file name: no directories, no control characters, at most 100 characters. */
export function displayName(name: string | undefined, fallback: string): string {
  const base = (name ?? '').split(/[\\/]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  const clean = base.replace(/[\u0000-\u001f\u007f]/g, '').slice(0, 100);
  return clean === '' ? fallback : clean;
}

/** The filename of a `Content-Disposition: attachment; filename="x.png"` header (plain or RFC 5987 `filename*=UTF-8''x.png`). */
export function dispositionFileName(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const extended = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(header);
  if (extended !== null) {
    try {
      return decodeURIComponent(extended[1]!.trim());
    } catch {
      return undefined;
    }
  }
  const plain = /filename\s*=\s*("([^"]*)"|[^;\s]+)/i.exec(header);
  return plain === null ? undefined : (plain[2] ?? plain[1]);
}

export async function readUploads(request: FastifyRequest, limits: UploadLimits, nameFromQuery?: string): Promise<ReadUploads> {
  if (request.isMultipart()) return readMultipart(request, limits);
  const body = request.body;
  if (Buffer.isBuffer(body)) {
    if (body.length === 0) throw new ServerError('E_NO_IMAGES', 'the request body is empty: send an image file (PNG, JPEG, BMP, TIFF, WebP)');
    // a raw body's name: ?name=, else the Content-Disposition filename, else one from its content (not a bare 'upload')
    const name = nameFromQuery ?? dispositionFileName(request.headers['content-disposition']);
    return { images: [{ bytes: body, name: displayName(name, `upload-${createHash('sha256').update(body).digest('hex').slice(0, 12)}`) }], fields: {} };
  }
  if (body === undefined || body === null) {
    throw new ServerError('E_NO_IMAGES', 'no image: send one as the body (Content-Type: image/png, image/jpeg, ...) or as multipart/form-data files');
  }
  throw new ServerError('E_UNSUPPORTED_MEDIA', `this endpoint takes images (image/*, application/octet-stream or multipart/form-data), not ${request.headers['content-type'] ?? 'an untyped body'}`);
}

/** RFC 2046 allows 70; busboy's search fails past 252 (with a 500). Some generous room for clients that exceed the RFC. */
const MAX_BOUNDARY = 200;

async function readMultipart(request: FastifyRequest, limits: UploadLimits): Promise<ReadUploads> {
  const boundary = /boundary=(?:"([^"]*)"|([^;\s]*))/i.exec(request.headers['content-type'] ?? '');
  const length = (boundary?.[1] ?? boundary?.[2] ?? '').length;
  if (length === 0 || length > MAX_BOUNDARY) {
    throw new ServerError('E_ARGUMENT', `malformed multipart body: the Content-Type needs a boundary of 1-${MAX_BOUNDARY} characters (found ${length})`);
  }
  const images: ImageUpload[] = [];
  const fields: Record<string, string> = {};
  let total = 0;
  const tooLarge = (): ServerError =>
    new ServerError('E_TOO_LARGE', `the upload is over the server's limit of ${limits.bodyLimit} bytes per request`);
  const parts = request.parts({ limits: { fileSize: limits.bodyLimit, files: limits.maxFiles, fields: 20, fieldSize: 4096, parts: limits.maxFiles + 20 } });
  for await (const part of parts) {
    if (part.type === 'field') {
      if (typeof part.value === 'string') fields[part.fieldname] = part.value;
      continue;
    }
    let bytes: Buffer;
    try {
      bytes = await part.toBuffer();
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 413) throw tooLarge();
      throw e;
    }
    total += bytes.length;
    if (total > limits.bodyLimit) throw tooLarge();
    if (bytes.length === 0) throw new ServerError('E_NO_IMAGES', `the file ${JSON.stringify(displayName(part.filename, part.fieldname))} is empty`);
    images.push({ bytes, name: displayName(part.filename, `upload-${images.length + 1}`) });
  }
  return { images, fields };
}
