import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { FastifyBaseLogger } from 'fastify';
import type { PaymentsGateway, ProviderRefund, WebhookEvent } from '../gateway/types.js';
import { DISPUTE_STATUSES, type PurchaseRow } from '../store/schema.js';
import type { Store } from '../store/store.js';
import { declineCode } from './declines.js';
import { providerRefundStatus } from '../gateway/types.js';
import { isCheckoutPurchase } from './checkout.js';
import { settleDispute, settleFailed, settleRefund, settleRefunded, settleRequiresAction, settleSucceeded } from './settlement.js';

// The few fields of each Stripe object we act on; anything else in the object is ignored.
const PaymentIntent = Type.Object({
  id: Type.String(),
  status: Type.String(),
  metadata: Type.Optional(Type.Record(Type.String(), Type.String())),
  last_payment_error: Type.Optional(
    Type.Union([Type.Null(), Type.Object({ code: Type.Optional(Type.String()), decline_code: Type.Optional(Type.String()) })]),
  ),
});
const Refund = Type.Object({
  id: Type.String(),
  amount: Type.Integer({ minimum: 0 }),
  status: Type.Union([Type.String(), Type.Null()]),
  payment_intent: Type.Union([Type.String(), Type.Null()]),
  failure_reason: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  // Ours carry the purchase's transaction id and the operator request's refund key.
  metadata: Type.Optional(Type.Record(Type.String(), Type.String())),
});
const Charge = Type.Object({
  id: Type.String(),
  payment_intent: Type.String(),
  amount_refunded: Type.Integer({ minimum: 0 }),
  // The PaymentIntent's metadata, copied to its charge: the purchase's transaction id.
  metadata: Type.Optional(Type.Record(Type.String(), Type.String())),
  // Older API versions list the charge's refunds in it.
  refunds: Type.Optional(Type.Union([Type.Null(), Type.Object({ data: Type.Array(Refund) })])),
});
const CheckoutSession = Type.Object({
  id: Type.String(),
  status: Type.Union([Type.String(), Type.Null()]),
  payment_status: Type.String(),
  payment_intent: Type.Union([Type.String(), Type.Null()]),
  client_reference_id: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  metadata: Type.Optional(Type.Union([Type.Null(), Type.Record(Type.String(), Type.String())])),
});
const Dispute = Type.Object({
  id: Type.String(),
  payment_intent: Type.String(),
  // A status Stripe adds later is acknowledged and ignored rather than guessed at.
  status: Type.Union(DISPUTE_STATUSES.map((s) => Type.Literal(s))),
});

function parse<T extends TSchema>(schema: T, object: Record<string, unknown>): Static<T> | undefined {
  return Value.Check(schema, object) ? object : undefined;
}

export type WebhookResult = 'processed' | 'duplicate' | 'ignored';

/**
 * Applies one verified Stripe event. The event id is recorded in the same transaction as its effect,
 * so a redelivered event changes nothing; the effect converges on the state the event's object
 * describes, so events in any order end in the same place, and a state never moves backwards.
 */
export async function handleWebhookEvent(
  deps: { store: Store; log: FastifyBaseLogger; payments?: Pick<PaymentsGateway, 'retrievePaymentMetadata' | 'listRefunds'> },
  event: WebhookEvent,
): Promise<WebhookResult> {
  // Stripe is asked, when it must be, before the transaction: never while holding the database.
  const read = { intentMetadata: await disputedIntentMetadata(deps, event), refunds: await unknownRefunds(deps, event) };
  return deps.store.transaction(async (tx) => {
    if (!(await tx.recordEvent(event.id, event.type))) return 'duplicate';
    const applied = await apply(tx, event, read);
    if (!applied) deps.log.info({ eventId: event.id, type: event.type }, 'webhook event acknowledged without effect');
    return applied ? 'processed' : 'ignored';
  });
}

/** Our purchase for a PaymentIntent: by the transaction id we put in its metadata, or by its id. */
async function purchaseFor(tx: Store, paymentIntentId: string, metadata?: Record<string, string>): Promise<PurchaseRow | undefined> {
  const transactionId = metadata?.['transaction_id'];
  return (transactionId ? await tx.findPurchase(transactionId) : undefined) ?? tx.findPurchaseByPaymentIntent(paymentIntentId);
}

function settleRefundObject(tx: Store, purchase: PurchaseRow, paymentIntentId: string, refund: Static<typeof Refund>) {
  const refundKey = refund.metadata?.['refund_key'];
  return settleRefund(tx, purchase.transaction_id, paymentIntentId, {
    id: refund.id,
    amount: refund.amount,
    status: providerRefundStatus(refund.status),
    failureReason: refund.failure_reason,
    ...(refundKey ? { refundKey } : {}),
  });
}

/**
 * A Dispute names its PaymentIntent but carries no metadata. When no purchase knows that PaymentIntent
 * yet (the purchase call ended before Stripe's answer came), the PaymentIntent's metadata names the
 * purchase: it is read from Stripe. If Stripe cannot be asked this throws, nothing is recorded, the
 * webhook answers 502, and Stripe delivers the event again later.
 */
async function disputedIntentMetadata(
  deps: { store: Store; payments?: Pick<PaymentsGateway, 'retrievePaymentMetadata'> },
  event: WebhookEvent,
): Promise<Record<string, string> | undefined> {
  if (!deps.payments || (event.type !== 'charge.dispute.created' && event.type !== 'charge.dispute.closed')) return undefined;
  const dispute = parse(Dispute, event.object);
  if (!dispute || (await deps.store.findPurchaseByPaymentIntent(dispute.payment_intent))) return undefined;
  return deps.payments.retrievePaymentMetadata(dispute.payment_intent);
}

/**
 * A charge.refunded that shows more refunded than the refunds coinshop knows of, less those that
 * failed, speaks of a refund it has not seen (made in the Dashboard, on an endpoint that does not hear
 * `refund.created`): after a refund failed, the charge's total alone cannot tell the new refund from
 * the failed one. The charge's refunds are then read from Stripe, before the transaction (if Stripe
 * cannot be asked this throws: the webhook answers 502 and Stripe delivers it again).
 */
async function unknownRefunds(
  deps: { store: Store; payments?: Pick<PaymentsGateway, 'listRefunds'> },
  event: WebhookEvent,
): Promise<ProviderRefund[] | undefined> {
  if (!deps.payments || event.type !== 'charge.refunded') return undefined;
  const charge = parse(Charge, event.object);
  if (!charge || charge.refunds?.data) return undefined;
  const purchase = await purchaseFor(deps.store, charge.payment_intent, charge.metadata);
  if (!purchase) return undefined;
  const { made, undone } = await deps.store.refundTotals(purchase.transaction_id);
  if (charge.amount_refunded <= made - undone) return undefined;
  return deps.payments.listRefunds(charge.payment_intent);
}

async function apply(
  tx: Store,
  event: WebhookEvent,
  read: { intentMetadata: Record<string, string> | undefined; refunds: ProviderRefund[] | undefined },
): Promise<boolean> {
  const { intentMetadata } = read;
  switch (event.type) {
    case 'payment_intent.succeeded':
    case 'payment_intent.payment_failed':
    case 'payment_intent.requires_action': {
      const intent = parse(PaymentIntent, event.object);
      const purchase = intent && (await purchaseFor(tx, intent.id, intent.metadata));
      if (!intent || !purchase) return false;
      // On Stripe Checkout a failed attempt leaves the session open for another card: the session's
      // own events decide a Checkout purchase's failure; only a payment that succeeded counts here.
      if (isCheckoutPurchase(purchase) && intent.status !== 'succeeded') return false;
      if (intent.status === 'succeeded') await settleSucceeded(tx, purchase.transaction_id, intent.id);
      else if (intent.status === 'requires_action') await settleRequiresAction(tx, purchase.transaction_id, intent.id);
      else if (event.type === 'payment_intent.payment_failed') {
        const error = intent.last_payment_error;
        await settleFailed(tx, purchase.transaction_id, declineCode(error?.code ?? 'card_declined', error?.decline_code), intent.id);
      } else return false;
      return true;
    }
    // A Checkout Session's purchase: by the transaction id it carries, or by the session.
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded':
    case 'checkout.session.async_payment_failed':
    case 'checkout.session.expired': {
      const session = parse(CheckoutSession, event.object);
      const transactionId = session && (session.metadata?.['transaction_id'] ?? session.client_reference_id);
      const purchase =
        session &&
        ((transactionId ? await tx.findPurchase(transactionId) : undefined) ?? (await tx.findPurchaseByCheckoutSession(session.id)));
      if (!session || !purchase || !isCheckoutPurchase(purchase)) return false;
      const id = purchase.transaction_id;
      await tx.learnCheckoutSession(id, session.id);
      if (event.type === 'checkout.session.expired') await settleFailed(tx, id, 'checkout_expired', undefined);
      else if (!session.payment_intent) return false;
      else if (event.type === 'checkout.session.async_payment_failed')
        await settleFailed(tx, id, 'async_payment_failed', session.payment_intent);
      // Paid now (a card) or later (a delayed method: async_payment_succeeded); unpaid, it waits for that.
      else if (
        session.payment_status === 'paid' ||
        session.payment_status === 'no_payment_required' ||
        event.type === 'checkout.session.async_payment_succeeded'
      ) {
        await settleSucceeded(tx, id, session.payment_intent);
      } else await tx.learnPaymentIntent(id, session.payment_intent);
      return true;
    }
    case 'charge.refunded': {
      const charge = parse(Charge, event.object);
      // By the transaction id too: a refund may come before the purchase learnt its PaymentIntent's id
      // (the purchase call timed out); settling it credits the payment first, then takes the refund back.
      const purchase = charge && (await purchaseFor(tx, charge.payment_intent, charge.metadata));
      if (!charge || !purchase) return false;
      for (const refund of charge.refunds?.data ?? read.refunds ?? [])
        await settleRefundObject(tx, purchase, charge.payment_intent, refund);
      await settleRefunded(tx, purchase.transaction_id, charge.payment_intent, charge.amount_refunded);
      return true;
    }
    // A refund changed (or, on newer API versions, was made): a refund that fails after it succeeded
    // gives its coins back. Its status is taken as it is now, whatever was said of it before.
    case 'charge.refund.updated':
    case 'refund.created':
    case 'refund.updated':
    case 'refund.failed': {
      const refund = parse(Refund, event.object);
      const paymentIntentId = refund?.payment_intent;
      const purchase = paymentIntentId && (await purchaseFor(tx, paymentIntentId, refund.metadata));
      if (!refund || !paymentIntentId || !purchase) return false;
      await settleRefundObject(tx, purchase, paymentIntentId, refund);
      return true;
    }
    case 'charge.dispute.created':
    case 'charge.dispute.closed': {
      const dispute = parse(Dispute, event.object);
      const purchase = dispute && (await purchaseFor(tx, dispute.payment_intent, intentMetadata));
      if (!dispute || !purchase) return false;
      await settleDispute(tx, purchase.transaction_id, dispute.payment_intent, dispute);
      return true;
    }
    default:
      return false;
  }
}
