import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { reconcile } from '../services/reconcile.js';

/** With RECONCILE_INTERVAL_SECONDS set, reconciliation runs in the server on a timer. */
export default fp(
  async function reconciler(app: FastifyInstance) {
    const { RECONCILE_INTERVAL_SECONDS: interval, RECONCILE_AFTER_SECONDS: after, IDEMPOTENCY_KEY_TTL_HOURS: ttl } = app.config;
    if (interval === 0) return;
    let running: Promise<unknown> | undefined;
    const timer = setInterval(() => {
      if (running) return;
      running = reconcile(
        { store: app.store, payments: app.payments, log: app.log, metrics: app.metrics },
        { olderThanMs: after * 1000, keyTtlHours: ttl },
      )
        .then((report) => app.log.info({ report }, 'reconciliation finished'))
        .catch((err: unknown) => app.log.error({ err }, 'reconciliation failed'))
        .finally(() => (running = undefined));
    }, interval * 1000);
    timer.unref();
    app.addHook('onClose', async () => {
      clearInterval(timer);
      await running;
    });
  },
  { name: 'reconciler', dependencies: ['store', 'payments-gateway'] },
);
