import { randomBytes } from 'node:crypto';
import { testCardBehaviour } from './test-cards.js';
import {
  CheckoutRefused,
  PaymentMethodRejected,
  RefundRejected,
  SimulatedObjectNotFound,
  SimulationRefused,
  type ChargeOutcome,
  type ChargeRequest,
  type CheckoutSession,
  type CheckoutSessionRequest,
  type PaymentSimulation,
  type PaymentsGateway,
  type ProviderRefund,
  type RefundRequest,
  type RefundResult,
  type SimulatedCheckoutPage,
  type WebhookEvent,
  type WebhookListener,
} from './types.js';
import { signWebhook, verifyStripeSignature } from './webhooks.js';

const MAX_REMEMBERED = 100_000;

const stripeLikeId = (prefix: string) => `${prefix}_sim_${randomBytes(12).toString('hex')}`;

/** A Map that forgets its oldest entries, so a long-running development server stays small. */
class BoundedMap<K, V> extends Map<K, V> {
  override set(key: K, value: V): this {
    super.set(key, value);
    if (this.size > MAX_REMEMBERED) {
      const oldest = this.keys().next();
      if (!oldest.done) this.delete(oldest.value);
    }
    return this;
  }
}

interface SimIntent {
  id: string;
  status: 'succeeded' | 'requires_action' | 'requires_payment_method';
  amount: number;
  currency: string;
  metadata: Record<string, string>;
  clientSecret: string;
  chargeId: string | null;
  amountRefunded: number;
  lastError: { code: string; declineCode: string | undefined } | null;
}

interface SimSession {
  session: CheckoutSession;
  request: CheckoutSessionRequest;
}

interface SimDispute {
  id: string;
  intent: SimIntent;
  status: 'needs_response' | 'won' | 'lost';
}

/**
 * Stripe's test-mode behaviour without a network: the `pm_card_*` tokens give Stripe's documented
 * outcomes, idempotency keys replay the first result, and every change emits a signed webhook event
 * (delivered before the API call returns, the earliest Stripe could). Simulation controls stand in
 * for what happens outside the API: a customer completing 3-D Secure, a bank opening a dispute.
 */
export class SimulatedGateway implements PaymentsGateway, PaymentSimulation {
  readonly kind = 'simulated' as const;
  readonly simulation: PaymentSimulation = this;
  readonly webhookSecret: string;
  private listener: WebhookListener | undefined;
  private readonly customersByKey = new BoundedMap<string, string>();
  private readonly chargesByKey = new BoundedMap<string, ChargeOutcome>();
  private readonly refundsByKey = new BoundedMap<string, RefundResult>();
  private readonly refundsOf = new BoundedMap<string, ProviderRefund[]>();
  private readonly intents = new BoundedMap<string, SimIntent>();
  private readonly disputes = new BoundedMap<string, SimDispute>();
  private readonly sessions = new BoundedMap<string, SimSession>();
  private readonly sessionsByKey = new BoundedMap<string, string>();

  constructor(options: { webhookSecret?: string | undefined } = {}) {
    this.webhookSecret = options.webhookSecret ?? `whsec_sim_${randomBytes(16).toString('hex')}`;
  }

  /** Where signed events go (the app's own webhook endpoint). */
  onWebhook(listener: WebhookListener): void {
    this.listener = listener;
  }

  async createCustomer(_input: { email: string; name: string; userId: string }, idempotencyKey: string) {
    let id = this.customersByKey.get(idempotencyKey);
    if (id === undefined) {
      id = stripeLikeId('cus');
      this.customersByKey.set(idempotencyKey, id);
    }
    return { id };
  }

  async attachPaymentMethod(_customerId: string, paymentMethodId: string): Promise<void> {
    // Only Stripe.js creates real PaymentMethods; offline there are none to attach.
    throw new PaymentMethodRejected(`No such PaymentMethod: '${paymentMethodId}'`);
  }

  async chargeSavedCard(charge: ChargeRequest): Promise<ChargeOutcome> {
    const replay = this.chargesByKey.get(charge.idempotencyKey);
    if (replay) return replay;
    const behaviour = testCardBehaviour(charge.paymentMethodId);
    if (!behaviour) throw new PaymentMethodRejected(`No such PaymentMethod: '${charge.paymentMethodId}'`);
    const id = stripeLikeId('pi');
    const intent: SimIntent = {
      id,
      status: 'succeeded',
      amount: charge.amountCents,
      currency: charge.currency,
      metadata: charge.metadata,
      clientSecret: `${id}_secret_sim`,
      chargeId: null,
      amountRefunded: 0,
      lastError: null,
    };
    this.intents.set(id, intent);
    if (behaviour.outcome === 'succeed') {
      intent.chargeId = stripeLikeId('ch');
    } else if (behaviour.outcome === 'authenticate') {
      intent.status = 'requires_action';
    } else {
      intent.status = 'requires_payment_method';
      intent.lastError = { code: behaviour.code, declineCode: behaviour.declineCode };
    }
    const outcome = outcomeOf(intent);
    this.chargesByKey.set(charge.idempotencyKey, outcome);
    await this.emitIntent(intent);
    return outcome;
  }

  async retrievePayment(paymentIntentId: string): Promise<ChargeOutcome> {
    return outcomeOf(this.intent(paymentIntentId));
  }

  async findPaymentByTransaction(transactionId: string): Promise<ChargeOutcome | undefined> {
    const intent = [...this.intents.values()].find((i) => i.metadata['transaction_id'] === transactionId);
    return intent && outcomeOf(intent);
  }

  async listRefunds(paymentIntentId: string): Promise<ProviderRefund[]> {
    return [...(this.refundsOf.get(paymentIntentId) ?? [])];
  }

  async retrievePaymentMetadata(paymentIntentId: string): Promise<Record<string, string>> {
    return { ...this.intents.get(paymentIntentId)?.metadata };
  }

  async refund(request: RefundRequest): Promise<RefundResult> {
    const replay = this.refundsByKey.get(request.idempotencyKey);
    if (replay) return replay;
    const intent = this.intent(request.paymentIntentId);
    if (intent.status !== 'succeeded' || !intent.chargeId) {
      throw new RefundRejected(`PaymentIntent ${intent.id} has no successful charge to refund`);
    }
    const remaining = intent.amount - intent.amountRefunded;
    const amount = request.amountCents ?? remaining;
    if (remaining === 0) throw new RefundRejected(`Charge ${intent.chargeId} has already been refunded.`);
    if (amount > remaining) {
      throw new RefundRejected(`Refund amount (${amount}) is greater than unrefunded amount on charge (${remaining})`);
    }
    intent.amountRefunded += amount;
    const result: RefundResult = { refundId: stripeLikeId('re'), amount, status: 'succeeded', amountRefunded: intent.amountRefunded };
    this.refundsByKey.set(request.idempotencyKey, result);
    const made: ProviderRefund = {
      id: result.refundId,
      amount,
      status: 'succeeded',
      payment_intent: intent.id,
      metadata: request.metadata ?? {},
    };
    this.refundsOf.set(intent.id, [...(this.refundsOf.get(intent.id) ?? []), made]);
    await this.emit('charge.refunded', chargeObject(intent));
    return result;
  }

  async createCheckoutSession(request: CheckoutSessionRequest): Promise<CheckoutSession> {
    const made = this.sessionsByKey.get(request.idempotencyKey);
    if (made) return { ...this.checkout(made).session };
    const secondsLeft = request.expiresAt - Math.floor(Date.now() / 1000);
    if (secondsLeft < 30 * 60 || secondsLeft > 24 * 3600) {
      throw new CheckoutRefused('The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.');
    }
    const id = stripeLikeId('cs');
    // The simulated hosted page is served by coinshop itself (routes/checkout): a path, resolved against its origin.
    const session: CheckoutSession = {
      id,
      url: `/checkout/pay/${id}`,
      status: 'open',
      paymentStatus: 'unpaid',
      paymentIntentId: null,
      expiresAt: request.expiresAt,
    };
    this.sessions.set(id, { session, request });
    this.sessionsByKey.set(request.idempotencyKey, id);
    return { ...session };
  }

  async retrieveCheckoutSession(sessionId: string): Promise<CheckoutSession> {
    const sim = this.checkout(sessionId);
    if (sim.session.status === 'open' && sim.session.expiresAt <= Date.now() / 1000) await this.expireSession(sim);
    return { ...sim.session };
  }

  verifyWebhook(payload: Buffer, signature: string | undefined): WebhookEvent {
    return verifyStripeSignature(payload, signature, this.webhookSecret);
  }

  // Simulation controls: what happens outside the API.

  /** The customer completes (or fails) 3-D Secure for a PaymentIntent waiting for it. */
  async authenticate(paymentIntentId: string, outcome: 'succeed' | 'fail'): Promise<ChargeOutcome> {
    const intent = this.intent(paymentIntentId);
    if (intent.status !== 'requires_action') {
      throw new SimulationRefused(`PaymentIntent ${intent.id} is not waiting for authentication (status ${intent.status})`);
    }
    if (outcome === 'succeed') {
      intent.status = 'succeeded';
      intent.chargeId = stripeLikeId('ch');
    } else {
      intent.status = 'requires_payment_method';
      intent.lastError = { code: 'payment_intent_authentication_failure', declineCode: undefined };
    }
    await this.emitIntent(intent);
    return outcomeOf(intent);
  }

  /** The cardholder's bank opens a dispute on a succeeded payment. Returns the dispute id. */
  async dispute(paymentIntentId: string): Promise<string> {
    const intent = this.intent(paymentIntentId);
    if (intent.status !== 'succeeded') throw new SimulationRefused(`PaymentIntent ${intent.id} has no successful charge to dispute`);
    const dispute: SimDispute = { id: stripeLikeId('dp'), intent, status: 'needs_response' };
    this.disputes.set(dispute.id, dispute);
    await this.emit('charge.dispute.created', disputeObject(dispute));
    return dispute.id;
  }

  /** The dispute is decided. Returns the disputed PaymentIntent's id. */
  async closeDispute(disputeId: string, outcome: 'won' | 'lost'): Promise<string> {
    const dispute = this.disputes.get(disputeId);
    if (!dispute) throw new SimulatedObjectNotFound(`No such dispute: '${disputeId}'`);
    if (dispute.status !== 'needs_response') throw new SimulationRefused(`Dispute ${disputeId} is already closed (${dispute.status})`);
    dispute.status = outcome;
    await this.emit('charge.dispute.closed', disputeObject(dispute));
    return dispute.intent.id;
  }

  /** A Checkout Session the simulation hosts, as its page shows it; undefined when unknown. */
  checkoutPage(sessionId: string): SimulatedCheckoutPage | undefined {
    const sim = this.sessions.get(sessionId);
    if (!sim) return undefined;
    const { request } = sim;
    return {
      session: { ...sim.session },
      amountCents: request.amountCents,
      currency: request.currency,
      productName: request.productName,
      successUrl: request.successUrl,
      cancelUrl: request.cancelUrl,
      transactionId: request.transactionId,
    };
  }

  /** What the customer (or time) does with a hosted Checkout Session: pay it, fail a delayed payment, let it expire. */
  async finishCheckout(
    sessionId: string,
    outcome: 'complete' | 'fail' | 'expire',
    paymentMethod = 'pm_card_visa',
  ): Promise<{ session: CheckoutSession; declined?: string | undefined }> {
    const sim = this.checkout(sessionId);
    if (sim.session.status !== 'open') throw new SimulationRefused(`Checkout Session ${sessionId} is ${sim.session.status}, not open`);
    if (outcome === 'expire') {
      await this.expireSession(sim);
      return { session: { ...sim.session } };
    }
    const behaviour = testCardBehaviour(paymentMethod);
    if (!behaviour) throw new SimulationRefused(`No such test card: '${paymentMethod}'`);
    // On the hosted page a declined card is shown to the customer, who may try another: the session stays open.
    if (outcome === 'complete' && behaviour.outcome === 'decline') return { session: { ...sim.session }, declined: behaviour.code };
    const { request } = sim;
    const id = stripeLikeId('pi');
    const intent: SimIntent = {
      id,
      status: outcome === 'complete' ? 'succeeded' : 'requires_payment_method',
      amount: request.amountCents,
      currency: request.currency,
      metadata: request.metadata,
      clientSecret: `${id}_secret_sim`,
      // 3-D Secure, if the card asks for it, happens on the hosted page: the payment is made.
      chargeId: outcome === 'complete' ? stripeLikeId('ch') : null,
      amountRefunded: 0,
      lastError: outcome === 'complete' ? null : { code: 'payment_method_provider_decline', declineCode: undefined },
    };
    this.intents.set(id, intent);
    sim.session.status = 'complete';
    sim.session.paymentIntentId = id;
    sim.session.url = null;
    if (outcome === 'complete') {
      sim.session.paymentStatus = 'paid';
      await this.emitIntent(intent);
      await this.emit('checkout.session.completed', sessionObject(sim));
    } else {
      // A delayed method (a bank debit): the session completes unpaid, then the bank refuses the payment.
      await this.emit('checkout.session.completed', sessionObject(sim));
      await this.emit('checkout.session.async_payment_failed', sessionObject(sim));
    }
    return { session: { ...sim.session } };
  }

  private checkout(sessionId: string): SimSession {
    const sim = this.sessions.get(sessionId);
    if (!sim) throw new SimulatedObjectNotFound(`No such checkout.session: '${sessionId}'`);
    return sim;
  }

  private async expireSession(sim: SimSession): Promise<void> {
    sim.session.status = 'expired';
    sim.session.url = null;
    await this.emit('checkout.session.expired', sessionObject(sim));
  }

  private intent(paymentIntentId: string): SimIntent {
    const intent = this.intents.get(paymentIntentId);
    if (!intent) throw new SimulatedObjectNotFound(`No such PaymentIntent: '${paymentIntentId}'`);
    return intent;
  }

  private emitIntent(intent: SimIntent): Promise<void> {
    const type =
      intent.status === 'succeeded'
        ? 'payment_intent.succeeded'
        : intent.status === 'requires_action'
          ? 'payment_intent.requires_action'
          : 'payment_intent.payment_failed';
    return this.emit(type, intentObject(intent));
  }

  private async emit(type: string, object: Record<string, unknown>): Promise<void> {
    if (!this.listener) return;
    const payload = JSON.stringify({
      id: stripeLikeId('evt'),
      object: 'event',
      type,
      created: Math.floor(Date.now() / 1000),
      livemode: false,
      data: { object },
    });
    await this.listener(payload, signWebhook(payload, this.webhookSecret));
  }
}

function outcomeOf(intent: SimIntent): ChargeOutcome {
  switch (intent.status) {
    case 'succeeded':
      return { status: 'succeeded', paymentIntentId: intent.id };
    case 'requires_action':
      return { status: 'requires_action', paymentIntentId: intent.id, clientSecret: intent.clientSecret };
    case 'requires_payment_method':
      return {
        status: 'declined',
        paymentIntentId: intent.id,
        code: intent.lastError?.code ?? 'card_declined',
        declineCode: intent.lastError?.declineCode,
      };
  }
}

function intentObject(intent: SimIntent): Record<string, unknown> {
  return {
    id: intent.id,
    object: 'payment_intent',
    amount: intent.amount,
    currency: intent.currency,
    status: intent.status,
    metadata: intent.metadata,
    latest_charge: intent.chargeId,
    last_payment_error: intent.lastError
      ? { type: 'card_error', code: intent.lastError.code, decline_code: intent.lastError.declineCode }
      : null,
  };
}

function chargeObject(intent: SimIntent): Record<string, unknown> {
  return {
    id: intent.chargeId,
    object: 'charge',
    amount: intent.amount,
    amount_refunded: intent.amountRefunded,
    refunded: intent.amountRefunded === intent.amount,
    currency: intent.currency,
    payment_intent: intent.id,
    metadata: intent.metadata,
    status: 'succeeded',
  };
}

function sessionObject({ session, request }: SimSession): Record<string, unknown> {
  return {
    id: session.id,
    object: 'checkout.session',
    mode: 'payment',
    amount_total: request.amountCents,
    currency: request.currency,
    customer: request.customerId,
    client_reference_id: request.transactionId,
    metadata: request.metadata,
    status: session.status,
    payment_status: session.paymentStatus,
    payment_intent: session.paymentIntentId,
    expires_at: session.expiresAt,
    url: session.url,
  };
}

function disputeObject(dispute: SimDispute): Record<string, unknown> {
  return {
    id: dispute.id,
    object: 'dispute',
    amount: dispute.intent.amount,
    currency: dispute.intent.currency,
    charge: dispute.intent.chargeId,
    payment_intent: dispute.intent.id,
    status: dispute.status,
    reason: 'fraudulent',
  };
}
