import Stripe from 'stripe';
import { toStripeToken } from './test-cards.js';
import {
  CheckoutRefused,
  GatewayError,
  PaymentMethodRejected,
  RefundRejected,
  providerRefundStatus,
  type ChargeOutcome,
  type ChargeRequest,
  type CheckoutSession,
  type CheckoutSessionRequest,
  type PaymentsGateway,
  type ProviderRefund,
  type RefundRequest,
  type RefundResult,
  type WebhookEvent,
} from './types.js';
import { verifyStripeSignature } from './webhooks.js';

export interface StripeGatewayOptions {
  secretKey: string;
  /** Base URL of a Stripe-compatible server; Stripe's own API when undefined. */
  apiBase?: string | undefined;
  maxNetworkRetries: number;
  timeoutMs: number;
}

/** Builds the stripe SDK client, pointed at `apiBase` when one is given. */
export function createStripeClient(options: StripeGatewayOptions): Stripe {
  const config: Stripe.StripeConfig = {
    maxNetworkRetries: options.maxNetworkRetries,
    timeout: options.timeoutMs,
    telemetry: false,
    appInfo: { name: 'coinshop' },
  };
  if (options.apiBase) {
    const url = new URL(options.apiBase);
    const protocol = url.protocol === 'http:' ? 'http' : 'https';
    config.protocol = protocol;
    config.host = url.hostname;
    config.port = url.port || (protocol === 'http' ? 80 : 443);
  }
  return new Stripe(options.secretKey, config);
}

function intentOutcome(intent: Stripe.PaymentIntent): ChargeOutcome {
  switch (intent.status) {
    case 'succeeded':
      return { status: 'succeeded', paymentIntentId: intent.id };
    case 'requires_action':
      return { status: 'requires_action', paymentIntentId: intent.id, clientSecret: intent.client_secret ?? '' };
    case 'requires_payment_method':
    case 'canceled': {
      const last = intent.last_payment_error;
      return {
        status: 'declined',
        paymentIntentId: intent.id,
        code: last?.code ?? (intent.status === 'canceled' ? 'canceled' : 'card_declined'),
        declineCode: last?.decline_code,
      };
    }
    default:
      return { status: 'processing', paymentIntentId: intent.id };
  }
}

function sessionOf(session: Stripe.Checkout.Session): CheckoutSession {
  const intent = session.payment_intent;
  const status: string | null = session.status;
  const paymentStatus: string = session.payment_status;
  return {
    id: session.id,
    url: session.url,
    // A status Stripe adds later is taken as still open: the session is asked about again.
    status: status === 'complete' || status === 'expired' ? status : 'open',
    paymentStatus: paymentStatus === 'paid' || paymentStatus === 'no_payment_required' ? paymentStatus : 'unpaid',
    paymentIntentId: typeof intent === 'string' ? intent : (intent?.id ?? null),
    expiresAt: session.expires_at,
  };
}

function isStripeError(err: unknown): err is Stripe.errors.StripeError {
  return err instanceof Stripe.errors.StripeError;
}

/**
 * Anything that is not a decline or a rejected payment method: say whether money may have moved.
 * `retried`: the SDK sent the call more than once, so an earlier attempt may have taken effect
 * whatever the last one answered.
 */
function providerFailure(action: string, err: unknown, retried = false): GatewayError {
  const mayHaveCharged =
    retried ||
    !isStripeError(err) ||
    err instanceof Stripe.errors.StripeConnectionError ||
    err instanceof Stripe.errors.StripeAPIError ||
    (err.statusCode ?? 500) >= 500;
  const reason = isStripeError(err) ? `${err.type}${err.code ? `/${err.code}` : ''}: ${err.message}` : String(err);
  return new GatewayError(`Stripe ${action} failed (${reason})`, { mayHaveCharged, cause: err });
}

/**
 * How many times stripe-node has sent the calls in flight, by idempotency key. The SDK sends a call
 * again after a timeout, a closed connection, a 409 or a 5xx, and reports only the last attempt's
 * error: a 429 or a 400 after a retry says nothing of what an earlier attempt did, and that attempt
 * may have charged the card (or refunded it).
 */
class Attempts {
  readonly #inFlight = new Map<string, { calls: number; attempts: number }>();

  constructor(stripe: Stripe) {
    // eslint-disable-next-line @typescript-eslint/no-unsafe-call -- stripe-node types `on` as any
    stripe.on('request', (event: Stripe.RequestEvent) => {
      const entry = event.idempotency_key === undefined ? undefined : this.#inFlight.get(event.idempotency_key);
      if (entry) entry.attempts += 1;
    });
  }

  /**
   * Counts what is sent under `key` until `done`. `retried` is true once more than one request went
   * out under it, another call's with the same key included (it may be the one that charged).
   */
  track(key: string): { retried: () => boolean; done: () => void } {
    const entry = this.#inFlight.get(key) ?? { calls: 0, attempts: 0 };
    entry.calls += 1;
    this.#inFlight.set(key, entry);
    return {
      retried: () => entry.attempts > 1,
      done: () => {
        entry.calls -= 1;
        if (entry.calls === 0) this.#inFlight.delete(key);
      },
    };
  }
}

/** The real thing: Stripe through its official SDK. */
export class StripeGateway implements PaymentsGateway {
  readonly kind = 'stripe' as const;
  readonly #attempts: Attempts;

  constructor(
    private readonly stripe: Stripe,
    private readonly webhookSecret: string | undefined,
  ) {
    this.#attempts = new Attempts(stripe);
  }

  async createCustomer(input: { email: string; name: string; userId: string }, idempotencyKey: string) {
    try {
      const customer = await this.stripe.customers.create(
        { email: input.email, name: input.name, metadata: { user_id: input.userId } },
        { idempotencyKey },
      );
      return { id: customer.id };
    } catch (err) {
      throw providerFailure('customer creation', err);
    }
  }

  async attachPaymentMethod(customerId: string, paymentMethodId: string): Promise<void> {
    try {
      await this.stripe.paymentMethods.attach(paymentMethodId, { customer: customerId });
    } catch (err) {
      if (err instanceof Stripe.errors.StripeInvalidRequestError || err instanceof Stripe.errors.StripeCardError) {
        throw new PaymentMethodRejected(err.message);
      }
      throw providerFailure('payment method attach', err);
    }
    try {
      await this.stripe.customers.update(customerId, { invoice_settings: { default_payment_method: paymentMethodId } });
    } catch (err) {
      throw providerFailure('customer update', err);
    }
  }

  async chargeSavedCard(charge: ChargeRequest): Promise<ChargeOutcome> {
    const attempts = this.#attempts.track(charge.idempotencyKey);
    try {
      const intent = await this.stripe.paymentIntents.create(
        {
          amount: charge.amountCents,
          currency: charge.currency,
          customer: charge.customerId,
          payment_method: toStripeToken(charge.paymentMethodId),
          confirm: true,
          // Saved cards are charged server to server: no redirect-based methods, so no return_url.
          automatic_payment_methods: { enabled: true, allow_redirects: 'never' },
          description: charge.description,
          metadata: charge.metadata,
        },
        { idempotencyKey: charge.idempotencyKey },
      );
      return intentOutcome(intent);
    } catch (err) {
      if (err instanceof Stripe.errors.StripeCardError) {
        return {
          status: 'declined',
          paymentIntentId: err.payment_intent?.id,
          code: err.code ?? 'card_declined',
          declineCode: err.decline_code,
        };
      }
      if (err instanceof Stripe.errors.StripeInvalidRequestError && err.code === 'resource_missing' && err.param === 'payment_method') {
        throw new PaymentMethodRejected(err.message);
      }
      throw providerFailure('payment', err, attempts.retried());
    } finally {
      attempts.done();
    }
  }

  async retrievePayment(paymentIntentId: string): Promise<ChargeOutcome> {
    try {
      return intentOutcome(await this.stripe.paymentIntents.retrieve(paymentIntentId));
    } catch (err) {
      throw providerFailure('payment lookup', err);
    }
  }

  async findPaymentByTransaction(transactionId: string): Promise<ChargeOutcome | undefined> {
    try {
      // Our transaction ids are UUIDs: nothing in one needs escaping in a search query.
      const found = await this.stripe.paymentIntents.search({ query: `metadata['transaction_id']:'${transactionId}'`, limit: 1 });
      const intent = found.data[0];
      return intent && intentOutcome(intent);
    } catch (err) {
      throw providerFailure('payment search', err);
    }
  }

  async listRefunds(paymentIntentId: string): Promise<ProviderRefund[]> {
    try {
      const list = await this.stripe.refunds.list({ payment_intent: paymentIntentId, limit: 100 });
      return list.data.map((refund) => ({
        id: refund.id,
        amount: refund.amount,
        status: refund.status,
        payment_intent: typeof refund.payment_intent === 'string' ? refund.payment_intent : (refund.payment_intent?.id ?? null),
        failure_reason: refund.failure_reason ?? null,
        metadata: refund.metadata ?? {},
      }));
    } catch (err) {
      // A read changes nothing at Stripe, whatever went wrong: asking again is always safe.
      throw new GatewayError(providerFailure('refund list', err).message, { mayHaveCharged: false, cause: err });
    }
  }

  async retrievePaymentMetadata(paymentIntentId: string): Promise<Record<string, string>> {
    try {
      return (await this.stripe.paymentIntents.retrieve(paymentIntentId)).metadata;
    } catch (err) {
      // A read changes nothing at Stripe, whatever went wrong: asking again is always safe.
      throw new GatewayError(providerFailure('payment lookup', err).message, { mayHaveCharged: false, cause: err });
    }
  }

  async refund(request: RefundRequest): Promise<RefundResult> {
    const attempts = this.#attempts.track(request.idempotencyKey);
    let refund: Stripe.Refund;
    try {
      refund = await this.stripe.refunds.create(
        {
          payment_intent: request.paymentIntentId,
          ...(request.amountCents !== undefined ? { amount: request.amountCents } : {}),
          ...(request.metadata ? { metadata: request.metadata } : {}),
          // The charge as it is with this refund, in the same answer: no second read can fail after the
          // refund exists (an answer lost then would invite the operator to refund again).
          expand: ['charge'],
        },
        { idempotencyKey: request.idempotencyKey },
      );
    } catch (err) {
      // After a retry, a refusal may answer a refund an earlier attempt made: not known, so not a rejection.
      if (err instanceof Stripe.errors.StripeInvalidRequestError && !attempts.retried()) throw new RefundRejected(err.message);
      throw providerFailure('refund', err, attempts.retried());
    } finally {
      attempts.done();
    }
    const charge = refund.charge !== null && typeof refund.charge === 'object' ? refund.charge : undefined;
    return {
      refundId: refund.id,
      amount: refund.amount,
      status: providerRefundStatus(refund.status),
      failureReason: refund.failure_reason ?? undefined,
      amountRefunded: charge?.amount_refunded,
    };
  }

  async createCheckoutSession(request: CheckoutSessionRequest): Promise<CheckoutSession> {
    const attempts = this.#attempts.track(request.idempotencyKey);
    try {
      const session = await this.stripe.checkout.sessions.create(
        {
          mode: 'payment',
          line_items: [
            {
              quantity: 1,
              price_data: {
                currency: request.currency,
                unit_amount: request.amountCents,
                product_data: { name: request.productName, description: request.description },
              },
            },
          ],
          customer: request.customerId,
          client_reference_id: request.transactionId,
          metadata: request.metadata,
          // The PaymentIntent (and so its charge, refunds and disputes) names the purchase too.
          payment_intent_data: { metadata: request.metadata, description: request.description },
          success_url: request.successUrl,
          cancel_url: request.cancelUrl,
          expires_at: request.expiresAt,
        },
        { idempotencyKey: request.idempotencyKey },
      );
      return sessionOf(session);
    } catch (err) {
      // After a retry, a refusal may answer a session an earlier attempt made: not known, so not a refusal.
      if (err instanceof Stripe.errors.StripeInvalidRequestError && !attempts.retried()) throw new CheckoutRefused(err.message);
      throw providerFailure('checkout session', err, attempts.retried());
    } finally {
      attempts.done();
    }
  }

  async retrieveCheckoutSession(sessionId: string): Promise<CheckoutSession> {
    try {
      return sessionOf(await this.stripe.checkout.sessions.retrieve(sessionId));
    } catch (err) {
      throw new GatewayError(providerFailure('checkout session lookup', err).message, { mayHaveCharged: false, cause: err });
    }
  }

  verifyWebhook(payload: Buffer, signature: string | undefined): WebhookEvent {
    return verifyStripeSignature(payload, signature, this.webhookSecret);
  }
}
