/**
 * The schemas of the HTTP API: request parameters, and every response body
 * as a shared schema (registered once with `addSchema`, referenced by
 * `$ref`), so that /openapi.json documents each route's answers by name.
 *
 * CAREFUL: fastify serialises a response through its schema
 * (fast-json-stringify), which DROPS every property the schema does not
 * name and coerces values to the declared type. A field added to an answer
 * must be added here too; test/openapi.test.ts compares each route's answer
 * before and after serialisation and fails on anything dropped.
 */
import type { FastifyInstance } from 'fastify';

export const LINE_PARAMS = {
  type: 'object',
  required: ['line'],
  properties: { line: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$', description: 'line name' } },
} as const;

/** The names of the shared schemas (components.schemas in /openapi.json). */
export type SchemaId =
  | 'ErrorDetail'
  | 'Error'
  | 'Threshold'
  | 'LineLoad'
  | 'Line'
  | 'BrokenLine'
  | 'LineList'
  | 'Health'
  | 'Ready'
  | 'StageTimings'
  | 'Prediction'
  | 'PredictionError'
  | 'PredictionBatch'
  | 'JobLink'
  | 'JobAccepted'
  | 'HotUpdate'
  | 'FitJob'
  | 'QueuedPrediction'
  | 'NormalsJobResult'
  | 'ThresholdJobResult'
  | 'QueueJob';

/** A reference to a shared schema, as a route's response or a property. */
export const ref = (id: SchemaId): { $ref: string } => ({ $ref: `${id}#` });

const integer = { type: 'integer' } as const;
const number = { type: 'number' } as const;
const string = { type: 'string' } as const;
const ms = { type: 'number', description: 'milliseconds' } as const;
const label = { type: 'string', enum: ['ok', 'defect'], description: 'present when the line has a threshold' } as const;
const at = { type: 'string', format: 'date-time' } as const;

const ErrorDetail = {
  $id: 'ErrorDetail',
  type: 'object',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string', description: "the library's HetmmError code or an HTTP one (E_NOT_FOUND, E_BUSY, ...)" },
    message: string,
  },
} as const;

const ErrorBody = {
  $id: 'Error',
  description: 'the one error shape of every route',
  type: 'object',
  required: ['error'],
  properties: { error: ref('ErrorDetail') },
} as const;

const Threshold = {
  $id: 'Threshold',
  type: 'object',
  required: ['value', 'method', 'preset'],
  properties: { value: number, method: { type: 'string', description: 'how it was set (calibration rule, or by hand)' }, preset: string },
} as const;

const LineLoad = {
  $id: 'LineLoad',
  description: "the line's prediction queue",
  type: 'object',
  required: ['line', 'queued', 'running', 'queueLimit'],
  properties: {
    line: string,
    queued: { type: 'integer', description: 'predictions waiting for a slot' },
    running: { type: 'integer', description: 'predictions being computed' },
    queueLimit: integer,
    retryAfter: { type: 'integer', description: 'seconds until a slot is likely free' },
  },
} as const;

const Line = {
  $id: 'Line',
  description: 'a line: its store, model and threshold',
  type: 'object',
  required: ['name', 'version', 'templates', 'preset', 'dtype', 'bytesOnDisk', 'backbone', 'backend', 'precision', 'matching'],
  properties: {
    name: string,
    version: { type: 'integer', description: 'store version: grows by one with every durable change' },
    templates: integer,
    preset: string,
    threshold: ref('Threshold'),
    heatmapRange: { type: 'array', items: number, minItems: 2, maxItems: 2, description: 'the heat-map colour scale [median normal pixel, threshold] when calibrated' },
    dtype: string,
    bytesOnDisk: integer,
    backbone: string,
    backend: string,
    precision: { type: 'string', enum: ['float', 'int8'], description: "'int8': fitted int8 end to end, runs its int8 backbone" },
    matching: { type: 'string', enum: ['float', 'int8'], description: 'the matching precision in use' },
    load: ref('LineLoad'),
  },
} as const;

const BrokenLine = {
  $id: 'BrokenLine',
  description: 'a line the server knows of but cannot serve, and why',
  type: 'object',
  required: ['line', 'state', 'reason'],
  properties: {
    line: string,
    state: { type: 'string', enum: ['failed', 'refused'], description: "'failed': its store does not load; 'refused': not the cluster's (queue mode)" },
    reason: string,
    worker: { type: 'string', description: 'queue mode: the worker that reported it' },
  },
} as const;

const LineList = {
  $id: 'LineList',
  type: 'object',
  required: ['changes', 'lines', 'broken'],
  properties: {
    changes: { type: 'string', enum: ['disabled', 'token'], description: "'token': mutating calls need the bearer token; 'disabled': no token configured" },
    lines: { type: 'array', items: ref('Line') },
    broken: { type: 'array', items: ref('BrokenLine') },
  },
} as const;

const Health = { $id: 'Health', type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ok'] } } } as const;

const Ready = {
  $id: 'Ready',
  type: 'object',
  required: ['status', 'executor', 'lines', 'broken'],
  properties: {
    status: { type: 'string', enum: ['ready'] },
    executor: { type: 'string', description: "'in-process' or 'queue'" },
    lines: { type: 'array', items: string },
    broken: { type: 'array', items: ref('BrokenLine') },
  },
} as const;

const StageTimings = {
  $id: 'StageTimings',
  description: 'milliseconds per stage',
  type: 'object',
  required: ['queue', 'decode', 'backbone', 'match', 'score', 'maps'],
  properties: { queue: ms, decode: ms, backbone: ms, match: ms, score: ms, maps: ms },
  additionalProperties: ms,
} as const;

const Prediction = {
  $id: 'Prediction',
  type: 'object',
  required: ['id', 'line', 'name', 'score', 'templates', 'version', 'width', 'height', 'timings', 'maps', 'at'],
  properties: {
    id: { type: 'string', description: 'for GET /v1/predictions/{id} and marking it as normal' },
    line: string,
    name: { type: 'string', description: 'the upload name' },
    score: number,
    label,
    threshold: number,
    templates: { type: 'integer', description: 'templates matched against' },
    version: { type: 'integer', description: 'the store version the prediction was computed against' },
    width: integer,
    height: integer,
    timings: ref('StageTimings'),
    maps: {
      type: 'object',
      description: 'the maps asked for (?maps=png|npy): URLs under /v1/predictions/{id}/, or data URLs with ?inline=true',
      properties: { heatmap: string, mask: string, npy: string },
    },
    at,
  },
} as const;

const PredictionError = {
  $id: 'PredictionError',
  description: 'one image of a multipart request that could not be scored',
  type: 'object',
  required: ['name', 'error'],
  properties: { name: string, error: ref('ErrorDetail') },
} as const;

const PredictionBatch = {
  $id: 'PredictionBatch',
  description: 'the answer to several images: one result per file, in order',
  type: 'object',
  required: ['results'],
  properties: { results: { type: 'array', items: { anyOf: [ref('Prediction'), ref('PredictionError')] } } },
} as const;

const JobLink = {
  $id: 'JobLink',
  type: 'object',
  required: ['id', 'url'],
  properties: { id: string, url: string, line: string },
} as const;

const JobAccepted = {
  $id: 'JobAccepted',
  description: 'work accepted: poll GET /v1/jobs/{id} (one job, or one per image)',
  type: 'object',
  minProperties: 1,
  properties: { job: ref('JobLink'), jobs: { type: 'array', items: ref('JobLink') } },
} as const;

const HotUpdate = {
  $id: 'HotUpdate',
  type: 'object',
  required: ['line', 'added', 'duplicates', 'templates', 'version'],
  properties: {
    line: string,
    added: integer,
    duplicates: { type: 'integer', description: 'images the store already held (a repeated update): not added again' },
    repeated: { type: 'boolean', description: 'the same Idempotency-Key was applied before: nothing changed, this is its answer' },
    templates: { type: 'integer', description: 'template count after the update' },
    version: { type: 'integer', description: 'store version after the update (on disk)' },
    note: string,
  },
} as const;

const FitJob = {
  $id: 'FitJob',
  description: 'a line being fitted from uploads (POST /v1/lines)',
  type: 'object',
  required: ['id', 'line', 'state', 'progress', 'startedAt'],
  properties: {
    id: string,
    line: string,
    state: { type: 'string', enum: ['running', 'done', 'failed'] },
    progress: {
      type: 'object',
      required: ['stage', 'done', 'total'],
      properties: { stage: { type: 'string', enum: ['quantize', 'features', 'calibrate', 'save'] }, done: integer, total: integer },
    },
    result: ref('Line'),
    error: ref('ErrorDetail'),
    startedAt: at,
    finishedAt: at,
  },
} as const;

const QueuedPrediction = {
  $id: 'QueuedPrediction',
  description: 'a prediction computed by a queue worker',
  type: 'object',
  required: ['jobId', 'line', 'worker', 'name', 'score', 'templates', 'version', 'height', 'width', 'timings', 'maps', 'queueTimings'],
  properties: {
    jobId: string,
    line: string,
    worker: string,
    name: string,
    requestId: string,
    score: number,
    label,
    threshold: number,
    templates: integer,
    version: integer,
    height: integer,
    width: integer,
    timings: { type: 'object', description: 'milliseconds per stage on the worker', properties: { decode: ms, backbone: ms, match: ms, score: ms, maps: ms }, additionalProperties: ms },
    maps: { type: 'object', description: 'the maps asked for, as data URLs', properties: { heatmapPng: string, maskPng: string, anomalyNpy: string } },
    queueTimings: { type: 'object', properties: { wait: ms, total: ms } },
  },
} as const;

const NormalsJobResult = {
  $id: 'NormalsJobResult',
  type: 'object',
  required: ['kind', 'added', 'duplicates', 'templates', 'version', 'worker'],
  properties: { kind: { type: 'string', enum: ['normals'] }, added: integer, duplicates: integer, repeated: { type: 'boolean' }, templates: integer, version: integer, worker: string },
} as const;

const ThresholdJobResult = {
  $id: 'ThresholdJobResult',
  type: 'object',
  required: ['kind', 'value', 'templates', 'version', 'worker'],
  properties: { kind: { type: 'string', enum: ['threshold'] }, value: number, templates: integer, version: integer, worker: string },
} as const;

const QueueJob = {
  $id: 'QueueJob',
  description: 'a queue job (queue mode)',
  type: 'object',
  required: ['id', 'line', 'state', 'attempts'],
  properties: {
    id: string,
    line: string,
    state: { type: 'string', enum: ['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized', 'waiting-children', 'unknown'] },
    attempts: integer,
    // the kinds with a `kind` first: the serialiser writes the first branch that matches
    result: { anyOf: [ref('NormalsJobResult'), ref('ThresholdJobResult'), ref('QueuedPrediction')] },
    error: ref('ErrorDetail'),
  },
} as const;

const SHARED = [
  ErrorDetail,
  ErrorBody,
  Threshold,
  LineLoad,
  Line,
  BrokenLine,
  LineList,
  Health,
  Ready,
  StageTimings,
  Prediction,
  PredictionError,
  PredictionBatch,
  JobLink,
  JobAccepted,
  HotUpdate,
  FitJob,
  QueuedPrediction,
  NormalsJobResult,
  ThresholdJobResult,
  QueueJob,
] as const satisfies ReadonlyArray<{ readonly $id: SchemaId }>;

/** Registers the shared schemas on the root instance (before the routes that reference them). */
export function addSharedSchemas(app: FastifyInstance): void {
  for (const schema of SHARED) app.addSchema(schema);
}

/** A success answer: a shared schema, with what it means. */
export const answer = (description: string, id: SchemaId): { description: string; $ref: string } => ({ description, ...ref(id) });

/** A success answer that is not JSON (an image, a file, Prometheus text, an event stream). */
export const content = (description: string, type: string, format?: 'binary'): { description: string; content: Record<string, { schema: { type: 'string'; format?: 'binary' } }> } => ({
  description,
  content: { [type]: { schema: { type: 'string', ...(format === undefined ? {} : { format }) } } },
});

const ERROR_MEANING: Record<number, string> = {
  400: 'invalid request (E_ARGUMENT, E_NO_IMAGES)',
  401: 'missing or wrong bearer token (E_UNAUTHORIZED)',
  403: 'changes disabled on this server, or a Host header it does not answer to (E_FORBIDDEN)',
  404: 'no such line, prediction or job (E_NOT_FOUND)',
  409: 'a line of that name exists or is being created (E_CONFLICT)',
  413: 'the request or an image is over the limits (E_TOO_LARGE, E_IMAGE_TOO_LARGE)',
  415: 'a content type the route does not take (E_UNSUPPORTED_MEDIA)',
  422: 'an image that does not decode or is too small (E_IMAGE_DECODE, E_IMAGE_TOO_SMALL)',
  429: "the line's queue is full: retry after Retry-After seconds (E_BUSY)",
  500: 'a store, model, backend or internal failure',
  503: 'shutting down, not ready, under pressure or past the request timeout: retry after Retry-After seconds (E_UNAVAILABLE, E_TIMEOUT)',
};

/** Every route can answer these: a Host it does not serve (403), an internal failure (500), shutting down or pressure (503). */
const ANY_ROUTE = [403, 500, 503] as const;

/** The error answers of a route, each the one error shape: the ones every route has, plus `statuses`. */
export function errors(...statuses: number[]): Record<number, { description: string; $ref: string }> {
  const all = [...new Set([...statuses, ...ANY_ROUTE])].sort((a, b) => a - b);
  return Object.fromEntries(all.map((s) => [s, { description: ERROR_MEANING[s] ?? 'error', ...ref('Error') }]));
}

/** Error statuses of a route with a :line parameter (an invalid name, an unknown line). */
export const LINE_ERRORS = [400, 404] as const;
/** Error statuses of a call that changes something (the bearer token). */
export const MUTATING_ERRORS = [401] as const;
/** Error statuses of a route that reads uploaded images. */
export const UPLOAD_ERRORS = [400, 413, 415, 422] as const;
