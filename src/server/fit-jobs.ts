/** Lines being fitted over HTTP (POST /v1/lines): each a job that GET /v1/jobs/{id} polls. */
import { toErrorResponse, type ServerErrorCode } from './errors.js';
import type { FitOptions, FitProgress, ImageUpload, InspectionExecutor } from './executor.js';
import { asServerError } from './http.js';
import { newPredictionId } from './results.js';

export interface FitJob {
  readonly id: string;
  readonly line: string;
  state: 'running' | 'done' | 'failed';
  progress: FitProgress;
  result?: unknown;
  error?: { code: ServerErrorCode; message: string };
  readonly startedAt: string;
  finishedAt?: string;
}

/** The lines being fitted over HTTP and the last finished ones (at most 50 kept). */
export class FitJobs {
  readonly #jobs = new Map<string, FitJob>();

  get(id: string): FitJob | undefined {
    return this.#jobs.get(id);
  }

  /** true while a job fits `line` */
  fitting(line: string): boolean {
    return [...this.#jobs.values()].some((j) => j.line === line && j.state === 'running');
  }

  /** Starts fitting `line` on `executor`; the job records progress, then the line's description or the error. */
  start(executor: InspectionExecutor, line: string, images: readonly ImageUpload[], fit: FitOptions, onFailure: (e: unknown) => void): FitJob {
    const job: FitJob = { id: newPredictionId(), line, state: 'running', progress: { stage: 'features', done: 0, total: images.length }, startedAt: new Date().toISOString() };
    this.#jobs.set(job.id, job);
    for (const id of this.#jobs.keys()) if (this.#jobs.size > 50 && this.#jobs.get(id)!.state !== 'running') this.#jobs.delete(id);
    executor
      .createLine(line, images, fit, (p) => {
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
          onFailure(e);
        },
      )
      .finally(() => {
        job.finishedAt = new Date().toISOString();
      });
    return job;
  }
}
