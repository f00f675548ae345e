/**
 * Prometheus metrics (prom-client), one registry per server instance so that
 * several servers in one process (tests) do not mix their series.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { InspectionExecutor, StageTimings } from './executor.js';

export interface ServerMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'method' | 'route' | 'status'>;
  readonly requestSeconds: Histogram<'method' | 'route'>;
  readonly stageSeconds: Histogram<'line' | 'stage'>;
  readonly rejections: Counter<'reason'>;
  readonly verdicts: Counter<'line' | 'label'>;
  observeStages(line: string, timings: StageTimings): void;
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function createMetrics(executor: InspectionExecutor): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'hetmm_' });
  const requests = new Counter({
    name: 'hetmm_http_requests_total',
    help: 'HTTP requests answered, by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const requestSeconds = new Histogram({
    name: 'hetmm_http_request_duration_seconds',
    help: 'HTTP request latency',
    labelNames: ['method', 'route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const stageSeconds = new Histogram({
    name: 'hetmm_predict_stage_duration_seconds',
    help: 'time per prediction stage (queue, decode, backbone, match, score, maps)',
    labelNames: ['line', 'stage'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const rejections = new Counter({
    name: 'hetmm_rejections_total',
    help: 'requests refused: busy (429), pressure/timeout/unavailable (503), too_large (413)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const verdicts = new Counter({
    name: 'hetmm_verdicts_total',
    help: 'predictions by label (ok, defect, none when the line has no threshold)',
    labelNames: ['line', 'label'] as const,
    registers: [registry],
  });
  const lineGauge = (name: string, help: string, value: (line: string) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['line'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const line of executor.lineNames()) {
          try {
            this.set({ line }, value(line));
          } catch {
            // deleted between listing and reading
          }
        }
      },
    });
  };
  lineGauge('hetmm_templates', 'templates in the line store', (line) => executor.lineInfo(line).templates);
  lineGauge('hetmm_store_version', 'store version of the line', (line) => executor.lineInfo(line).version);
  const loadOf = (line: string): { queued: number; running: number } =>
    executor.load().find((l) => l.line === line) ?? { queued: 0, running: 0 };
  lineGauge('hetmm_queue_depth', 'predictions waiting for a slot', (line) => loadOf(line).queued);
  lineGauge('hetmm_queue_running', 'predictions being computed', (line) => loadOf(line).running);
  return {
    registry,
    requests,
    requestSeconds,
    stageSeconds,
    rejections,
    verdicts,
    observeStages(line, timings) {
      for (const [stage, ms] of Object.entries(timings)) stageSeconds.observe({ line, stage }, ms / 1000);
    },
  };
}
