import { Type, type Static } from '@sinclair/typebox';
import { ref, UserId } from './ref.js';

export const SpendCurrencyRequest = Type.Object(
  {
    user_id: UserId,
    amount: Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: 'Coins to spend.', examples: [250] }),
    item_id: Type.String({ minLength: 1, maxLength: 100, description: 'What the coins buy, in your game.', examples: ['sword_of_dawn'] }),
  },
  {
    $id: 'SpendCurrencyRequest',
    title: 'SpendCurrencyRequest',
    additionalProperties: false,
    examples: [{ user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70', amount: 250, item_id: 'sword_of_dawn' }],
  },
);
export type SpendCurrencyRequest = Static<typeof SpendCurrencyRequest>;

export const SpendResult = Type.Object(
  {
    status: Type.Literal('success'),
    spend_id: Type.String({ format: 'uuid' }),
    currency_spent: Type.Integer({ examples: [250] }),
    new_balance: Type.Integer({ examples: [850] }),
    message: Type.String({ examples: ['Currency spent successfully'] }),
  },
  {
    $id: 'SpendResult',
    title: 'SpendResult',
    additionalProperties: false,
    examples: [
      {
        status: 'success',
        spend_id: '5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d',
        currency_spent: 250,
        new_balance: 850,
        message: 'Currency spent successfully',
      },
    ],
  },
);
export type SpendResult = Static<typeof SpendResult>;

export const LedgerReason = Type.Union(
  ['purchase', 'refund', 'refund_reversal', 'dispute', 'dispute_reversal', 'spend'].map((r) => Type.Literal(r)),
  { $id: 'LedgerReason', title: 'LedgerReason', description: 'Why the coins moved.' },
);
export type LedgerReason = Static<typeof LedgerReason>;

export const LedgerEntry = Type.Object(
  {
    entry_id: Type.Integer({ description: 'Increases with every entry.' }),
    amount: Type.Integer({ description: 'Coins added (positive) or taken (negative).', examples: [100] }),
    balance_after: Type.Integer({ examples: [100] }),
    reason: ref(LedgerReason),
    reference: Type.String({ description: 'The object behind it: a PaymentIntent, a refund state, a dispute, a spend.' }),
    transaction_id: Type.Optional(Type.String({ format: 'uuid', description: 'The purchase, for purchase, refund and dispute entries.' })),
    memo: Type.Optional(Type.String()),
    created_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'LedgerEntry', title: 'LedgerEntry', additionalProperties: false },
);
export type LedgerEntry = Static<typeof LedgerEntry>;

export const LedgerPage = Type.Object(
  {
    user_id: Type.String({ format: 'uuid' }),
    currency_balance: Type.Integer({ description: 'The balance now: the sum of every entry.' }),
    entries: Type.Array(ref(LedgerEntry), { description: 'Newest first.' }),
    next_cursor: Type.Optional(Type.String({ description: 'Pass as `cursor` for the next (older) page; absent on the last page.' })),
  },
  {
    $id: 'LedgerPage',
    title: 'LedgerPage',
    additionalProperties: false,
    examples: [
      {
        user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70',
        currency_balance: 100,
        entries: [
          {
            entry_id: 1,
            amount: 100,
            balance_after: 100,
            reason: 'purchase',
            reference: 'pi_3Q1w2E3r4T5y6U7i',
            transaction_id: '9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a',
            memo: 'Starter Pack',
            created_at: '2024-01-01T00:00:01.000Z',
          },
        ],
      },
    ],
  },
);
export type LedgerPage = Static<typeof LedgerPage>;

export const LedgerQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Entries per page.' })),
    cursor: Type.Optional(
      Type.String({ minLength: 1, maxLength: 32, pattern: '^[0-9]+$', description: '`next_cursor` from the previous page.' }),
    ),
  },
  { additionalProperties: false },
);

export const WebhookAck = Type.Object(
  {
    received: Type.Literal(true),
    outcome: Type.Union([Type.Literal('processed'), Type.Literal('duplicate'), Type.Literal('ignored')], {
      description: '`duplicate`: this event id was processed before; `ignored`: an event type or object coinshop does not act on.',
    }),
  },
  { $id: 'WebhookAck', title: 'WebhookAck', additionalProperties: false, examples: [{ received: true, outcome: 'processed' }] },
);

export const StripeEvent = Type.Object(
  {
    id: Type.String({ examples: ['evt_1Q1w2E3r4T5y6U7i'] }),
    object: Type.Literal('event'),
    type: Type.String({ examples: ['payment_intent.succeeded'] }),
    data: Type.Object({ object: Type.Object({}, { additionalProperties: true }) }),
  },
  {
    $id: 'StripeEvent',
    title: 'StripeEvent',
    description: 'A Stripe event as Stripe sends it; verified by its `Stripe-Signature` over the raw body.',
    additionalProperties: true,
    examples: [
      {
        id: 'evt_1Q1w2E3r4T5y6U7i',
        object: 'event',
        type: 'payment_intent.succeeded',
        data: { object: { id: 'pi_3Q1w2E3r4T5y6U7i', object: 'payment_intent', status: 'succeeded' } },
      },
    ],
  },
);
