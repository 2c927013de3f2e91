import { Type, type Static } from '@sinclair/typebox';
import { PackageId, ref, UserId } from './ref.js';

export const PurchaseCurrencyRequest = Type.Object(
  {
    user_id: UserId,
    package_id: PackageId,
  },
  {
    $id: 'PurchaseCurrencyRequest',
    title: 'PurchaseCurrencyRequest',
    additionalProperties: false,
    examples: [{ user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70', package_id: 'package_1' }],
  },
);
export type PurchaseCurrencyRequest = Static<typeof PurchaseCurrencyRequest>;

export const PurchaseResult = Type.Object(
  {
    status: Type.Literal('success'),
    transaction_id: Type.String({ format: 'uuid' }),
    currency_purchased: Type.Integer({ examples: [100] }),
    new_balance: Type.Integer({ examples: [100] }),
    message: Type.String({ examples: ['Currency purchase successful'] }),
  },
  {
    $id: 'PurchaseResult',
    title: 'PurchaseResult',
    additionalProperties: false,
    examples: [
      {
        status: 'success',
        transaction_id: '9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a',
        currency_purchased: 100,
        new_balance: 100,
        message: 'Currency purchase successful',
      },
    ],
  },
);
export type PurchaseResult = Static<typeof PurchaseResult>;

export const TransactionStatus = Type.Union(
  [
    Type.Literal('pending'),
    Type.Literal('requires_action'),
    Type.Literal('completed'),
    Type.Literal('failed'),
    Type.Literal('partially_refunded'),
    Type.Literal('refunded'),
    Type.Literal('disputed'),
    Type.Literal('dispute_won'),
    Type.Literal('dispute_lost'),
  ],
  {
    $id: 'TransactionStatus',
    title: 'TransactionStatus',
    description:
      '`completed`: paid and credited. `failed`: declined, nothing charged. `pending`: sent to Stripe, ' +
      'outcome not yet known. `requires_action`: waiting for the customer to authenticate (3-D Secure). ' +
      '`partially_refunded`/`refunded`: money returned, coins taken back pro rata. `disputed`: the ' +
      "cardholder's bank charged the payment back, its coins are held back; `dispute_won` gives them back, " +
      '`dispute_lost` does not. An inquiry (a bank asking a question, no money taken) changes neither status ' +
      'nor coins. A status only moves forward, except that a new chargeback after a won one makes the ' +
      'purchase `disputed` again.',
  },
);
export type TransactionStatus = Static<typeof TransactionStatus>;

export const Transaction = Type.Object(
  {
    transaction_id: Type.String({ format: 'uuid' }),
    package_id: Type.String({ examples: ['package_1'] }),
    amount_paid: Type.Integer({ description: 'Price in cents.', examples: [1000] }),
    currency: Type.String({ examples: ['usd'] }),
    currency_purchased: Type.Integer({ description: 'Coins bought.', examples: [100] }),
    package_name: Type.String({ examples: ['Starter Pack'] }),
    timestamp: Type.String({ format: 'date-time' }),
    status: ref(TransactionStatus),
    failure_code: Type.Optional(
      Type.String({
        description:
          'For `failed`: why, e.g. `card_declined`, `insufficient_funds`; for a Stripe Checkout purchase `checkout_expired` ' +
          '(the session expired unpaid) or `async_payment_failed` (a delayed payment method was refused).',
      }),
    ),
  },
  { $id: 'Transaction', title: 'Transaction', additionalProperties: false },
);
export type Transaction = Static<typeof Transaction>;

export const TransactionHistory = Type.Object(
  {
    user_id: Type.String({ format: 'uuid' }),
    transactions: Type.Array(ref(Transaction), { description: 'Every purchase attempt, newest first.' }),
  },
  {
    $id: 'TransactionHistory',
    title: 'TransactionHistory',
    additionalProperties: false,
    examples: [
      {
        user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70',
        transactions: [
          {
            transaction_id: '9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a',
            package_id: 'package_1',
            amount_paid: 1000,
            currency: 'usd',
            currency_purchased: 100,
            package_name: 'Starter Pack',
            timestamp: '2024-01-01T00:00:00.000Z',
            status: 'completed',
          },
        ],
      },
    ],
  },
);
export type TransactionHistory = Static<typeof TransactionHistory>;

export const TransactionIdParams = Type.Object(
  { transaction_id: Type.String({ minLength: 1, maxLength: 64, description: 'A `transaction_id` from a purchase.' }) },
  { additionalProperties: false },
);

export const Purchase = Type.Object(
  {
    transaction_id: Type.String({ format: 'uuid' }),
    user_id: Type.String({ format: 'uuid' }),
    package_id: Type.String({ examples: ['package_1'] }),
    package_name: Type.String({ examples: ['Starter Pack'] }),
    amount_paid: Type.Integer({ description: 'Price in cents.', examples: [1000] }),
    currency: Type.String({ examples: ['usd'] }),
    currency_purchased: Type.Integer({ description: 'Coins bought.', examples: [100] }),
    status: ref(TransactionStatus),
    payment_intent_id: Type.Optional(Type.String({ description: 'The Stripe PaymentIntent, once Stripe has made one.' })),
    failure_code: Type.Optional(
      Type.String({
        description: 'For `failed`: why, e.g. `card_declined`, `insufficient_funds`, `checkout_expired`, `async_payment_failed`.',
      }),
    ),
    amount_refunded: Type.Integer({ description: 'Cents refunded so far.', examples: [0] }),
    client_secret: Type.Optional(
      Type.String({ description: 'While `requires_action`: the PaymentIntent client secret for Stripe.js to finish authentication.' }),
    ),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  {
    $id: 'Purchase',
    title: 'Purchase',
    additionalProperties: false,
    examples: [
      {
        transaction_id: '9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a',
        user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70',
        package_id: 'package_1',
        package_name: 'Starter Pack',
        amount_paid: 1000,
        currency: 'usd',
        currency_purchased: 100,
        status: 'completed',
        payment_intent_id: 'pi_3Q1w2E3r4T5y6U7i',
        amount_refunded: 0,
        created_at: '2024-01-01T00:00:00.000Z',
        updated_at: '2024-01-01T00:00:01.000Z',
      },
    ],
  },
);
export type Purchase = Static<typeof Purchase>;

export const RefundPurchaseRequest = Type.Object(
  {
    amount_cents: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 99_999_999, description: 'Cents to refund; all that remains when omitted.', examples: [500] }),
    ),
  },
  {
    $id: 'RefundPurchaseRequest',
    title: 'RefundPurchaseRequest',
    additionalProperties: false,
    examples: [{ amount_cents: 500 }],
  },
);
export type RefundPurchaseRequest = Static<typeof RefundPurchaseRequest>;
