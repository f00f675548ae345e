/**
 * Reading the server's /openapi.json in the tests: the documented schema of
 * a route's answer, and a small validator walk of an answer against it.
 *
 * The walk knows the keywords the server's schemas use and reports any
 * other, so a constraint is never skipped in silence. Objects without
 * `additionalProperties` are closed: a field an answer carries that its
 * schema does not name is a problem (fastify's serialiser would drop it).
 */
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';

export type Schema = Record<string, unknown>;

export interface Operation {
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: Schema }> }>;
  security?: unknown[];
}

export interface OpenApiDoc {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema> };
}

const COMPONENT = '#/components/schemas/';

/** The component a `$ref` names, or a failure. */
export function resolveRef(doc: OpenApiDoc, ref: string): Schema {
  assert.ok(ref.startsWith(COMPONENT), `a $ref to a named component, not ${ref}`);
  const schema = doc.components?.schemas?.[ref.slice(COMPONENT.length)];
  assert.ok(schema !== undefined, `${ref} is in components.schemas`);
  return schema;
}

/** The response a route documents for `status` (or its `4XX`-style range). */
export function documentedResponse(doc: OpenApiDoc, path: string, method: string, status: number): NonNullable<Operation['responses']>[string] | undefined {
  const responses = doc.paths[path]?.[method.toLowerCase()]?.responses ?? {};
  return responses[String(status)] ?? responses[`${String(status)[0]}XX`];
}

/**
 * A schema is named when it is a `$ref` to a component, or an anyOf/oneOf of
 * such refs, and every component it names describes its properties (an
 * object with `additionalProperties: true` and no properties is anything).
 */
export function namedSchemaProblems(doc: OpenApiDoc, schema: Schema | undefined): string[] {
  if (schema === undefined) return ['no schema'];
  const refs = typeof schema.$ref === 'string' ? [schema.$ref] : ((schema.anyOf ?? schema.oneOf) as Schema[] | undefined)?.map((s) => s.$ref);
  if (refs === undefined || refs.length === 0) return [`not a named schema: ${JSON.stringify(schema).slice(0, 120)}`];
  const problems: string[] = [];
  for (const ref of refs) {
    if (typeof ref !== 'string' || !ref.startsWith(COMPONENT)) {
      problems.push(`not a $ref to a component: ${JSON.stringify(ref)}`);
      continue;
    }
    const component = doc.components?.schemas?.[ref.slice(COMPONENT.length)];
    if (component === undefined) problems.push(`${ref} is not in components.schemas`);
    else if (component.type !== 'object' || Object.keys((component.properties as Schema | undefined) ?? {}).length === 0) problems.push(`${ref} describes no properties`);
  }
  return problems;
}

const KNOWN = new Set([
  '$ref', 'type', 'properties', 'required', 'additionalProperties', 'items', 'minItems', 'maxItems', 'enum', 'anyOf', 'oneOf',
  'minProperties', 'format', 'description', 'title', 'minimum', 'maximum', 'maxLength', 'pattern',
]);

const typeOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v);

/** The ways `value` does not match `schema` (empty: it matches). */
export function validate(doc: OpenApiDoc, schema: Schema, value: unknown, at = '$'): string[] {
  const problems: string[] = [];
  for (const key of Object.keys(schema)) if (!KNOWN.has(key)) problems.push(`${at}: the walk does not know the keyword '${key}'`);
  if (typeof schema.$ref === 'string') return [...problems, ...validate(doc, resolveRef(doc, schema.$ref), value, at)];
  for (const key of ['anyOf', 'oneOf'] as const) {
    const options = schema[key] as Schema[] | undefined;
    if (options === undefined) continue;
    const matching = options.filter((o) => validate(doc, o, value, at).length === 0).length;
    if (matching === 0) problems.push(`${at}: matches none of ${key} (${options.map((o) => validate(doc, o, value, at)[0]).join(' / ')})`);
    if (key === 'oneOf' && matching > 1) problems.push(`${at}: matches ${matching} of oneOf`);
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    const t = typeOf(value);
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) return [...problems, `${at}: ${t} is not ${types.join('|')}`];
  }
  if (schema.enum !== undefined && !(schema.enum as unknown[]).includes(value)) problems.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) problems.push(`${at}: ${value} < ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) problems.push(`${at}: ${value} > ${schema.maximum}`);
  }
  if (typeof value === 'string') {
    if (schema.format === 'date-time' && Number.isNaN(Date.parse(value))) problems.push(`${at}: ${JSON.stringify(value)} is not a date-time`);
    if (typeof schema.maxLength === 'number' && value.length > schema.maxLength) problems.push(`${at}: longer than ${schema.maxLength}`);
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(value)) problems.push(`${at}: does not match ${schema.pattern}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) problems.push(`${at}: fewer than ${schema.minItems} items`);
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems) problems.push(`${at}: more than ${schema.maxItems} items`);
    if (schema.items !== undefined) value.forEach((v, i) => problems.push(...validate(doc, schema.items as Schema, v, `${at}[${i}]`)));
  }
  if (typeOf(value) === 'object') {
    const object = value as Record<string, unknown>;
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    for (const name of (schema.required ?? []) as string[]) if (!(name in object)) problems.push(`${at}: '${name}' is required`);
    if (typeof schema.minProperties === 'number' && Object.keys(object).length < schema.minProperties) problems.push(`${at}: fewer than ${schema.minProperties} properties`);
    for (const [name, v] of Object.entries(object)) {
      const where = `${at}.${name}`;
      if (properties[name] !== undefined) problems.push(...validate(doc, properties[name], v, where));
      else if (typeof schema.additionalProperties === 'object') problems.push(...validate(doc, schema.additionalProperties as Schema, v, where));
      else if (schema.additionalProperties !== true && (schema.properties !== undefined || schema.anyOf === undefined)) problems.push(`${where}: not in the schema (the serialiser drops it)`);
    }
  }
  return problems;
}

export interface Captured {
  readonly method: string;
  readonly url: string;
  readonly status: number;
  /** what the handler (or the error handler) answered, as JSON.stringify writes it (what the server answered without response schemas) */
  readonly payload: unknown;
}

/** Records every JSON answer of `app` before serialisation (call before the app is ready). */
export function captureAnswers(app: FastifyInstance): Captured[] {
  const captured: Captured[] = [];
  app.addHook('preSerialization', async (request, reply, payload) => {
    // a snapshot: the object may change after it is sent (a fit job's progress)
    captured.push({ method: request.method, url: request.url, status: reply.statusCode, payload: JSON.parse(JSON.stringify(payload)) as unknown });
    return payload;
  });
  return captured;
}

/**
 * Checks one JSON answer: the route documents its status with a named
 * schema (or the error shape), the answer the handler gave validates
 * against it, and the serialiser dropped or changed nothing of it.
 */
export function checkJsonAnswer(doc: OpenApiDoc, route: { path: string; method: string }, status: number, body: string, captured: Captured | undefined): void {
  const where = `${route.method} ${route.path} ${status}`;
  const documented = documentedResponse(doc, route.path, route.method, status);
  assert.ok(documented !== undefined, `${where}: documented`);
  const schema = documented.content?.['application/json']?.schema;
  assert.deepEqual(namedSchemaProblems(doc, schema), [], where);
  assert.ok(captured !== undefined && captured.status === status, `${where}: the answer before serialisation was captured`);
  assert.deepEqual(validate(doc, schema!, captured.payload), [], `${where}: the answer validates against its documented schema`);
  assert.deepEqual(JSON.parse(body), captured.payload, `${where}: the serialiser dropped or changed nothing`);
}
