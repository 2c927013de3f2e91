import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ref } from '../../../schemas/index.js';
import {
  CheckoutSessionParams,
  DisputeParams,
  PaymentIntentParams,
  SimulateAuthenticationRequest,
  SimulateCheckoutRequest,
  SimulateDisputeClosedRequest,
  SimulationResult,
} from '../../../schemas/simulator.js';
import { ProblemError } from '../../errors.js';
import { SimulatedObjectNotFound, SimulationRefused, type PaymentSimulation } from '../../gateway/types.js';
import { assertPlayerMayAct } from '../../plugins/auth.js';
import { purchaseView } from '../../services/purchases.js';
import { callerErrors, internalError, playerSecurity, problemResponse, validationFailed } from '../problem-responses.js';

const notFound = problemResponse(
  'No such simulated PaymentIntent, dispute or Checkout Session, or (with a client token) no purchase of this player has it.',
  {
    not_found: "No such PaymentIntent: 'pi_sim_0a1b2c3d'",
    purchase_not_found: 'Purchase not found',
  },
);
const refused = problemResponse('The simulated object is not in a state that allows this.', {
  invalid_state: 'PaymentIntent pi_sim_1 is not waiting for authentication (status succeeded)',
});

/**
 * Stand-ins, for development without Stripe, for what happens outside the API: the customer passing
 * 3-D Secure in the browser, a bank opening and deciding a dispute. Each emits the signed webhook
 * Stripe would send, through the real webhook endpoint. Registered only in development on the
 * simulated gateway (src/app.ts).
 */
const simulatorRoutes: FastifyPluginAsyncTypebox<{ simulator: PaymentSimulation }> = async (app, { simulator }) => {
  const purchaseOf = async (paymentIntentId: string) => {
    const purchase = await app.store.findPurchaseByPaymentIntent(paymentIntentId);
    if (!purchase) throw new ProblemError('purchase_not_found', 'Purchase not found');
    return purchaseView(purchase);
  };
  const simulate = async <T>(step: () => Promise<T>) => {
    try {
      return await step();
    } catch (err) {
      if (err instanceof SimulationRefused) throw new ProblemError('invalid_state', err.message);
      if (err instanceof SimulatedObjectNotFound) throw new ProblemError('not_found', err.message);
      throw err;
    }
  };
  const responses = (description: string, invalid: string) => ({
    200: { ...ref(SimulationResult), description },
    400: validationFailed(invalid),
    404: notFound,
    409: refused,
    ...callerErrors,
    500: internalError,
  });

  app.post(
    '/simulator/payment-intents/:payment_intent_id/authenticate',
    {
      // The customer's own step (Stripe.js in the real world), so the checkout page can play it with its token.
      config: { clientToken: 'own' },
      schema: {
        security: playerSecurity,
        operationId: 'simulateAuthentication',
        tags: ['Simulator'],
        summary: 'Simulate the customer completing (or failing) 3-D Secure',
        params: PaymentIntentParams,
        body: ref(SimulateAuthenticationRequest),
        response: responses(
          'The purchase after the payment_intent webhook.',
          'Invalid input: body/outcome must be one of "succeed", "fail"',
        ),
      },
    },
    async (request) => {
      const { payment_intent_id } = request.params;
      const owned = await app.store.findPurchaseByPaymentIntent(payment_intent_id);
      if (owned) assertPlayerMayAct(request, owned.user_id);
      else if (request.player !== undefined) throw new ProblemError('purchase_not_found', 'Purchase not found');
      await simulate(() => simulator.authenticate(payment_intent_id, request.body.outcome));
      return { purchase: await purchaseOf(payment_intent_id) };
    },
  );

  app.post(
    '/simulator/payment-intents/:payment_intent_id/dispute',
    {
      schema: {
        operationId: 'simulateDispute',
        tags: ['Simulator'],
        summary: "Simulate the cardholder's bank disputing a payment",
        params: PaymentIntentParams,
        response: responses(
          'The purchase after the charge.dispute.created webhook, and the dispute id.',
          'Invalid input: params/payment_intent_id must NOT have more than 255 characters',
        ),
      },
    },
    async (request) => {
      const { payment_intent_id } = request.params;
      const disputeId = await simulate(() => simulator.dispute(payment_intent_id));
      return { purchase: await purchaseOf(payment_intent_id), dispute_id: disputeId };
    },
  );

  app.post(
    '/simulator/disputes/:dispute_id/close',
    {
      schema: {
        operationId: 'simulateDisputeClosed',
        tags: ['Simulator'],
        summary: 'Simulate a dispute being decided',
        params: DisputeParams,
        body: ref(SimulateDisputeClosedRequest),
        response: responses(
          'The purchase after the charge.dispute.closed webhook.',
          'Invalid input: body/outcome must be one of "won", "lost"',
        ),
      },
    },
    async (request) => {
      const paymentIntentId = await simulate(() => simulator.closeDispute(request.params.dispute_id, request.body.outcome));
      return { purchase: await purchaseOf(paymentIntentId) };
    },
  );

  app.post(
    '/simulator/checkout-sessions/:session_id',
    {
      schema: {
        operationId: 'simulateCheckout',
        tags: ['Simulator'],
        summary: 'Simulate a Checkout Session being paid, failing a delayed payment, or expiring',
        description:
          "What happens on Stripe's hosted page or with time: the session's `checkout.session.*` webhooks (and the " +
          "PaymentIntent's) are delivered before this answers. The page itself is at the session's `checkout_url`.",
        params: CheckoutSessionParams,
        body: ref(SimulateCheckoutRequest),
        response: responses(
          'The purchase after the checkout.session webhooks.',
          'Invalid input: body/outcome must be one of "complete", "fail", "expire"',
        ),
      },
    },
    async (request) => {
      const { session_id } = request.params;
      await simulate(() => simulator.finishCheckout(session_id, request.body.outcome));
      const purchase = await app.store.findPurchaseByCheckoutSession(session_id);
      if (!purchase) throw new ProblemError('purchase_not_found', 'Purchase not found');
      return { purchase: purchaseView(purchase) };
    },
  );
};

export default simulatorRoutes;
