/**
 * The inspection server: REST API v1, health, metrics, server-sent events
 * and the web page, as one fastify instance over an InspectionExecutor.
 * A thin layer: validation, auth, limits and HTTP shapes live here; every
 * prediction and store change is one executor call.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { getHeapStatistics } from 'node:v8';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import underPressure from '@fastify/under-pressure';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { packageRoot } from '../backbone/index.js';
import { checkBearer, checkHost, hostAllowList } from './auth.js';
import { ServerError, statusOf, toErrorResponse, type ServerErrorCode } from './errors.js';
import { MAPS_OPTIONS, type ExecutorEvent, type FitOptions, type ImageUpload, type InspectionExecutor, type MapsOption, type PredictOutcome } from './executor.js';
import { InProcessExecutor, type InProcessExecutorOptions } from './in-process-executor.js';
import { validateLineName } from './line-name.js';
import { createMetrics, type ServerMetrics } from './metrics.js';
import { newPredictionId, ResultCache, type KeptResult } from './results.js';
import { readUploads, type UploadLimits } from './uploads.js';
import { registerNormalRoutes } from './routes/normals.js';

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

interface Job {
  readonly id: string;
  readonly line: string;
  state: 'running' | 'done' | 'failed';
  progress: { stage: string; done: number; total: number };
  result?: unknown;
  error?: { code: ServerErrorCode; message: string };
  readonly startedAt: string;
  finishedAt?: string;
}

const LINE_PARAMS = {
  type: 'object',
  required: ['line'],
  properties: { line: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$', description: 'line name' } },
} as const;

const ERROR_RESPONSE = {
  description: 'error: {error: {code, message}}',
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } },
} as const;

const ANY_OBJECT = { type: 'object', additionalProperties: true } as const;

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
  const jobs = new Map<string, Job>();
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
    openapi: {
      info: { title: 'hetmm inspection server', version: '1', description: 'Training-free anomaly detection: predict, review and hot-update template stores ("lines").' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });

  const relaxed = { pressureHandler: (): undefined => undefined };

  // ---- health, metrics, OpenAPI -------------------------------------------------------------------
  app.get('/healthz', { config: relaxed, schema: { summary: 'liveness', response: { 200: ANY_OBJECT } } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { config: relaxed, schema: { summary: 'readiness: stores loaded, backend ready', response: { 200: ANY_OBJECT, 503: ERROR_RESPONSE } } }, async (_request, reply) => {
    if (!executor.ready()) throw new ServerError('E_UNAVAILABLE', executor.notReadyReason?.() ?? 'not ready', { retryAfter: 5 });
    return reply.send({ status: 'ready', executor: executor.kind, lines: executor.lineNames(), broken: executor.brokenLines?.() ?? [] });
  });
  app.get('/metrics', { config: relaxed, schema: { summary: 'Prometheus metrics' } }, async (_request, reply) => {
    void reply.header('content-type', metrics.registry.contentType);
    return (await metrics.registry.metrics()) + ((await executor.metricsText?.()) ?? '');
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  // ---- lines --------------------------------------------------------------------------------------
  const lineView = (name: string): Record<string, unknown> => ({
    ...executor.lineInfo(name),
    load: executor.load().find((l) => l.line === name),
  });
  app.get('/v1/lines', { schema: { summary: 'list lines, the lines that cannot be served and why, and whether changes are enabled on this server', response: { 200: ANY_OBJECT } } }, async () => ({
    changes: token === undefined ? 'disabled' : 'token',
    lines: executor.lineNames().flatMap((n) => {
      try {
        return [lineView(n)];
      } catch {
        return [];
      }
    }),
    broken: executor.brokenLines?.() ?? [],
  }));
  app.get<{ Params: { line: string } }>(
    '/v1/lines/:line',
    { schema: { summary: 'line info: templates, version, preset, threshold, store', params: LINE_PARAMS, response: { 200: ANY_OBJECT, 404: ERROR_RESPONSE } } },
    async (request) => lineView(request.params.line),
  );
  app.put<{ Params: { line: string }; Body: { value: number } }>(
    '/v1/lines/:line/threshold',
    {
      config: { mutating: true },
      schema: {
        summary: 'set the deployment threshold (durable before the answer)',
        security: [{ bearer: [] }],
        params: LINE_PARAMS,
        body: { type: 'object', required: ['value'], additionalProperties: false, properties: { value: { type: 'number' } } },
        response: { 200: ANY_OBJECT },
      },
    },
    async (request) => executor.setThreshold(request.params.line, request.body.value),
  );
  app.delete<{ Params: { line: string } }>(
    '/v1/lines/:line',
    { config: { mutating: true }, schema: { summary: 'delete a line and its store (data-dir lines only)', security: [{ bearer: [] }], params: LINE_PARAMS } },
    async (request, reply) => {
      await executor.deleteLine(request.params.line);
      return reply.code(204).send();
    },
  );
  app.post<{ Querystring: { name?: string; preset?: string; calibrate?: number; dtype?: 'float32' | 'float16'; precision?: 'float' | 'int8' } }>(
    '/v1/lines',
    {
      config: { mutating: true },
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
        response: { 202: ANY_OBJECT },
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
      if (executor.lineNames().includes(name) || [...jobs.values()].some((j) => j.line === name && j.state === 'running')) {
        throw new ServerError('E_CONFLICT', `line '${name}' already exists or is being created`);
      }
      if ((executor.brokenLines?.() ?? []).some((b) => b.line === name)) {
        throw new ServerError('E_CONFLICT', `line '${name}' exists but its store does not open (GET /v1/lines lists why): it is not replaced over HTTP`);
      }
      const job: Job = { id: newPredictionId(), line: name, state: 'running', progress: { stage: 'features', done: 0, total: images.length }, startedAt: new Date().toISOString() };
      jobs.set(job.id, job);
      for (const id of jobs.keys()) if (jobs.size > 50 && jobs.get(id)!.state !== 'running') jobs.delete(id);
      executor
        .createLine(name, images, fit, (p) => {
          job.progress = { ...p };
        })
        .then(
          (info) => {
            job.state = 'done';
            job.result = info;
          },
          (e: unknown) => {
            job.state = 'failed';
            job.error = toErrorResponse(asServerError(e)).body.error;
            request.log.warn({ err: e, line: name }, 'fit failed');
          },
        )
        .finally(() => {
          job.finishedAt = new Date().toISOString();
        });
      return reply.code(202).header('location', `/v1/jobs/${job.id}`).send({ job: { id: job.id, line: name, url: `/v1/jobs/${job.id}` } });
    },
  );
  app.get<{ Params: { id: string } }>('/v1/jobs/:id', { schema: { summary: 'a fit job: state and progress', response: { 200: ANY_OBJECT } } }, async (request) => {
    const job = jobs.get(request.params.id);
    if (job === undefined && executor.jobStatus !== undefined) return executor.jobStatus(request.params.id); // queue mode: predictions too
    if (job === undefined) throw new ServerError('E_NOT_FOUND', `no job ${JSON.stringify(request.params.id.slice(0, 40))}`);
    return job;
  });

  // ---- predict ------------------------------------------------------------------------------------
  interface PredictQuery {
    maps?: MapsOption;
    inline?: boolean;
    name?: string;
    minVersion?: number;
    async?: boolean;
  }
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
        response: { 200: ANY_OBJECT, 413: ERROR_RESPONSE, 415: ERROR_RESPONSE, 422: ERROR_RESPONSE, 429: ERROR_RESPONSE, 503: ERROR_RESPONSE },
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
        if (request.query.async === true) {
          // queue mode: answer job ids at once; results by GET /v1/jobs/{id} and on the SSE feed
          const submit = executor.submitPredict?.bind(executor);
          if (submit === undefined) throw new ServerError('E_ARGUMENT', 'async=1 needs queue mode (hetmm serve --redis URL)');
          const minVersion = request.query.minVersion === undefined ? {} : { minVersion: request.query.minVersion };
          const ids = await Promise.all(images.map((image) => submit({ line, id: newPredictionId(), image, maps, ...minVersion })));
          const jobs = ids.map((id) => ({ id, url: `/v1/jobs/${id}` }));
          return reply.code(202).header('location', jobs[0]!.url).send(jobs.length === 1 ? { job: jobs[0] } : { jobs });
        }
        const one = async (image: (typeof images)[number]): Promise<Record<string, unknown>> => {
          const id = newPredictionId();
          const outcome = await deadline.race(
            executor.predict({ line, id, image, maps, signal: deadline.signal, ...(request.query.minVersion === undefined ? {} : { minVersion: request.query.minVersion }) }),
          );
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

  // ---- predictions kept for review ------------------------------------------------------------------
  const kept = (id: string): KeptResult => {
    const r = results.get(id);
    if (r === undefined) throw new ServerError('E_NOT_FOUND', `no recent prediction ${JSON.stringify(id.slice(0, 40))}: the server keeps its last ${options.keepResults ?? 256} predictions in memory only, so they do not survive a restart`);
    return r;
  };
  app.get<{ Params: { id: string } }>('/v1/predictions/:id', { schema: { summary: 'a recent prediction', response: { 200: ANY_OBJECT } } }, async (request) =>
    predictionJson(kept(request.params.id), false),
  );
  const file = (name: string, type: string | ((r: KeptResult) => string), get: (r: KeptResult) => Buffer | undefined): void => {
    app.get<{ Params: { id: string } }>(`/v1/predictions/:id/${name}`, { schema: { summary: `a recent prediction's ${name}` } }, async (request, reply) => {
      const r = kept(request.params.id);
      const bytes = get(r);
      if (bytes === undefined) throw new ServerError('E_NOT_FOUND', `prediction ${r.id} has no ${name} (ask for it with ?maps=png or ?maps=npy)`);
      return reply.header('content-type', typeof type === 'string' ? type : type(r)).header('cache-control', 'private, max-age=3600').send(bytes);
    });
  };
  file('heatmap.png', 'image/png', (r) => r.outcome.maps.heatmapPng);
  file('mask.png', 'image/png', (r) => r.outcome.maps.maskPng);
  file('map.npy', 'application/octet-stream', (r) => r.outcome.maps.anomalyNpy);
  file('image', (r) => imageType(r.image.bytes), (r) => r.image.bytes);

  // ---- hot update ---------------------------------------------------------------------------------------
  app.post<{ Params: { line: string }; Querystring: { name?: string } }>(
    '/v1/lines/:line/normals',
    {
      config: { mutating: true },
      schema: {
        summary:
          'hot update: add normal images (raw, multipart, or JSON {prediction: id} / {predictions: [ids]}); durable before the answer; ' +
          'idempotent: a repeated Idempotency-Key header, or a prediction already added, adds nothing (duplicates in the answer)',
        security: [{ bearer: [] }],
        params: LINE_PARAMS,
        querystring: { type: 'object', properties: { name: { type: 'string', maxLength: 200 } } },
        response: { 200: ANY_OBJECT },
      },
    },
    async (request, reply) => {
      const line = request.params.line;
      executor.lineInfo(line);
      const key = idempotencyKey(request.headers['idempotency-key']);
      const body = request.body;
      const deadline = requestDeadline(reply, requestTimeout);
      try {
        let images: ImageUpload[];
        if (isJsonObject(body)) {
          const ids = predictionIds(body);
          images = ids.map((id) => {
            const r = kept(id);
            if (r.line !== line) throw new ServerError('E_ARGUMENT', `prediction ${id} was made on line '${r.line}', not '${line}'`);
            // the image's content is its id: marking it again (or twice in one list) adds nothing
            return { ...r.image, id: `image:${createHash('sha256').update(r.image.bytes).digest('hex')}` };
          });
        } else {
          images = (await readUploads(request, limits, request.query.name)).images;
        }
        // past the deadline the answer is 503 E_TIMEOUT though the update may still land: a retry with the same key is safe
        const outcome = await deadline.race(executor.addNormals(line, images, { signal: deadline.signal, ...(key === undefined ? {} : { key }) }));
        if (outcome.repeated === true) return { ...outcome, note: 'this update was already applied (the same Idempotency-Key): nothing changed; this is its answer' };
        return outcome.duplicates === 0
          ? outcome
          : { ...outcome, note: `${outcome.duplicates} of ${images.length} images were already in the store (a repeated update): not added again` };
      } finally {
        deadline.done();
      }
    },
  );

  registerNormalRoutes(app, { executor });

  // ---- server-sent events ----------------------------------------------------------------------------------
  app.get<{ Params: { line: string } }>(
    '/v1/lines/:line/events',
    { config: relaxed, schema: { summary: 'server-sent events: every verdict and store change of the line (text/event-stream)', params: LINE_PARAMS } },
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

  // ---- the web page ---------------------------------------------------------------------------------------
  const web = loadWebAssets();
  for (const asset of web) {
    app.get(asset.route, { config: relaxed, schema: { hide: true } }, async (_request, reply) => {
      void reply.header('content-type', asset.type);
      if (asset.route === '/') {
        void reply.header(
          'content-security-policy',
          "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        );
      }
      return reply.header('cache-control', 'no-cache').send(asset.body);
    });
  }
  return app;
}

/** A request's deadline: aborts the executor call's signal and answers 503 E_TIMEOUT; a client that goes away aborts it too. */
function requestDeadline(reply: FastifyReply, ms: number): { signal: AbortSignal; race<T>(p: Promise<T>): Promise<T>; done(): void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new ServerError('E_TIMEOUT', `no answer within the server's ${ms / 1000} s request timeout`, { retryAfter: 5 })), ms);
  const onClose = (): void => {
    if (!reply.raw.writableFinished) controller.abort(new ServerError('E_TIMEOUT', 'the client went away'));
  };
  reply.raw.on('close', onClose);
  const aborted = new Promise<never>((_, reject) => {
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
  });
  aborted.catch(() => undefined);
  return {
    signal: controller.signal,
    race: (p) => Promise.race([p, aborted]),
    done: () => {
      clearTimeout(timer);
      reply.raw.off('close', onClose);
    },
  };
}

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

function isJsonObject(body: unknown): body is Record<string, unknown> {
  return typeof body === 'object' && body !== null && !Buffer.isBuffer(body) && !Array.isArray(body);
}

/** The Idempotency-Key header: 1-200 visible ASCII characters, or absent. */
function idempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (typeof header !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(header)) {
    throw new ServerError('E_ARGUMENT', 'Expected one Idempotency-Key header of 1-200 visible ASCII characters (e.g. a UUID)');
  }
  return header;
}

function predictionIds(body: Record<string, unknown>): string[] {
  const ids = typeof body.prediction === 'string' ? [body.prediction] : body.predictions;
  if (!Array.isArray(ids) || ids.length === 0 || ids.length > 256 || !ids.every((id) => typeof id === 'string' && id.length > 0 && id.length <= 64)) {
    throw new ServerError('E_ARGUMENT', 'Expected JSON {"prediction": "<id>"} or {"predictions": ["<id>", ...]} (ids of recent predictions)');
  }
  return ids as string[];
}

/** fastify's and the plugins' own errors in the server's vocabulary. */
function asServerError(error: unknown): unknown {
  if (error instanceof ServerError || (error instanceof Error && 'code' in error && typeof error.code === 'string' && error.code.startsWith('E_'))) return error;
  const e = error as { statusCode?: number; code?: string; message?: string; validation?: unknown };
  const message = e.message ?? String(error);
  if (e.validation !== undefined) return new ServerError('E_ARGUMENT', `invalid request: ${message}`);
  switch (e.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ServerError('E_UNSUPPORTED_MEDIA', 'unsupported Content-Type: send an image (image/png, image/jpeg, ...), multipart/form-data, or JSON where the endpoint takes it');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_FILES_LIMIT':
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new ServerError('E_TOO_LARGE', `the request is over the server's limits (${message})`);
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new ServerError('E_UNSUPPORTED_MEDIA', message);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ServerError('E_ARGUMENT', message);
    default:
      break;
  }
  const status = e.statusCode;
  if (status === 413) return new ServerError('E_TOO_LARGE', message);
  if (status === 415) return new ServerError('E_UNSUPPORTED_MEDIA', message);
  if (status === 404) return new ServerError('E_NOT_FOUND', message);
  if (status === 503) return new ServerError('E_UNAVAILABLE', message, { retryAfter: 5 });
  if (status !== undefined && status >= 400 && status < 500) return new ServerError('E_ARGUMENT', message);
  // busboy's parse errors on malformed multipart bodies carry no status
  if (/multipart|boundary|unexpected end of form|malformed part header/i.test(message)) return new ServerError('E_ARGUMENT', `malformed multipart body: ${message}`);
  return error;
}

function countRejection(metrics: ServerMetrics, code: ServerErrorCode): void {
  const reason = code === 'E_BUSY' ? 'busy' : code === 'E_TIMEOUT' ? 'timeout' : code === 'E_UNAVAILABLE' ? 'unavailable' : statusOf(code) === 413 ? 'too_large' : undefined;
  if (reason !== undefined) metrics.rejections.inc({ reason });
}

interface WebAsset {
  readonly route: string;
  readonly type: string;
  readonly body: Buffer;
}

/** The page's files, read once at start (src/server/web, shipped with the package). */
function loadWebAssets(): WebAsset[] {
  const root = packageRoot();
  if (root === undefined) return [];
  const dir = path.join(root, 'src', 'server', 'web');
  const assets: Array<[string, string, string]> = [
    ['/', 'index.html', 'text/html; charset=utf-8'],
    ['/app.js', 'app.js', 'text/javascript; charset=utf-8'],
    ['/style.css', 'style.css', 'text/css; charset=utf-8'],
  ];
  return assets.flatMap(([route, name, type]) => {
    try {
      return [{ route, type, body: readFileSync(path.join(dir, name)) }];
    } catch {
      return [];
    }
  });
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** needs the bearer token */
    mutating?: boolean;
    /** @fastify/under-pressure's per-route handler (health, metrics and the page answer under pressure) */
    pressureHandler?: () => undefined;
  }
}
