import { randomBytes } from 'node:crypto';
import { testCardBehaviour } from './test-cards.js';
import {
  PaymentMethodRejected,
  RefundRejected,
  SimulatedObjectNotFound,
  SimulationRefused,
  type ChargeOutcome,
  type ChargeRequest,
  type PaymentSimulation,
  type PaymentsGateway,
  type ProviderRefund,
  type RefundRequest,
  type RefundResult,
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
    const made: ProviderRefund = { id: result.refundId, amount, status: 'succeeded', payment_intent: intent.id, metadata: request.metadata ?? {} };
    this.refundsOf.set(intent.id, [...(this.refundsOf.get(intent.id) ?? []), made]);
    await this.emit('charge.refunded', chargeObject(intent));
    return result;
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
