import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ref } from '../../../schemas/index.js';
import { StripeEvent, WebhookAck } from '../../../schemas/ledger.js';
import { ProblemError } from '../../errors.js';
import { FailureCounter } from '../../failure-counter.js';
import { WebhookRejected, WebhooksNotConfigured } from '../../gateway/types.js';
import { handleWebhookEvent } from '../../services/webhooks.js';
import { internalError, problemResponse, serviceUnavailable } from '../problem-responses.js';

const WEBHOOK_PATH = '/stripe/webhook';

/**
 * Stripe's events for the objects coinshop handles (PaymentIntents, charges, disputes) are a few
 * KiB; 256 KiB leaves ample room for a large one while an unauthenticated caller cannot make each
 * request cost a MiB to read and hash.
 */
export const WEBHOOK_BODY_LIMIT = 256 * 1024;
/** Bad signatures an address may send a minute before it is refused (429) until the minute ends. Stripe never sends one. */
export const WEBHOOK_FAILURES_PER_MINUTE = 20;

const webhookRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // The signature covers the exact bytes Stripe sent, so in this plugin the body stays raw.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT }, (_request, body, done) =>
    done(null, body),
  );
  // Webhooks are exempt from the rate limit (Stripe's retries must get through), so forgers are
  // counted here instead: an address past its bad signatures is refused before its body is read.
  const forgers = new FailureCounter(WEBHOOK_FAILURES_PER_MINUTE, 60_000);

  app.post(
    WEBHOOK_PATH,
    {
      // Stripe signs it instead of sending an API key; the signature check is its validation.
      config: { public: true },
      bodyLimit: WEBHOOK_BODY_LIMIT,
      validatorCompiler: () => () => true,
      onRequest: (request, reply, done) => {
        const retryAfter = forgers.blockedFor(request.ip);
        if (retryAfter === 0) return done();
        reply.header('retry-after', String(retryAfter));
        done(new ProblemError('rate_limited', 'Too many webhook deliveries with a bad signature from this address; retry in 1 minute'));
      },
      schema: {
        operationId: 'receiveStripeWebhook',
        tags: ['Webhooks'],
        summary: 'Receive a Stripe event (for Stripe to call)',
        security: [],
        description:
          'Point a Stripe webhook endpoint here with the events `payment_intent.succeeded`, ' +
          '`payment_intent.payment_failed`, `charge.refunded`, `charge.dispute.created` and ' +
          '`charge.dispute.closed`, and set its signing secret as `STRIPE_WEBHOOK_SECRET`. Each event is ' +
          'applied at most once, in any order; other event types are acknowledged and ignored.',
        headers: Type.Object({ 'stripe-signature': Type.String({ description: '`t=<unix time>,v1=<HMAC-SHA256>`, set by Stripe.' }) }),
        body: ref(StripeEvent),
        response: {
          200: { ...ref(WebhookAck), description: 'The event was accepted (processed, or already processed, or ignored).' },
          400: problemResponse(
            'The signature is missing or wrong, or its timestamp more than 5 minutes old or ahead: nothing was changed.',
            {
              webhook_rejected: 'Webhook signature rejected: No signatures found matching the expected signature for payload.',
            },
          ),
          413: problemResponse(`A body over ${WEBHOOK_BODY_LIMIT / 1024} KiB (Stripe's events are a few KiB): nothing was read further.`, {
            payload_too_large: 'Request body is too large',
          }),
          429: problemResponse(
            `More than ${WEBHOOK_FAILURES_PER_MINUTE} deliveries with a bad signature from this address within a minute: it is refused until the minute is over (see \`Retry-After\`).`,
            {
              rate_limited: 'Too many webhook deliveries with a bad signature from this address; retry in 1 minute',
            },
          ),
          500: internalError,
          502: problemResponse(
            'A dispute for a PaymentIntent no purchase knows yet, and Stripe could not be asked which purchase it is: nothing was recorded, and Stripe will retry.',
            { payment_provider_error: 'The payment provider failed or could not be reached; try again' },
          ),
          503: serviceUnavailable(
            'No STRIPE_WEBHOOK_SECRET is configured, or the database cannot be reached: nothing was recorded, and Stripe will retry.',
            {
              webhooks_not_configured: 'Webhooks are not configured: set STRIPE_WEBHOOK_SECRET',
            },
          ),
        },
      },
    },
    async (request) => {
      const signature = request.headers['stripe-signature'];
      const payload = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      let event;
      try {
        event = app.payments.verifyWebhook(payload, typeof signature === 'string' ? signature : undefined);
      } catch (err) {
        if (err instanceof WebhooksNotConfigured)
          throw new ProblemError('webhooks_not_configured', 'Webhooks are not configured: set STRIPE_WEBHOOK_SECRET');
        if (err instanceof WebhookRejected) {
          forgers.fail(request.ip);
          throw new ProblemError('webhook_rejected', `Webhook signature rejected: ${err.message}`);
        }
        throw err;
      }
      const outcome = await handleWebhookEvent({ store: app.store, log: request.log, payments: app.payments }, event);
      app.metrics.webhookEvents.inc({ type: event.type, outcome });
      return { received: true as const, outcome };
    },
  );

  // Offline, the simulated gateway's events come to this same endpoint, signed, as Stripe's would.
  const { simulation } = app.payments;
  if (simulation) {
    simulation.onWebhook(async (payload, signature) => {
      const response = await app.inject({
        method: 'POST',
        url: WEBHOOK_PATH,
        headers: { 'content-type': 'application/json', 'stripe-signature': signature },
        payload,
      });
      if (response.statusCode !== 200) app.log.error({ statusCode: response.statusCode, body: response.body }, 'simulated webhook failed');
    });
  }
};

export default webhookRoutes;
