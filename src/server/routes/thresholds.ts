/** A line's deployment threshold, set by hand. */
import type { FastifyInstance } from 'fastify';
import { MUTATING } from '../http.js';
import { answer, errors, LINE_ERRORS, LINE_PARAMS, MUTATING_ERRORS } from '../schemas.js';
import type { RouteContext } from './context.js';

export async function thresholdRoutes(app: FastifyInstance, { executor, record }: Pick<RouteContext, 'executor' | 'record'>): Promise<void> {
  app.put<{ Params: { line: string }; Body: { value: number } }>(
    '/v1/lines/:line/threshold',
    {
      config: MUTATING,
      schema: {
        summary: 'set the deployment threshold (durable before the answer)',
        security: [{ bearer: [] }],
        params: LINE_PARAMS,
        body: { type: 'object', required: ['value'], additionalProperties: false, properties: { value: { type: 'number', exclusiveMinimum: 0, description: 'a score: above 0 (an empty box or a negative number is refused)' } } },
        response: { 200: answer('the line with its new threshold (on disk)', 'Line'), ...errors(...LINE_ERRORS, ...MUTATING_ERRORS) },
      },
    },
    async (request) => {
      const line = request.params.line;
      const before = executor.lineInfo(line).threshold;
      const info = await executor.setThreshold(line, request.body.value);
      const state = (t: typeof before): Record<string, unknown> => (t === undefined ? {} : { threshold: t.value, method: t.method });
      await record?.addAudit({ line, action: 'threshold', before: state(before), after: state(info.threshold), tokenName: request.tokenName });
      return info;
    },
  );
}
