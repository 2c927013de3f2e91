import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { callerErrors } from '../routes/problem-responses.js';

export interface Metrics {
  registry: Registry;
  purchases: Counter<'outcome'>;
  webhookEvents: Counter<'type' | 'outcome'>;
  idempotentReplays: Counter;
  ledgerMismatches: Counter;
  rateLimitShared: Gauge;
  rateLimitLocalFallback: Counter;
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

/**
 * How often the event loop is sampled for nodejs_eventloop_lag_* (prom-client's default). Those
 * figures are the time between samples, so a loop that is never late reads this much.
 */
export const EVENT_LOOP_SAMPLE_MS = 10;

/** Prometheus metrics, one registry per app (so tests and replicas never share counters). */
export default fp(
  async function metrics(app: FastifyInstance) {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    const requestDuration = new Histogram({
      name: 'coinshop_http_request_duration_seconds',
      help: 'HTTP request latency by route, method and status code',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    app.decorate('metrics', {
      registry,
      purchases: new Counter({
        name: 'coinshop_purchases_total',
        help: 'Purchase attempts by outcome',
        labelNames: ['outcome'],
        registers: [registry],
      }),
      webhookEvents: new Counter({
        name: 'coinshop_webhook_events_total',
        help: 'Stripe webhook events by type and outcome (processed, duplicate, ignored)',
        labelNames: ['type', 'outcome'],
        registers: [registry],
      }),
      idempotentReplays: new Counter({
        name: 'coinshop_idempotent_replays_total',
        help: 'Responses replayed for a repeated Idempotency-Key',
        registers: [registry],
      }),
      rateLimitShared: new Gauge({
        name: 'coinshop_rate_limit_shared',
        help: '1 while rate limits are counted in Redis (shared by every replica); 0 while each process counts on its own',
        registers: [registry],
      }),
      rateLimitLocalFallback: new Counter({
        name: 'coinshop_rate_limit_local_fallback_total',
        help: 'Requests whose rate limit was counted in this process because Redis could not be reached',
        registers: [registry],
      }),
      ledgerMismatches: new Counter({
        name: 'coinshop_ledger_mismatches_found_total',
        help: 'Balances found by reconciliation to differ from their ledger',
        registers: [registry],
      }),
    });

    app.addHook('onResponse', (request, reply, done) => {
      requestDuration.observe(
        { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
        reply.elapsedTime / 1000,
      );
      done();
    });

    app.get(
      '/metrics',
      {
        schema: {
          operationId: 'getMetrics',
          tags: ['Operations'],
          summary: 'Prometheus metrics',
          description:
            'Request latency by route, purchases by outcome, webhook events by type, idempotent replays, ledger mismatches found, and process metrics, in the Prometheus text format.',
          response: {
            200: {
              description: 'Prometheus text exposition format.',
              content: {
                'text/plain': {
                  schema: { type: 'string' },
                  example: '# TYPE coinshop_purchases_total counter\ncoinshop_purchases_total{outcome="succeeded"} 3\n',
                },
              },
            },
            ...callerErrors,
          },
        },
      },
      async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()),
    );
  },
  { name: 'metrics' },
);
