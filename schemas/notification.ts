import { Type, type Static } from '@sinclair/typebox';
import { ref } from './ref.js';

/** Every kind of money event the game is told of. */
export const NOTIFICATION_TYPES = [
  'purchase.succeeded',
  'purchase.failed',
  'purchase.requires_action',
  'purchase.refunded',
  'purchase.refund_failed',
  'purchase.disputed',
  'purchase.dispute_closed',
  'coins.spent',
] as const;

export const NotificationType = Type.Union(
  NOTIFICATION_TYPES.map((type) => Type.Literal(type)),
  {
    $id: 'NotificationType',
    title: 'NotificationType',
    description:
      '`purchase.succeeded`: coins credited (by the purchase call, a lookup, a webhook or reconciliation). ' +
      '`purchase.failed`: declined or refused, nothing credited. `purchase.requires_action`: waiting for 3-D Secure. ' +
      '`purchase.refunded`: refunded in whole or in part, coins taken back. `purchase.refund_failed`: a refund ' +
      'failed after it was made, coins given back. `purchase.disputed`: a chargeback ' +
      'opened, coins held back. `purchase.dispute_closed`: won (coins returned) or lost. `coins.spent`: coins spent.',
  },
);
export type NotificationType = Static<typeof NotificationType>;

const common = {
  user_id: Type.String({ description: 'The player.' }),
  sequence: Type.Integer({
    minimum: 1,
    description: "The player's notifications are numbered 1, 2, 3… in the order their changes committed: order one player's events by it.",
  }),
  coins: Type.Integer({ description: 'Coins this event moved: positive to the player, negative from them, 0 when none moved.' }),
  balance: Type.Integer({ description: "The player's balance right after this event." }),
};

/** A purchase.succeeded's data: the example of PurchaseEventData and of Notification. */
const creditExample = {
  user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70',
  sequence: 1,
  coins: 100,
  balance: 100,
  transaction_id: '9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a',
  package_id: 'package_1',
  amount_paid: 1000,
  currency: 'usd',
  payment_intent_id: 'pi_3Q1w2E3r4T5y6U7i',
};

export const PurchaseEventData = Type.Object(
  {
    ...common,
    transaction_id: Type.String({ description: 'The purchase.' }),
    package_id: Type.String(),
    amount_paid: Type.Integer({ description: 'The price, in cents.' }),
    currency: Type.String(),
    payment_intent_id: Type.Optional(Type.String()),
    failure_code: Type.Optional(Type.String({ description: 'For `purchase.failed`: why.' })),
    amount_refunded: Type.Optional(
      Type.Integer({ description: 'For `purchase.refunded` and `purchase.refund_failed`: cents refunded in all, after this event.' }),
    ),
    dispute_id: Type.Optional(Type.String({ description: 'For `purchase.disputed` and `purchase.dispute_closed`.' })),
    dispute_outcome: Type.Optional(
      Type.Union([Type.Literal('won'), Type.Literal('lost')], { description: 'For `purchase.dispute_closed`.' }),
    ),
  },
  {
    $id: 'PurchaseEventData',
    title: 'PurchaseEventData',
    additionalProperties: false,
    examples: [creditExample],
  },
);
export type PurchaseEventData = Static<typeof PurchaseEventData>;

export const SpendEventData = Type.Object(
  {
    ...common,
    spend_id: Type.String({ description: 'The spend (`spend_id` of spendCurrency).' }),
    item_id: Type.String(),
  },
  {
    $id: 'SpendEventData',
    title: 'SpendEventData',
    additionalProperties: false,
    examples: [
      {
        user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70',
        sequence: 2,
        coins: -30,
        balance: 70,
        spend_id: '0b8f6a52-3c1d-4e9f-8a7b-6c5d4e3f2a10',
        item_id: 'sword',
      },
    ],
  },
);
export type SpendEventData = Static<typeof SpendEventData>;

export const NotificationDelivery = Type.Object(
  {
    status: Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')], {
      description:
        '`pending`: waiting to be sent or retried; `delivered`: the game answered 2xx; `failed`: still unanswered after 3 days of retries.',
    }),
    attempts: Type.Integer({ minimum: 0 }),
    last_attempt_at: Type.Optional(Type.String({ format: 'date-time' })),
    last_error: Type.Optional(Type.String({ description: 'What the last failed attempt met, e.g. `HTTP 503` or `timed out after 10 s`.' })),
    next_attempt_at: Type.Optional(Type.String({ format: 'date-time', description: 'While `pending`: when it is sent next.' })),
    delivered_at: Type.Optional(Type.String({ format: 'date-time' })),
  },
  { $id: 'NotificationDelivery', title: 'NotificationDelivery', additionalProperties: false },
);

export const Notification = Type.Object(
  {
    id: Type.String({
      description: 'Stable: the `webhook-id` of every delivery attempt. Dedupe by it.',
      examples: ['msg_2b7d4c8e9a012b3c4d5e6f703f1c2a9e'],
    }),
    type: ref(NotificationType),
    created_at: Type.String({ format: 'date-time', description: 'When the change it reports committed.' }),
    data: Type.Union([ref(PurchaseEventData), ref(SpendEventData)]),
    delivery: ref(NotificationDelivery),
  },
  {
    $id: 'Notification',
    title: 'Notification',
    additionalProperties: false,
    examples: [
      {
        id: 'msg_2b7d4c8e9a012b3c4d5e6f703f1c2a9e',
        type: 'purchase.succeeded',
        created_at: '2024-01-01T00:00:01.000Z',
        data: creditExample,
        delivery: {
          status: 'delivered',
          attempts: 1,
          last_attempt_at: '2024-01-01T00:00:01.050Z',
          delivered_at: '2024-01-01T00:00:01.080Z',
        },
      },
    ],
  },
);
export type Notification = Static<typeof Notification>;

export const NotificationPage = Type.Object(
  {
    notifications: Type.Array(ref(Notification), { description: 'Newest first.' }),
    next_cursor: Type.Optional(Type.String({ description: 'Pass as `cursor` for the next (older) page; absent on the last page.' })),
  },
  {
    $id: 'NotificationPage',
    title: 'NotificationPage',
    additionalProperties: false,
    examples: [{ notifications: Notification.examples as unknown[], next_cursor: '41' }],
  },
);

export const NotificationQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Notifications per page.' })),
    // At most 15 digits: every such number is exact in JavaScript and in a 64-bit column.
    cursor: Type.Optional(
      Type.String({ minLength: 1, maxLength: 15, pattern: '^[0-9]{1,15}$', description: '`next_cursor` from the previous page.' }),
    ),
    type: Type.Optional(ref(NotificationType)),
    status: Type.Optional(Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')])),
  },
  { additionalProperties: false },
);

export const NotificationIdParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 40, pattern: '^msg_[0-9a-f]{32}$', examples: ['msg_2b7d4c8e9a012b3c4d5e6f703f1c2a9e'] }) },
  { additionalProperties: false },
);
