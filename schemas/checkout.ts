import { Type, type Static } from '@sinclair/typebox';

/**
 * What the checkout page asks the server before it starts. Not a named component: the checkout
 * routes are hidden from the OpenAPI document, which describes the API, not the page.
 */
export const CheckoutSettings = Type.Object(
  {
    gateway: Type.Union([Type.Literal('simulated'), Type.Literal('stripe')], {
      description: '`simulated`: test tokens, 3-D Secure through the simulator. `stripe`: the real Stripe API.',
    }),
    publishable_key: Type.Union([Type.String(), Type.Null()], {
      description: 'Set: the page collects the card with Stripe.js Elements. Null: it offers the test tokens.',
    }),
    auth_required: Type.Boolean({ description: 'Whether the API wants a credential (the page uses a client token, never an API key).' }),
    dev_session: Type.Boolean({
      description: 'Development only: POST /checkout/dev-session signs a player up and gives the page their client token.',
    }),
  },
  { additionalProperties: false },
);
export type CheckoutSettings = Static<typeof CheckoutSettings>;

/** What POST /checkout/dev-session answers (development only). */
export const DevSession = Type.Object(
  {
    user_id: Type.String(),
    stripe_customer_id: Type.String(),
    token: Type.String({ description: "The new player's client token." }),
    expires_at: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
export type DevSession = Static<typeof DevSession>;
