import { Type, type Static } from '@sinclair/typebox';
import { Purchase } from './purchase.js';
import { ref } from './ref.js';

export const PaymentIntentParams = Type.Object(
  { payment_intent_id: Type.String({ minLength: 1, maxLength: 255, description: 'A simulated PaymentIntent (`pi_sim_…`).' }) },
  { additionalProperties: false },
);
export const DisputeParams = Type.Object(
  { dispute_id: Type.String({ minLength: 1, maxLength: 255, description: 'A simulated dispute (`dp_sim_…`).' }) },
  { additionalProperties: false },
);

export const CheckoutSessionParams = Type.Object(
  { session_id: Type.String({ minLength: 1, maxLength: 255, description: 'A simulated Checkout Session (`cs_sim_…`).' }) },
  { additionalProperties: false },
);

export const SimulateCheckoutRequest = Type.Object(
  {
    outcome: Type.Union([Type.Literal('complete'), Type.Literal('fail'), Type.Literal('expire')], {
      description:
        '`complete`: the customer pays (card, wallet). `fail`: the customer starts a delayed payment (a bank debit) that the bank then refuses. ' +
        '`expire`: the session expires unpaid.',
    }),
  },
  { $id: 'SimulateCheckoutRequest', title: 'SimulateCheckoutRequest', additionalProperties: false, examples: [{ outcome: 'complete' }] },
);
export type SimulateCheckoutRequest = Static<typeof SimulateCheckoutRequest>;

export const SimulateAuthenticationRequest = Type.Object(
  { outcome: Type.Union([Type.Literal('succeed'), Type.Literal('fail')], { description: 'Whether the customer passes 3-D Secure.' }) },
  {
    $id: 'SimulateAuthenticationRequest',
    title: 'SimulateAuthenticationRequest',
    additionalProperties: false,
    examples: [{ outcome: 'succeed' }],
  },
);
export type SimulateAuthenticationRequest = Static<typeof SimulateAuthenticationRequest>;

export const SimulateDisputeClosedRequest = Type.Object(
  { outcome: Type.Union([Type.Literal('won'), Type.Literal('lost')], { description: "How the cardholder's bank decided." }) },
  {
    $id: 'SimulateDisputeClosedRequest',
    title: 'SimulateDisputeClosedRequest',
    additionalProperties: false,
    examples: [{ outcome: 'won' }],
  },
);
export type SimulateDisputeClosedRequest = Static<typeof SimulateDisputeClosedRequest>;

export const SimulationResult = Type.Object(
  {
    purchase: ref(Purchase),
    dispute_id: Type.Optional(Type.String({ description: 'For a new dispute: its id, to close it later.' })),
  },
  {
    $id: 'SimulationResult',
    title: 'SimulationResult',
    additionalProperties: false,
    examples: [{ purchase: (Purchase.examples as unknown[])[0], dispute_id: 'dp_sim_0a1b2c3d4e5f6a7b8c9d0e1f' }],
  },
);
export type SimulationResult = Static<typeof SimulationResult>;
