import type { FastifyBaseLogger } from 'fastify';
import { ProblemError, problemDocument } from '../errors.js';
import { GatewayError, RefundRejected, type PaymentsGateway, type RefundResult } from '../gateway/types.js';
import { completeIdempotency, type IdempotencyContext } from './idempotency.js';
import type { Purchase } from '../../schemas/purchase.js';
import type { PurchaseRow, RefundRow } from '../store/schema.js';
import type { Store } from '../store/store.js';
import { purchaseView } from './purchases.js';
import { settleRefund } from './settlement.js';

/** The idempotency key an operator refund is sent to Stripe with. */
const stripeKey = (refundKey: string) => `refund-${refundKey}`;

/** Asks Stripe for the refund recorded under `refundKey` (a retry replays the refund Stripe made for it). */
function askStripe(
  payments: PaymentsGateway,
  purchase: PurchaseRow,
  paymentIntentId: string,
  refundKey: string,
  amountCents: number | undefined,
) {
  return payments.refund({
    paymentIntentId,
    amountCents,
    idempotencyKey: stripeKey(refundKey),
    metadata: { transaction_id: purchase.transaction_id, refund_key: refundKey },
  });
}

const settle = (tx: Store, purchase: PurchaseRow, paymentIntentId: string, refundKey: string, result: RefundResult) =>
  settleRefund(tx, purchase.transaction_id, paymentIntentId, {
    id: result.refundId,
    amount: result.amount,
    status: result.status,
    failureReason: result.failureReason,
    refundKey,
    amountRefunded: result.amountRefunded,
  });

/**
 * The operator refunds a purchase (all of it, or `amountCents`) in Stripe; the coins come back out
 * of the player's balance pro rata in the same transaction that records the answer. Stripe's
 * `charge.refunded` webhook, arriving before or after, converges on the same state.
 *
 * The refund is recorded before Stripe is called, under the request's key: a retry with the same
 * Idempotency-Key resumes it whatever the purchase became since (a webhook may have settled the
 * refund already), and Stripe, asked again under the same key, answers the refund it made. Once
 * Stripe has made the refund, the answer is that refund.
 */
export async function refundPurchase(
  deps: { store: Store; payments: PaymentsGateway },
  transactionId: string,
  amountCents: number | undefined,
  context: { idempotency: IdempotencyContext | undefined; requestId: string; refundKey: string },
): Promise<Purchase> {
  const purchase = await deps.store.findPurchase(transactionId);
  if (!purchase) throw new ProblemError('purchase_not_found', 'Purchase not found');
  const resumed = (await deps.store.findRefundAttempt(context.refundKey))?.transaction_id === transactionId;
  const paymentIntentId = purchase.payment_intent_id;
  if (!paymentIntentId || (!resumed && !['succeeded', 'partially_refunded'].includes(purchase.status))) {
    throw new ProblemError('invalid_state', `Only a completed purchase can be refunded; this one is ${purchase.status}`);
  }
  await deps.store.recordRefundAttempt({ refundKey: context.refundKey, transactionId, requestedCents: amountCents ?? null });
  let result: RefundResult;
  try {
    result = await askStripe(deps.payments, purchase, paymentIntentId, context.refundKey, amountCents);
  } catch (err) {
    if (err instanceof GatewayError && !err.mayHaveCharged) await deps.store.rejectRefundAttempt(context.refundKey);
    if (!(err instanceof RefundRejected)) throw err;
    const problem = new ProblemError('refund_rejected', `Stripe refused the refund: ${err.message}`, { transaction_id: transactionId });
    await deps.store.transaction(async (tx) => {
      await tx.rejectRefundAttempt(context.refundKey);
      await completeIdempotency(tx, context.idempotency, { status: problem.status, body: problemDocument(problem, context.requestId) });
    });
    throw problem;
  }
  return deps.store.transaction(async (tx) => {
    const view = purchaseView(await settle(tx, purchase, paymentIntentId, context.refundKey, result));
    await completeIdempotency(tx, context.idempotency, { status: 200, body: view });
    return view;
  });
}

/**
 * Finishes an operator refund whose answer from Stripe was never recorded (the process stopped, or
 * the call failed in a way that may have refunded): Stripe is asked again under the same key, so
 * it answers the refund it made, or makes the one the operator asked for. Returns the refund's
 * status afterwards (still `requested` if Stripe could not answer).
 */
export async function finishRefund(
  deps: { store: Store; payments: PaymentsGateway; log: FastifyBaseLogger },
  attempt: RefundRow,
): Promise<RefundRow['status']> {
  const refundKey = attempt.refund_key;
  const purchase = await deps.store.findPurchase(attempt.transaction_id);
  if (!refundKey || !purchase?.payment_intent_id) return attempt.status;
  const paymentIntentId = purchase.payment_intent_id;
  let result: RefundResult;
  try {
    result = await askStripe(deps.payments, purchase, paymentIntentId, refundKey, attempt.requested_cents ?? undefined);
  } catch (err) {
    // Under the same key Stripe replays what it did: a refusal now is the refusal then.
    if (err instanceof RefundRejected) {
      await deps.store.rejectRefundAttempt(refundKey);
      return 'rejected';
    }
    deps.log.warn({ err, transactionId: attempt.transaction_id, refundKey }, 'refund not finished: Stripe did not answer');
    return attempt.status;
  }
  await deps.store.transaction((tx) => settle(tx, purchase, paymentIntentId, refundKey, result));
  return result.status;
}
