/**
 * Hot update: normal images added to a line (uploads, or recent predictions
 * by id: "this one was good"), durable before the answer and idempotent.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { ServerError } from '../errors.js';
import type { ImageUpload } from '../executor.js';
import { MUTATING, requestDeadline } from '../http.js';
import { answer, errors, LINE_ERRORS, LINE_PARAMS, MUTATING_ERRORS, UPLOAD_ERRORS } from '../schemas.js';
import { readUploads } from '../uploads.js';
import type { RouteContext } from './context.js';

export async function hotUpdateRoutes(
  app: FastifyInstance,
  { executor, limits, requestTimeout, results, record }: Pick<RouteContext, 'executor' | 'limits' | 'requestTimeout' | 'results' | 'record'>,
): Promise<void> {
  app.post<{ Params: { line: string }; Querystring: { name?: string } }>(
    '/v1/lines/:line/normals',
    {
      config: MUTATING,
      schema: {
        summary:
          'hot update: add normal images (raw, multipart, or JSON {prediction: id} / {predictions: [ids]}); durable before the answer; ' +
          'idempotent: a repeated Idempotency-Key header, or a prediction already added, adds nothing (duplicates in the answer)',
        security: [{ bearer: [] }],
        params: LINE_PARAMS,
        querystring: { type: 'object', properties: { name: { type: 'string', maxLength: 200 } } },
        response: { 200: answer('added (on disk), or already there', 'HotUpdate'), ...errors(...LINE_ERRORS, ...UPLOAD_ERRORS, ...MUTATING_ERRORS) },
      },
    },
    async (request, reply) => {
      const line = request.params.line;
      executor.lineInfo(line);
      const key = idempotencyKey(request.headers['idempotency-key']);
      const body = request.body;
      const deadline = requestDeadline(reply, requestTimeout);
      try {
        let images: ImageUpload[];
        if (isJsonObject(body)) {
          const ids = predictionIds(body);
          images = ids.map((id) => {
            const r = results.kept(id);
            if (r.line !== line) throw new ServerError('E_ARGUMENT', `prediction ${id} was made on line '${r.line}', not '${line}'`);
            // the image's content is its id: marking it again (or twice in one list) adds nothing
            return { ...r.image, id: `image:${createHash('sha256').update(r.image.bytes).digest('hex')}` };
          });
        } else {
          images = (await readUploads(request, limits, request.query.name)).images;
        }
        // past the deadline the answer is 503 E_TIMEOUT though the update may still land: a retry with the same key is safe
        const outcome = await deadline.race(executor.addNormals(line, images, { signal: deadline.signal, ...(key === undefined ? {} : { key }) }));
        if (outcome.added > 0 && outcome.repeated !== true) {
          const names = images.map((i) => i.name);
          await record?.addAudit({ line, action: 'mark-normal', before: { templates: outcome.templates - outcome.added }, after: { templates: outcome.templates, version: outcome.version, images: names, ...(outcome.ids === undefined ? {} : { ids: outcome.ids }) }, tokenName: request.tokenName });
        }
        if (outcome.repeated === true) return { ...outcome, note: 'this update was already applied (the same Idempotency-Key): nothing changed; this is its answer' };
        return outcome.duplicates === 0
          ? outcome
          : { ...outcome, note: `${outcome.duplicates} of ${images.length} images were already in the store (a repeated update): not added again` };
      } finally {
        deadline.done();
      }
    },
  );
}

function isJsonObject(body: unknown): body is Record<string, unknown> {
  return typeof body === 'object' && body !== null && !Buffer.isBuffer(body) && !Array.isArray(body);
}

/** The Idempotency-Key header: 1-200 visible ASCII characters, or absent. */
function idempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (typeof header !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(header)) {
    throw new ServerError('E_ARGUMENT', 'Expected one Idempotency-Key header of 1-200 visible ASCII characters (e.g. a UUID)');
  }
  return header;
}

function predictionIds(body: Record<string, unknown>): string[] {
  const ids = typeof body.prediction === 'string' ? [body.prediction] : body.predictions;
  if (!Array.isArray(ids) || ids.length === 0 || ids.length > 256 || !ids.every((id) => typeof id === 'string' && id.length > 0 && id.length <= 64)) {
    throw new ServerError('E_ARGUMENT', 'Expected JSON {"prediction": "<id>"} or {"predictions": ["<id>", ...]} (ids of recent predictions)');
  }
  return ids as string[];
}
