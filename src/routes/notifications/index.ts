import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ref } from '../../../schemas/index.js';
import { Notification, NotificationIdParams, NotificationPage, NotificationQuery } from '../../../schemas/notification.js';
import { ProblemError } from '../../errors.js';
import { notificationView } from '../../services/notifications.js';
import { callerErrors, idempotencyConflicts, idempotencyKeyHeader, internalError, problemResponse } from '../problem-responses.js';

const notificationNotFound = problemResponse('No notification has this id.', { notification_not_found: 'Notification not found' });

/**
 * The operator's view of the outbox: every money event the game is told of, how its delivery went,
 * and a way to send one again. For games that poll instead of receiving webhooks, the same feed.
 */
const notificationRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/stripe/notifications',
    {
      schema: {
        operationId: 'listNotifications',
        tags: ['Notifications'],
        summary: 'Page through the notifications sent to the game, newest first',
        description:
          'Every money event (a credit, a failure, a refund, a dispute, a spend) as the game server receives it at ' +
          '`GAME_WEBHOOK_URL`, with its delivery state. Filter by `type` and `status`; pass `next_cursor` as `cursor` ' +
          'for older ones. Without `GAME_WEBHOOK_URL` nothing is sent and this feed is the way to read them.',
        querystring: NotificationQuery,
        response: {
          200: { ...ref(NotificationPage), description: 'One page of notifications.' },
          400: problemResponse('A malformed query.', { validation_error: 'Invalid input: querystring/limit must be <= 200' }),
          ...callerErrors,
          500: internalError,
        },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const { cursor, type, status } = request.query;
      const rows = await app.store.listNotifications({
        limit: limit + 1,
        before: cursor === undefined ? undefined : Number(cursor),
        type,
        status,
      });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        notifications: page.map(notificationView),
        ...(rows.length > limit && last ? { next_cursor: String(last.seq) } : {}),
      };
    },
  );

  app.get(
    '/stripe/notifications/:id',
    {
      schema: {
        operationId: 'getNotification',
        tags: ['Notifications'],
        summary: 'A notification and how its delivery went',
        params: NotificationIdParams,
        response: {
          200: { ...ref(Notification), description: 'The notification.' },
          400: problemResponse('A malformed id.', { validation_error: 'Invalid input: params/id must match pattern "^msg_[0-9a-f]{32}$"' }),
          404: notificationNotFound,
          ...callerErrors,
          500: internalError,
        },
      },
    },
    async (request) => {
      const row = await app.store.findNotification(request.params.id);
      if (!row) throw new ProblemError('notification_not_found', 'Notification not found');
      return notificationView(row);
    },
  );

  app.post(
    '/stripe/notifications/:id/redeliver',
    {
      config: { idempotent: true },
      schema: {
        operationId: 'redeliverNotification',
        tags: ['Notifications'],
        summary: 'Send a notification to the game again',
        description:
          'Queues the notification to be sent now, with the same `webhook-id` (a receiver that dedupes by it ' +
          'ignores it if it had it), and with a new series of retries — also after it `failed`.',
        headers: idempotencyKeyHeader,
        params: NotificationIdParams,
        response: {
          200: { ...ref(Notification), description: 'The notification, queued (`delivery.status` is `pending`).' },
          400: problemResponse('A malformed id.', { validation_error: 'Invalid input: params/id must match pattern "^msg_[0-9a-f]{32}$"' }),
          404: notificationNotFound,
          409: problemResponse('An attempt to deliver it is under way; try again once it has finished.', {
            delivery_in_progress: 'The notification is being delivered right now; try again in a few seconds',
            idempotency_key_in_use: 'A request with this Idempotency-Key is still being processed; retry later',
          }),
          422: idempotencyConflicts[422],
          ...callerErrors,
          500: internalError,
        },
      },
    },
    async (request) => {
      const outcome = await app.store.redeliverNotification(request.params.id, new Date().toISOString());
      if (outcome === 'not_found') throw new ProblemError('notification_not_found', 'Notification not found');
      if (outcome === 'in_flight') {
        throw new ProblemError('delivery_in_progress', 'The notification is being delivered right now; try again in a few seconds');
      }
      return notificationView(outcome);
    },
  );
};

export default notificationRoutes;
