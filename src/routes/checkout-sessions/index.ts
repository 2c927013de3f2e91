import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CheckoutSessionCreated, CreateCheckoutSessionRequest } from '../../../schemas/checkout-session.js';
import { ref } from '../../../schemas/index.js';
import { ProblemError } from '../../errors.js';
import { beginCheckout, checkReturnUrls, createCheckout } from '../../services/checkout.js';
import {
  callerErrors,
  customerNotFound,
  idempotencyConflicts,
  idempotencyKeyHeader,
  internalError,
  playerSecurity,
  problemResponse,
} from '../problem-responses.js';

/** POST /stripe/checkout-sessions: a package bought on Stripe's hosted Checkout page. */
const checkoutSessionRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const allowedOrigins = new Set(app.config.CHECKOUT_RETURN_ORIGINS?.split(',') ?? []);
  const development = app.config.NODE_ENV === 'development';

  app.post(
    '/stripe/checkout-sessions',
    {
      // The checkout service reserves the Idempotency-Key with the pending purchase, in one transaction.
      config: { idempotent: 'service', clientToken: 'user_id' },
      schema: {
        security: playerSecurity,
        operationId: 'createCheckoutSession',
        tags: ['Purchases'],
        summary: 'Buy a coin package on Stripe Checkout (wallets, local payment methods, no saved card)',
        description:
          "Records the purchase as `pending` and opens a Stripe Checkout Session for the package's catalog price. " +
          "Send the customer's browser to `checkout_url`: Stripe's page offers every payment method the account has " +
          'turned on (cards, Apple Pay, Google Pay, Link, iDEAL, SEPA Debit…), runs 3-D Secure, then sends the customer ' +
          'to `success_url` or `cancel_url`. The coins are credited once, by whichever learns of the payment first: ' +
          "Stripe's webhook, getPurchase with `transaction_id`, or reconciliation. A session that expires unpaid fails the " +
          'purchase with `checkout_expired`. Send an `Idempotency-Key` so a retry opens no second session.',
        headers: idempotencyKeyHeader,
        body: ref(CreateCheckoutSessionRequest),
        response: {
          200: { ...ref(CheckoutSessionCreated), description: 'The session is open: redirect the customer to `checkout_url`.' },
          400: problemResponse('The package is unknown, or a return URL is not allowed (`errors` names the field); nothing was recorded.', {
            invalid_package: 'Invalid package ID',
            invalid_return_url:
              'Return URL not allowed: body/success_url must be on an origin in CHECKOUT_RETURN_ORIGINS (https://evil.example is not)',
            validation_error: 'Invalid input: body/success_url is required',
            checkout_expired: 'The Stripe Checkout Session expired before the customer paid; nothing was charged',
          }),
          404: customerNotFound,
          409: problemResponse(
            "A retry whose purchase is already settled: its session is over (look it up with getPurchase), or the key's request is still running.",
            {
              invalid_state: "This purchase's Checkout Session is over; look the purchase up with getPurchase",
              idempotency_key_in_use: 'A request with this Idempotency-Key is still being processed; retry later',
            },
          ),
          422: idempotencyConflicts[422],
          424: problemResponse(
            'Stripe refused to open the session; nothing was made. The purchase is `failed` and this answer is final for its Idempotency-Key.',
            { payment_provider_refused: 'The payment provider refused the Checkout Session: Invalid URL: cancel_url' },
          ),
          ...callerErrors,
          500: internalError,
          502: problemResponse(
            'Stripe failed or could not be reached; the session may exist. Retry with the same `Idempotency-Key`: it answers the session Stripe made.',
            {
              payment_provider_error:
                'The payment provider failed or could not be reached, and the request may have taken effect there; retry with the same Idempotency-Key',
            },
          ),
        },
      },
    },
    async (request, reply) => {
      // As URL normalises it (no default port), so it compares equal to a return URL's origin.
      const origin = new URL(`${request.protocol}://${request.host}`).origin;
      // Before anything is recorded: a refused URL leaves no purchase and no key behind.
      checkReturnUrls(request.body, allowedOrigins, development ? origin : undefined);
      const begun = await beginCheckout(app, request.body, request.idempotencyKey);
      if (begun.kind === 'replay') return reply.sendKeptAnswer(begun.answer);
      request.idempotency = begun.idempotency;
      try {
        const created = await createCheckout(
          {
            store: app.store,
            payments: app.payments,
            catalog: app.catalog,
            log: request.log,
            expiryMinutes: app.config.CHECKOUT_EXPIRY_MINUTES,
          },
          request.body,
          { requestId: request.id, idempotency: begun.idempotency, transactionId: begun.transactionId, recorded: begun.recorded, origin },
        );
        app.metrics.purchases.inc({ outcome: 'checkout_opened' });
        return created;
      } catch (err) {
        app.metrics.purchases.inc({ outcome: err instanceof ProblemError ? err.code : 'internal_error' });
        throw err;
      }
    },
  );
};

export default checkoutSessionRoutes;
