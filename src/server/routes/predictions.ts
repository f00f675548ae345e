/**
 * Predictions: score uploaded images on a line (POST /v1/lines/{line}/predict)
 * and the recent ones kept for review, with their maps and image.
 */
import type { FastifyInstance } from 'fastify';
import { ServerError, toErrorResponse } from '../errors.js';
import { MAPS_OPTIONS, type ImageUpload, type MapsOption, type PredictOutcome } from '../executor.js';
import { asServerError, requestDeadline } from '../http.js';
import { newPredictionId, type KeptResult } from '../results.js';
import { answer, content, errors, LINE_ERRORS, LINE_PARAMS, ref, UPLOAD_ERRORS } from '../schemas.js';
import { readUploads } from '../uploads.js';
import type { RouteContext } from './context.js';

interface PredictQuery {
  maps?: MapsOption;
  inline?: boolean;
  name?: string;
  minVersion?: number;
  async?: boolean;
}

export async function predictionRoutes(
  app: FastifyInstance,
  { executor, limits, requestTimeout, results, metrics }: Pick<RouteContext, 'executor' | 'limits' | 'requestTimeout' | 'results' | 'metrics'>,
): Promise<void> {
  app.post<{ Params: { line: string }; Querystring: PredictQuery }>(
    '/v1/lines/:line/predict',
    {
      // A full queue refuses before the body is read: under overload, 429s must stay cheap.
      onRequest: async (request) => {
        const load = executor.load().find((l) => l.line === request.params.line);
        if (load !== undefined && load.queued >= load.queueLimit) {
          throw new ServerError('E_BUSY', `line '${load.line}' is busy (${load.running} running, ${load.queued} waiting): retry later`, {
            retryAfter: load.retryAfter ?? 1,
          });
        }
      },
      schema: {
        summary: 'score images: raw image body (image/*) or multipart files',
        description:
          'maps=none (default) | png (heat-map overlay and mask PNG) | npy (raw float32 anomaly map); inline=true puts them in the JSON as data URLs, else they are URLs under /v1/predictions/{id}/. One image answers one result; multipart with several files answers {results: [...]}.',
        params: LINE_PARAMS,
        querystring: {
          type: 'object',
          properties: {
            maps: { type: 'string', enum: [...MAPS_OPTIONS] },
            inline: { type: 'boolean' },
            name: { type: 'string', maxLength: 200 },
            minVersion: { type: 'integer', minimum: 0 },
            async: { type: 'boolean' },
          },
        },
        response: {
          200: { description: 'one image: its prediction; several: one result per file', anyOf: [ref('Prediction'), ref('PredictionBatch')] },
          202: answer('async=true (queue mode): the jobs to poll', 'JobAccepted'),
          ...errors(...LINE_ERRORS, ...UPLOAD_ERRORS, 429),
        },
      },
    },
    async (request, reply) => {
      const line = request.params.line;
      executor.lineInfo(line); // 404 before any work
      const deadline = requestDeadline(reply, requestTimeout);
      try {
        const { images } = await readUploads(request, limits, request.query.name);
        if (images.length === 0) throw new ServerError('E_NO_IMAGES', 'no image in the request');
        const maps = request.query.maps ?? 'none';
        const inline = request.query.inline === true;
        const minVersion = request.query.minVersion === undefined ? {} : { minVersion: request.query.minVersion };
        if (request.query.async === true) {
          // queue mode: answer job ids at once; results by GET /v1/jobs/{id} and on the SSE feed
          const submit = executor.submitPredict?.bind(executor);
          if (submit === undefined) throw new ServerError('E_ARGUMENT', 'async=1 needs queue mode (hetmm serve --redis URL)');
          const ids = await Promise.all(images.map((image) => submit({ line, id: newPredictionId(), image, maps, ...minVersion })));
          const jobs = ids.map((id) => ({ id, url: `/v1/jobs/${id}` }));
          return reply.code(202).header('location', jobs[0]!.url).send(jobs.length === 1 ? { job: jobs[0] } : { jobs });
        }
        const one = async (image: ImageUpload): Promise<Record<string, unknown>> => {
          const id = newPredictionId();
          const outcome = await deadline.race(executor.predict({ line, id, image, maps, signal: deadline.signal, ...minVersion }));
          const kept: KeptResult = { id, line, image, outcome, at: new Date().toISOString() };
          results.add(kept);
          metrics.observeStages(line, outcome.timings);
          metrics.verdicts.inc({ line, label: outcome.label ?? 'none' });
          return predictionJson(kept, inline);
        };
        if (images.length === 1) return await one(images[0]!);
        const settled = await Promise.allSettled(images.map(one));
        if (settled.every((s) => s.status === 'rejected')) throw (settled[0] as PromiseRejectedResult).reason;
        return {
          results: settled.map((s, i) =>
            s.status === 'fulfilled' ? s.value : { name: images[i]!.name, ...toErrorResponse(asServerError(s.reason)).body },
          ),
        };
      } finally {
        deadline.done();
      }
    },
  );

  // ---- predictions kept for review ----
  app.get<{ Params: { id: string } }>('/v1/predictions/:id', { schema: { summary: 'a recent prediction', response: { 200: answer('the prediction', 'Prediction'), ...errors(400, 404) } } }, async (request) =>
    predictionJson(results.kept(request.params.id), false),
  );
  const file = (name: string, type: string | ((r: KeptResult) => string), get: (r: KeptResult) => Buffer | undefined): void => {
    const documented = typeof type === 'string' ? type : 'image/*';
    app.get<{ Params: { id: string } }>(`/v1/predictions/:id/${name}`, { schema: { summary: `a recent prediction's ${name}`, response: { 200: content(name, documented, 'binary'), ...errors(400, 404) } } }, async (request, reply) => {
      const r = results.kept(request.params.id);
      const bytes = get(r);
      if (bytes === undefined) throw new ServerError('E_NOT_FOUND', `prediction ${r.id} has no ${name} (ask for it with ?maps=png or ?maps=npy)`);
      return reply.header('content-type', typeof type === 'string' ? type : type(r)).header('cache-control', 'private, max-age=3600').send(bytes);
    });
  };
  file('heatmap.png', 'image/png', (r) => r.outcome.maps.heatmapPng);
  file('mask.png', 'image/png', (r) => r.outcome.maps.maskPng);
  file('map.npy', 'application/octet-stream', (r) => r.outcome.maps.anomalyNpy);
  file('image', (r) => imageType(r.image.bytes), (r) => r.image.bytes);
}

/** A kept prediction as JSON: its maps as URLs under /v1/predictions/{id}/, or inline as data URLs. */
function predictionJson(r: KeptResult, inline: boolean): Record<string, unknown> {
  const o: PredictOutcome = r.outcome;
  const url = (name: string, bytes: Buffer | undefined, type: string): string | undefined =>
    bytes === undefined ? undefined : inline ? `data:${type};base64,${bytes.toString('base64')}` : `/v1/predictions/${r.id}/${name}`;
  const maps: Record<string, string> = {};
  const add = (key: string, value: string | undefined): void => {
    if (value !== undefined) maps[key] = value;
  };
  add('heatmap', url('heatmap.png', o.maps.heatmapPng, 'image/png'));
  add('mask', url('mask.png', o.maps.maskPng, 'image/png'));
  add('npy', url('map.npy', o.maps.anomalyNpy, 'application/octet-stream'));
  return {
    id: r.id,
    line: o.line,
    name: r.image.name,
    score: o.score,
    ...(o.label === undefined ? {} : { label: o.label, threshold: o.threshold }),
    templates: o.templates,
    version: o.version,
    width: o.width,
    height: o.height,
    timings: o.timings,
    maps,
    at: r.at,
  };
}

/** The media type of an uploaded image by its first bytes (browsers refuse to guess under nosniff). */
function imageType(bytes: Buffer): string {
  const starts = (...b: number[]): boolean => b.every((v, i) => bytes[i] === v);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'image/png';
  if (starts(0xff, 0xd8, 0xff)) return 'image/jpeg';
  if (starts(0x42, 0x4d)) return 'image/bmp';
  if (starts(0x52, 0x49, 0x46, 0x46) && bytes.subarray(8, 12).toString('latin1') === 'WEBP') return 'image/webp';
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a)) return 'image/tiff';
  return 'application/octet-stream';
}
