/**
 * The inspection server: REST API v1, health, metrics, server-sent events
 * and the web page, as one fastify instance over an InspectionExecutor.
 * A thin layer: validation, auth, limits and HTTP shapes live here; every
 * prediction and store change is one executor call.
 *
 * This file builds the instance and its hooks (errors, pressure, auth,
 * metrics, headers); the routes are one module per resource under
 * ./routes/, each a fastify plugin given the shared state it uses
 * (./routes/context.ts).
 */
import { getHeapStatistics } from 'node:v8';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import underPressure from '@fastify/under-pressure';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { checkBearer, checkHost, hostAllowList } from './auth.js';
import { ServerError, statusOf, toErrorResponse, type ServerErrorCode } from './errors.js';
import type { InspectionExecutor } from './executor.js';
import { FitJobs } from './fit-jobs.js';
import { asServerError } from './http.js';
import { InProcessExecutor, type InProcessExecutorOptions } from './in-process-executor.js';
import { createMetrics, type ServerMetrics } from './metrics.js';
import { ResultCache } from './results.js';
import { addSharedSchemas } from './schemas.js';
import type { RouteContext } from './routes/context.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { hotUpdateRoutes } from './routes/hot-update.js';
import { jobRoutes } from './routes/jobs.js';
import { lineRoutes } from './routes/lines.js';
import { pageRoutes } from './routes/page.js';
import { predictionRoutes } from './routes/predictions.js';
import { thresholdRoutes } from './routes/thresholds.js';
import type { UploadLimits } from './uploads.js';

export interface ServerOptions extends InProcessExecutorOptions {
  /** run inspections through this executor instead of an in-process one (queue mode) */
  readonly executor?: InspectionExecutor;
  /** bearer token for mutating endpoints; undefined disables them */
  readonly token?: string;
  /** bytes per request, all files together; default 32 MiB */
  readonly bodyLimit?: number;
  /** files per multipart request; default 32 */
  readonly maxFiles?: number;
  /** per-request deadline in ms (receiving the body and computing the answer); default 30 000 */
  readonly requestTimeout?: number;
  /** pino logging: false (default for the library), true, or pino options such as {level: 'info'} */
  readonly logger?: FastifyServerOptions['logger'];
  /** 503 when the event loop lags more than this many ms; default 1000 (0: off) */
  readonly maxEventLoopDelay?: number;
  /** 503 over this heap use; default 90% of the V8 heap limit (0: off) */
  readonly maxHeapUsedBytes?: number;
  /** 503 over this resident memory; default off */
  readonly maxRssBytes?: number;
  /** recent predictions kept for "mark as normal" and map URLs; default 256 (and 64 MiB) */
  readonly keepResults?: number;
  /** the address the server listens on (`serve --host`): a Host header naming it is accepted */
  readonly host?: string;
  /**
   * Host header values accepted besides loopback names, the bound host and
   * the address a connection arrived at (`serve --allowed-hosts`): names
   * such as `inspect.plant.example`, matched without the port, case-insensitively;
   * `*` accepts any (then a DNS-rebinding page can read the API).
   */
  readonly allowedHosts?: readonly string[];
}

/** Creates the server (not yet listening): `await app.listen({port, host: '127.0.0.1'})`, or `app.inject(...)`. */
export async function createServer(options: ServerOptions = {}): Promise<FastifyInstance> {
  const executor: InspectionExecutor = options.executor ?? (await InProcessExecutor.open(options));
  const limits: UploadLimits = { bodyLimit: options.bodyLimit ?? 32 * 2 ** 20, maxFiles: options.maxFiles ?? 32 };
  const requestTimeout = options.requestTimeout ?? 30_000;
  const token = options.token;
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: limits.bodyLimit,
    requestTimeout,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
    // the router's own refusals (a path parameter over 100 characters, a malformed URL) in the one error shape
    frameworkErrors: (error, _request, reply) => {
      const { status, body } = toErrorResponse(
        error.code === 'FST_ERR_MAX_PARAM_LENGTH' || error.code === 'FST_ERR_BAD_URL'
          ? new ServerError('E_ARGUMENT', error.code === 'FST_ERR_BAD_URL' ? 'malformed URL' : 'a path segment of the URL is longer than 100 characters (line names have at most 64)')
          : error,
      );
      void (reply as FastifyReply).code(status).send(body);
    },
  });
  const metrics = createMetrics(executor);
  const results = new ResultCache(options.keepResults ?? 256);
  const streams = new Set<FastifyReply['raw']>();
  app.addHook('onClose', async () => {
    if (options.executor === undefined) await executor.close();
  });
  let closing: NodeJS.Timeout | undefined;
  app.addHook('preClose', async () => {
    for (const s of streams) s.end();
    // Keep-alive connections that finish their last request while the server drains would
    // otherwise hold the close open for the keep-alive timeout (72 s).
    closing = setInterval(() => app.server.closeIdleConnections(), 100);
    closing.unref();
  });
  app.addHook('onClose', async () => clearInterval(closing));

  // ---- errors: one shape, the library's codes -------------------------------------------------
  app.setErrorHandler((error, request, reply) => {
    const { status, body, retryAfter } = toErrorResponse(asServerError(error));
    if (status >= 500 && body.error.code !== 'E_UNAVAILABLE' && body.error.code !== 'E_TIMEOUT') request.log.error({ err: error }, 'request failed');
    countRejection(metrics, body.error.code);
    if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: { code: 'E_NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` } });
  });

  // ---- pressure, auth, metrics, security headers ------------------------------------------------
  await app.register(underPressure, {
    maxEventLoopDelay: options.maxEventLoopDelay ?? 1000,
    maxHeapUsedBytes: options.maxHeapUsedBytes ?? Math.floor(getHeapStatistics().heap_size_limit * 0.9),
    maxRssBytes: options.maxRssBytes ?? 0,
    retryAfter: 5,
    // a returned value is sent as the answer (the plugin's types say void)
    pressureHandler: ((_request: FastifyRequest, reply: FastifyReply, type: string) => {
      metrics.rejections.inc({ reason: 'pressure' });
      void reply.code(503).header('retry-after', '5');
      return { error: { code: 'E_UNAVAILABLE', message: `the server is under pressure (${type}): retry in a few seconds` } };
    }) as unknown as () => void,
  });
  await app.register(multipart, { throwFileSizeLimit: true, limits: { fileSize: limits.bodyLimit, files: limits.maxFiles } });
  for (const type of ['image/*', 'application/octet-stream']) {
    app.addContentTypeParser(type === 'image/*' ? /^image\/[\w.+-]+$/ : type, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  }
  const allowedHosts = hostAllowList(options.host, options.allowedHosts);
  app.addHook('onRequest', async (request) => {
    // DNS rebinding: a page of another site whose name now resolves to this address sends its own name as Host
    checkHost(allowedHosts, request.headers.host, request.socket?.localAddress);
    if (request.routeOptions.config.mutating === true) checkBearer(token, request.headers.authorization);
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ method: request.method, route, status: String(reply.statusCode) });
    metrics.requestSeconds.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    void reply.header('x-content-type-options', 'nosniff');
    void reply.header('x-frame-options', 'DENY');
    void reply.header('referrer-policy', 'no-referrer');
    void reply.header('cache-control', reply.getHeader('cache-control') ?? 'no-store');
    return payload;
  });

  await app.register(swagger, {
    // shared schemas keep their names in the document (components.schemas.Prediction, ...)
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    openapi: {
      info: { title: 'hetmm inspection server', version: '1', description: 'Training-free anomaly detection: predict, review and hot-update template stores ("lines").' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });

  addSharedSchemas(app);

  // ---- the routes: one module per resource, sharing only what is passed to them ----
  const context: RouteContext = { executor, token, limits, requestTimeout, results, metrics, fitJobs: new FitJobs(), streams };
  await app.register(healthRoutes, context);
  await app.register(lineRoutes, context);
  await app.register(thresholdRoutes, context);
  await app.register(jobRoutes, context);
  await app.register(predictionRoutes, context);
  await app.register(hotUpdateRoutes, context);
  await app.register(eventRoutes, context);
  await app.register(pageRoutes);
  return app;
}

function countRejection(metrics: ServerMetrics, code: ServerErrorCode): void {
  const reason = code === 'E_BUSY' ? 'busy' : code === 'E_TIMEOUT' ? 'timeout' : code === 'E_UNAVAILABLE' ? 'unavailable' : statusOf(code) === 413 ? 'too_large' : undefined;
  if (reason !== undefined) metrics.rejections.inc({ reason });
}
