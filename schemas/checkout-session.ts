import { Type, type Static } from '@sinclair/typebox';
import { PackageId, UserId } from './ref.js';

const returnUrl = (what: string, example: string) =>
  Type.String({
    minLength: 1,
    maxLength: 2048,
    description:
      `Where Stripe sends the customer ${what}: an https URL whose origin is in \`CHECKOUT_RETURN_ORIGINS\` ` +
      "(in development coinshop's own origin too). Stripe's `{CHECKOUT_SESSION_ID}` placeholder is kept.",
    examples: [example],
  });

export const CreateCheckoutSessionRequest = Type.Object(
  {
    user_id: UserId,
    package_id: PackageId,
    success_url: returnUrl('after paying', 'https://shop.example.com/coins/done?session_id={CHECKOUT_SESSION_ID}'),
    cancel_url: returnUrl('when they go back without paying', 'https://shop.example.com/coins'),
  },
  {
    $id: 'CreateCheckoutSessionRequest',
    title: 'CreateCheckoutSessionRequest',
    additionalProperties: false,
    examples: [
      {
        user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70',
        package_id: 'package_1',
        success_url: 'https://shop.example.com/coins/done?session_id={CHECKOUT_SESSION_ID}',
        cancel_url: 'https://shop.example.com/coins',
      },
    ],
  },
);
export type CreateCheckoutSessionRequest = Static<typeof CreateCheckoutSessionRequest>;

export const CheckoutSessionCreated = Type.Object(
  {
    session_id: Type.String({ description: 'The Stripe Checkout Session.', examples: ['cs_test_a1B2c3D4e5F6g7H8'] }),
    checkout_url: Type.String({
      description: "Stripe's hosted payment page: send the customer's browser there (a full-page redirect).",
      examples: ['https://checkout.stripe.com/c/pay/cs_test_a1B2c3D4e5F6g7H8'],
    }),
    transaction_id: Type.String({
      format: 'uuid',
      description: 'The purchase, recorded as `pending`: look it up with getPurchase when the customer comes back.',
    }),
    expires_at: Type.String({
      format: 'date-time',
      description: 'When the session expires unpaid (the purchase then fails with `checkout_expired`).',
    }),
  },
  {
    $id: 'CheckoutSessionCreated',
    title: 'CheckoutSessionCreated',
    additionalProperties: false,
    examples: [
      {
        session_id: 'cs_test_a1B2c3D4e5F6g7H8',
        checkout_url: 'https://checkout.stripe.com/c/pay/cs_test_a1B2c3D4e5F6g7H8',
        transaction_id: '9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a',
        expires_at: '2024-01-01T01:00:00.000Z',
      },
    ],
  },
);
export type CheckoutSessionCreated = Static<typeof CheckoutSessionCreated>;
