import { randomBytes } from 'node:crypto';
import { testCardBehaviour } from './test-cards.js';
import { GatewayError, PaymentMethodRejected, type ChargeOutcome, type ChargeRequest, type PaymentsGateway } from './types.js';

const MAX_REMEMBERED = 100_000;

function stripeLikeId(prefix: string): string {
  return `${prefix}_sim_${randomBytes(12).toString('hex')}`;
}

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

/**
 * Stripe's test-mode behaviour without a network: the `pm_card_*` tokens give Stripe's documented
 * outcomes, and idempotency keys replay the first result as Stripe does. For development and tests.
 */
export class SimulatedGateway implements PaymentsGateway {
  readonly kind = 'simulated' as const;
  private readonly customersByKey = new BoundedMap<string, string>();
  private readonly chargesByKey = new BoundedMap<string, ChargeOutcome>();
  private readonly chargesById = new BoundedMap<string, ChargeOutcome>();

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
    const paymentIntentId = stripeLikeId('pi');
    let outcome: ChargeOutcome;
    switch (behaviour.outcome) {
      case 'succeed':
        outcome = { status: 'succeeded', paymentIntentId };
        break;
      case 'authenticate':
        outcome = { status: 'requires_action', paymentIntentId, clientSecret: `${paymentIntentId}_secret_sim` };
        break;
      case 'decline':
        outcome = { status: 'declined', paymentIntentId, code: behaviour.code, declineCode: behaviour.declineCode };
        break;
    }
    this.chargesByKey.set(charge.idempotencyKey, outcome);
    this.chargesById.set(paymentIntentId, outcome);
    return outcome;
  }

  async retrievePayment(paymentIntentId: string): Promise<ChargeOutcome> {
    const outcome = this.chargesById.get(paymentIntentId);
    if (!outcome) throw new GatewayError(`No such PaymentIntent: '${paymentIntentId}'`, { mayHaveCharged: false });
    return outcome;
  }
}
