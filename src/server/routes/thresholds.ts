/** A line's deployment threshold, set by hand. */
import type { FastifyInstance } from 'fastify';
import { MUTATING } from '../http.js';
import { answer, errors, LINE_ERRORS, LINE_PARAMS, MUTATING_ERRORS } from '../schemas.js';
import type { RouteContext } from './context.js';

export async function thresholdRoutes(app: FastifyInstance, { executor }: Pick<RouteContext, 'executor'>): Promise<void> {
  app.put<{ Params: { line: string }; Body: { value: number } }>(
    '/v1/lines/:line/threshold',
    {
      config: MUTATING,
      schema: {
        summary: 'set the deployment threshold (durable before the answer)',
        security: [{ bearer: [] }],
        params: LINE_PARAMS,
        body: { type: 'object', required: ['value'], additionalProperties: false, properties: { value: { type: 'number' } } },
        response: { 200: answer('the line with its new threshold (on disk)', 'Line'), ...errors(...LINE_ERRORS, ...MUTATING_ERRORS) },
      },
    },
    async (request) => executor.setThreshold(request.params.line, request.body.value),
  );
}
