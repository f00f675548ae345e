/** Lines: list them, describe one, delete one (a data-dir line and its store). */
import type { FastifyInstance } from 'fastify';
import type { InspectionExecutor } from '../executor.js';
import { MUTATING } from '../http.js';
import { answer, errors, LINE_ERRORS, LINE_PARAMS, MUTATING_ERRORS } from '../schemas.js';
import type { RouteContext } from './context.js';

/** A line as /v1/lines shows it: its description and its queue's load. */
function lineView(executor: InspectionExecutor, name: string): Record<string, unknown> {
  return { ...executor.lineInfo(name), load: executor.load().find((l) => l.line === name) };
}

export async function lineRoutes(app: FastifyInstance, { executor, token }: Pick<RouteContext, 'executor' | 'token'>): Promise<void> {
  app.get('/v1/lines', { schema: { summary: 'list lines, the lines that cannot be served and why, and whether changes are enabled on this server', response: { 200: answer('the lines', 'LineList'), ...errors() } } }, async () => ({
    changes: token === undefined ? 'disabled' : 'token',
    lines: executor.lineNames().flatMap((n) => {
      try {
        return [lineView(executor, n)];
      } catch {
        return [];
      }
    }),
    broken: executor.brokenLines?.() ?? [],
  }));
  app.get<{ Params: { line: string } }>(
    '/v1/lines/:line',
    { schema: { summary: 'line info: templates, version, preset, threshold, store', params: LINE_PARAMS, response: { 200: answer('the line and its queue', 'Line'), ...errors(...LINE_ERRORS) } } },
    async (request) => lineView(executor, request.params.line),
  );
  app.delete<{ Params: { line: string } }>(
    '/v1/lines/:line',
    { config: MUTATING, schema: { summary: 'delete a line and its store (data-dir lines only)', security: [{ bearer: [] }], params: LINE_PARAMS, response: { 204: { description: 'deleted', type: 'null' }, ...errors(...LINE_ERRORS, ...MUTATING_ERRORS) } } },
    async (request, reply) => {
      await executor.deleteLine(request.params.line);
      return reply.code(204).send();
    },
  );
}
