/**
 * The normals of a line (issue 21, undoable hot updates): list them with
 * their ids, and remove one by id, durably (the executor's removeNormals:
 * in-process, or a queue worker under the line's lock). Adding stays
 * POST /v1/lines/{line}/normals (./hot-update.ts), whose answer carries
 * the new ids.
 */
import type { FastifyInstance } from 'fastify';
import { MUTATING } from '../http.js';
import { answer, errors, LINE_ERRORS, LINE_PARAMS, MUTATING_ERRORS } from '../schemas.js';
import type { RouteContext } from './context.js';

const NORMAL_PARAMS = {
  ...LINE_PARAMS,
  required: ['line', 'id'],
  properties: {
    ...LINE_PARAMS.properties,
    id: { type: 'string', minLength: 1, maxLength: 200, description: "a normal's id, URL-encoded (GET /v1/lines/{line}/normals lists them)" },
  },
} as const;

export async function normalRoutes(app: FastifyInstance, { executor, record }: Pick<RouteContext, 'executor' | 'record'>): Promise<void> {
  app.get<{ Params: { line: string } }>(
    '/v1/lines/:line/normals',
    {
      schema: {
        summary: "the line's normals: id, base (fitted) or appended (a hot update), when, by which update, file name",
        params: LINE_PARAMS,
        response: { 200: answer("the line's normals", 'NormalList'), ...errors(...LINE_ERRORS) },
      },
    },
    async (request) => executor.listNormals(request.params.line),
  );
  app.delete<{ Params: { line: string; id: string } }>(
    '/v1/lines/:line/normals/:id',
    {
      config: MUTATING,
      schema: {
        summary:
          'undo a hot update: remove the normal with this id (durable before the answer); removing it again changes nothing (alreadyRemoved); ' +
          'an unknown id is 404; the last normal of a line is not removed (400)',
        security: [{ bearer: [] }],
        params: NORMAL_PARAMS,
        response: { 200: answer('removed (on disk), or removed before', 'NormalsRemoval'), ...errors(...LINE_ERRORS, ...MUTATING_ERRORS) },
      },
    },
    async (request) => {
      const line = request.params.line;
      const outcome = await executor.removeNormals(line, [request.params.id]);
      if (outcome.removed.length > 0) {
        const before = outcome.templates + outcome.removed.length;
        await record?.addAudit({ line, action: 'remove-normal', before: { templates: before, ids: outcome.removed }, after: { templates: outcome.templates, version: outcome.version }, tokenName: request.tokenName });
      }
      return outcome;
    },
  );
}
