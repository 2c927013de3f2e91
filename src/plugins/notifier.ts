import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge } from 'prom-client';
import { NotificationSender } from '../services/notification-sender.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The sender of the game's notifications; undefined when GAME_WEBHOOK_URL is not set. */
    notifier: NotificationSender | undefined;
  }
}

/** How often each replica looks at the outbox when nothing woke it (other replicas' work, retries coming due). */
const POLL_MS = 1_000;

/**
 * With GAME_WEBHOOK_URL set, delivers the outbox to the game server from this process, woken by
 * every commit that writes a notification. Metrics: deliveries by outcome, notifications waiting,
 * and the age of the oldest (the outbox fills, and is measured, with or without a URL).
 */
export default fp(
  async function notifier(app: FastifyInstance) {
    const {
      GAME_WEBHOOK_URL: url,
      GAME_WEBHOOK_SECRET: secret,
      GAME_WEBHOOK_EVENTS: events,
      GAME_WEBHOOK_TIMEOUT_MS: timeoutMs,
    } = app.config;
    const types = events?.split(',');
    const deliveries = new Counter({
      name: 'coinshop_notification_deliveries_total',
      help: 'Attempts to deliver a notification to the game server, by outcome (delivered, retry: failed and scheduled again, failed: given up after 3 days)',
      labelNames: ['outcome'],
      registers: [app.metrics.registry],
    });
    // One query a scrape sets both: the registry collects metrics in the order they were registered,
    // so the first gauge's collect runs before the second is read.
    const oldestAge = new Gauge({
      name: 'coinshop_notification_oldest_pending_seconds',
      help: 'Age of the oldest notification not yet delivered (0 when none waits)',
      registers: [],
    });
    new Gauge({
      name: 'coinshop_notifications_pending',
      help: 'Notifications not yet delivered to the game server (of the types it is sent)',
      registers: [app.metrics.registry],
      async collect() {
        const { count, oldest } = await app.store.undeliveredNotifications(types);
        this.set(count);
        oldestAge.set(oldest === null ? 0 : Math.max(0, (Date.now() - Date.parse(oldest)) / 1000));
      },
    });
    app.metrics.registry.registerMetric(oldestAge);

    if (url === undefined || secret === undefined) {
      app.decorate('notifier', undefined);
      return;
    }
    const sender = new NotificationSender(app.store, {
      url,
      secret,
      types,
      timeoutMs,
      pollMs: POLL_MS,
      batchSize: 32,
      maxBatches: 2,
      log: app.log,
      onAttempt: (outcome) => deliveries.inc({ outcome }),
    });
    app.decorate('notifier', sender);
    app.store.onNotificationsCommitted = () => sender.wake();
    app.addHook('onReady', async () => sender.start());
    // Before anything closes (the database included): attempts under way are abandoned, their leases
    // run out, and they are sent again (by another replica, or after the restart).
    app.addHook('preClose', async () => {
      app.store.onNotificationsCommitted = undefined;
      await sender.close();
    });
  },
  { name: 'notifier', dependencies: ['store', 'metrics'] },
);
