import { Type, type Static } from '@sinclair/typebox';
import { UserId } from './ref.js';

const PaymentMethodId = Type.String({
  minLength: 4,
  maxLength: 255,
  pattern: '^pm_[A-Za-z0-9_]+$',
  description:
    'A Stripe PaymentMethod id from Stripe.js, or a test token (`pm_card_visa`, `pm_card_chargeDeclined`, ' +
    '`pm_card_insufficient_funds`, …). Test tokens are stored without a Stripe call.',
  examples: ['pm_card_visa'],
});

export const AttachPaymentMethodRequest = Type.Object(
  { user_id: UserId, payment_method_id: PaymentMethodId },
  {
    $id: 'AttachPaymentMethodRequest',
    title: 'AttachPaymentMethodRequest',
    additionalProperties: false,
    examples: [{ user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70', payment_method_id: 'pm_card_visa' }],
  },
);
export type AttachPaymentMethodRequest = Static<typeof AttachPaymentMethodRequest>;

export const AttachPaymentMethodResponse = Type.Object(
  {
    status: Type.Literal('success'),
    message: Type.String({ examples: ['Test payment method configured for customer'] }),
    payment_method_id: Type.String({ examples: ['pm_card_visa'] }),
  },
  {
    $id: 'AttachPaymentMethodResponse',
    title: 'AttachPaymentMethodResponse',
    additionalProperties: false,
    examples: [{ status: 'success', message: 'Test payment method configured for customer', payment_method_id: 'pm_card_visa' }],
  },
);
export type AttachPaymentMethodResponse = Static<typeof AttachPaymentMethodResponse>;
