/**
 * The normals of a line (issue 21, undoable hot updates): list them with
 * their ids, and remove one by id, durably (the executor's removeNormals:
 * in-process, or a queue worker under the line's lock). Adding stays
 * POST /v1/lines/{line}/normals, whose answer carries the new ids.
 */
import type { FastifyInstance } from 'fastify';
import type { InspectionExecutor } from '../executor.js';

export interface NormalRouteDeps {
  readonly executor: InspectionExecutor;
}

const NORMAL_PARAMS = {
  type: 'object',
  required: ['line', 'id'],
  properties: {
    line: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$', description: 'line name' },
    id: { type: 'string', minLength: 1, maxLength: 200, description: "a normal's id, URL-encoded (GET .../normals lists them)" },
  },
} as const;

const OBJECT = { type: 'object', additionalProperties: true } as const;

export function registerNormalRoutes(app: FastifyInstance, deps: NormalRouteDeps): void {
  const { executor } = deps;
  app.get<{ Params: { line: string } }>(
    '/v1/lines/:line/normals',
    {
      schema: {
        summary: "the line's normals: id, base (fitted) or appended (a hot update), when, by which update, file name",
        params: { ...NORMAL_PARAMS, required: ['line'] },
        response: { 200: OBJECT },
      },
    },
    async (request) => executor.listNormals(request.params.line),
  );
  app.delete<{ Params: { line: string; id: string } }>(
    '/v1/lines/:line/normals/:id',
    {
      config: { mutating: true },
      schema: {
        summary:
          'undo a hot update: remove the normal with this id (durable before the answer); removing it again changes nothing (alreadyRemoved); ' +
          'an unknown id is 404; the last normal of a line is not removed (400)',
        security: [{ bearer: [] }],
        params: NORMAL_PARAMS,
        response: { 200: OBJECT },
      },
    },
    async (request) => executor.removeNormals(request.params.line, [request.params.id]),
  );
}
