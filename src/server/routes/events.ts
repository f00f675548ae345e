/** Server-sent events: every verdict and store change of a line. */
import type { FastifyInstance } from 'fastify';
import type { ExecutorEvent } from '../executor.js';
import { RELAXED } from '../http.js';
import { content, errors, LINE_ERRORS, LINE_PARAMS } from '../schemas.js';
import type { RouteContext } from './context.js';

export async function eventRoutes(app: FastifyInstance, { executor, streams }: Pick<RouteContext, 'executor' | 'streams'>): Promise<void> {
  app.get<{ Params: { line: string } }>(
    '/v1/lines/:line/events',
    {
      config: RELAXED,
      schema: {
        summary: 'server-sent events: every verdict and store change of the line (text/event-stream)',
        params: LINE_PARAMS,
        response: { 200: content("events 'line' (the line, first), 'verdict' and 'store', each with JSON data", 'text/event-stream'), ...errors(...LINE_ERRORS) },
      },
    },
    async (request, reply) => {
      const line = request.params.line;
      const info = executor.lineInfo(line);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
        'x-content-type-options': 'nosniff',
      });
      const send = (event: string, data: unknown): void => {
        // a client that does not read is dropped rather than buffered without bound
        if (res.writableLength > 1 << 20) {
          res.end();
          return;
        }
        res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      };
      res.write('retry: 3000\n\n');
      send('line', info);
      const unsubscribe = executor.subscribe((e: ExecutorEvent) => {
        if (e.line === line) send(e.type, e);
      });
      const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
      heartbeat.unref();
      streams.add(res);
      res.on('close', () => {
        clearInterval(heartbeat);
        unsubscribe();
        streams.delete(res);
      });
    },
  );
}
