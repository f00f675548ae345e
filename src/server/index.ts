/** The inspection server (HTTP API, events, metrics, web page) over an InspectionExecutor. */
export { createServer, type ServerOptions } from './app.js';
export { resolveNamedTokens, resolveToken, type NamedTokens } from './auth.js';
export { ServerError, statusOf, type ServerErrorCode } from './errors.js';
export type * from './executor.js';
export { MAPS_OPTIONS } from './executor.js';
export { InProcessExecutor, type InProcessExecutorOptions } from './in-process-executor.js';
export { validateLineName } from './line-name.js';
