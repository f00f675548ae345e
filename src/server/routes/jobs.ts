/**
 * Jobs: a new line fitted from uploaded normal images (POST /v1/lines, a
 * job to poll) and GET /v1/jobs/{id} (fit jobs; in queue mode also the
 * executor's prediction jobs).
 */
import type { FastifyInstance } from 'fastify';
import { ServerError } from '../errors.js';
import type { FitOptions } from '../executor.js';
import { MUTATING } from '../http.js';
import { validateLineName } from '../line-name.js';
import { answer, errors, MUTATING_ERRORS, ref, UPLOAD_ERRORS } from '../schemas.js';
import { readUploads } from '../uploads.js';
import type { RouteContext } from './context.js';

interface CreateLineQuery {
  name?: string;
  preset?: string;
  calibrate?: number;
  dtype?: 'float32' | 'float16';
  precision?: 'float' | 'int8';
}

export async function jobRoutes(app: FastifyInstance, { executor, limits, fitJobs }: Pick<RouteContext, 'executor' | 'limits' | 'fitJobs'>): Promise<void> {
  app.post<{ Querystring: CreateLineQuery }>(
    '/v1/lines',
    {
      config: MUTATING,
      schema: {
        summary: 'fit a new line from uploaded normal images (multipart; field "name" or ?name=); answers a job to poll',
        security: [{ bearer: [] }],
        querystring: {
          type: 'object',
          properties: {
            name: { type: 'string' },
            preset: { type: 'string', maxLength: 64 },
            calibrate: { type: 'integer', minimum: 0, maximum: 1000 },
            dtype: { type: 'string', enum: ['float32', 'float16'] },
            precision: { type: 'string', enum: ['float', 'int8'] },
          },
        },
        response: { 202: answer('the fit job to poll', 'JobAccepted'), ...errors(...UPLOAD_ERRORS, ...MUTATING_ERRORS, 409) },
      },
    },
    async (request, reply) => {
      const { images, fields } = await readUploads(request, limits);
      const name = validateLineName(request.query.name ?? fields.name ?? '');
      const fit: FitOptions = {
        preset: request.query.preset ?? fields.preset ?? 'default',
        ...(request.query.calibrate === undefined ? {} : { calibrate: request.query.calibrate }),
        ...(request.query.dtype === undefined ? {} : { dtype: request.query.dtype }),
        ...(request.query.precision === undefined ? {} : { precision: request.query.precision }),
      };
      if (images.length === 0) throw new ServerError('E_NO_IMAGES', 'a new line needs normal images (multipart files)');
      if (executor.lineNames().includes(name) || fitJobs.fitting(name)) {
        throw new ServerError('E_CONFLICT', `line '${name}' already exists or is being created`);
      }
      if ((executor.brokenLines?.() ?? []).some((b) => b.line === name)) {
        throw new ServerError('E_CONFLICT', `line '${name}' exists but its store does not open (GET /v1/lines lists why): it is not replaced over HTTP`);
      }
      const job = fitJobs.start(executor, name, images, fit, (e) => request.log.warn({ err: e, line: name }, 'fit failed'));
      return reply.code(202).header('location', `/v1/jobs/${job.id}`).send({ job: { id: job.id, line: name, url: `/v1/jobs/${job.id}` } });
    },
  );
  app.get<{ Params: { id: string } }>(
    '/v1/jobs/:id',
    {
      schema: {
        summary: 'a job: a fit job (state, progress, the new line), or in queue mode a queued prediction or change',
        response: { 200: { description: 'the job', anyOf: [ref('FitJob'), ref('QueueJob')] }, ...errors(400, 404) },
      },
    },
    async (request) => {
      const job = fitJobs.get(request.params.id);
      if (job === undefined && executor.jobStatus !== undefined) return executor.jobStatus(request.params.id); // queue mode: predictions too
      if (job === undefined) throw new ServerError('E_NOT_FOUND', `no job ${JSON.stringify(request.params.id.slice(0, 40))}`);
      return job;
    },
  );
}
