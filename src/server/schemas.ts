/**
 * The request and response schemas of the routes.
 */
export const LINE_PARAMS = {
  type: 'object',
  required: ['line'],
  properties: { line: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$', description: 'line name' } },
} as const;

export const ERROR_RESPONSE = {
  description: 'error: {error: {code, message}}',
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } },
} as const;

export const ANY_OBJECT = { type: 'object', additionalProperties: true } as const;
