/**
 * What the route modules share, passed to each as its plugin options (one
 * object built by createServer, ../app.ts): each module takes the part it
 * uses, so a route's dependencies are in its signature, not in a closure.
 */
import type { ServerResponse } from 'node:http';
import type { InspectionExecutor } from '../executor.js';
import type { FitJobs } from '../fit-jobs.js';
import type { ServerMetrics } from '../metrics.js';
import type { ResultCache } from '../results.js';
import type { UploadLimits } from '../uploads.js';

export interface RouteContext {
  /** runs every prediction and store change */
  readonly executor: InspectionExecutor;
  /** the bearer token of mutating calls; undefined: changes are disabled (the app's onRequest hook checks it) */
  readonly token: string | undefined;
  readonly limits: UploadLimits;
  /** per-request deadline in ms (receiving the body and computing the answer) */
  readonly requestTimeout: number;
  /** recent predictions, for "mark as normal" and map URLs */
  readonly results: ResultCache;
  readonly metrics: ServerMetrics;
  /** lines being fitted over HTTP (POST /v1/lines), polled by GET /v1/jobs/{id} */
  readonly fitJobs: FitJobs;
  /** open server-sent event streams, ended when the server closes */
  readonly streams: Set<ServerResponse>;
}
