/** Liveness, readiness, Prometheus metrics and the OpenAPI document. */
import type { FastifyInstance } from 'fastify';
import { ServerError } from '../errors.js';
import { RELAXED } from '../http.js';
import { answer, content, errors } from '../schemas.js';
import type { RouteContext } from './context.js';

export async function healthRoutes(app: FastifyInstance, { executor, metrics }: Pick<RouteContext, 'executor' | 'metrics'>): Promise<void> {
  app.get('/healthz', { config: RELAXED, schema: { summary: 'liveness', response: { 200: answer('the process answers', 'Health'), ...errors() } } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { config: RELAXED, schema: { summary: 'readiness: stores loaded, backend ready', response: { 200: answer('every line loaded, the backend ready', 'Ready'), ...errors() } } }, async (_request, reply) => {
    if (!executor.ready()) throw new ServerError('E_UNAVAILABLE', executor.notReadyReason?.() ?? 'not ready', { retryAfter: 5 });
    return reply.send({ status: 'ready', executor: executor.kind, lines: executor.lineNames(), broken: executor.brokenLines?.() ?? [] });
  });
  app.get('/metrics', { config: RELAXED, schema: { summary: 'Prometheus metrics', response: { 200: content('Prometheus text exposition format', 'text/plain'), ...errors() } } }, async (_request, reply) => {
    void reply.header('content-type', metrics.registry.contentType);
    return (await metrics.registry.metrics()) + ((await executor.metricsText?.()) ?? '');
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
