import { ProblemError, problemDocument } from '../errors.js';
import { RefundRejected, type PaymentsGateway } from '../gateway/types.js';
import { completeIdempotency, type IdempotencyContext } from '../plugins/idempotency.js';
import type { Purchase } from '../../schemas/purchase.js';
import type { Store } from '../store/store.js';
import { purchaseView } from './purchases.js';
import { settleRefunded } from './settlement.js';

/**
 * The operator refunds a purchase (all of it, or `amountCents`) in Stripe; the coins come back out
 * of the player's balance pro rata in the same transaction that records the answer. Stripe's
 * `charge.refunded` webhook, arriving before or after, converges on the same state.
 */
export async function refundPurchase(
  deps: { store: Store; payments: PaymentsGateway },
  transactionId: string,
  amountCents: number | undefined,
  context: { idempotency: IdempotencyContext | undefined; requestId: string; refundKey: string },
): Promise<Purchase> {
  const purchase = await deps.store.findPurchase(transactionId);
  if (!purchase) throw new ProblemError('purchase_not_found', 'Purchase not found');
  if (!purchase.payment_intent_id || !['succeeded', 'partially_refunded'].includes(purchase.status)) {
    throw new ProblemError('invalid_state', `Only a completed purchase can be refunded; this one is ${purchase.status}`);
  }
  const paymentIntentId = purchase.payment_intent_id;
  let refunded: number;
  try {
    ({ amountRefunded: refunded } = await deps.payments.refund({
      paymentIntentId,
      amountCents,
      idempotencyKey: `refund-${context.refundKey}`,
    }));
  } catch (err) {
    if (!(err instanceof RefundRejected)) throw err;
    const problem = new ProblemError('refund_rejected', `Stripe refused the refund: ${err.message}`, { transaction_id: transactionId });
    await deps.store.transaction((tx) =>
      completeIdempotency(tx, context.idempotency, { status: problem.status, body: problemDocument(problem, context.requestId) }),
    );
    throw problem;
  }
  return deps.store.transaction(async (tx) => {
    const view = purchaseView(await settleRefunded(tx, transactionId, paymentIntentId, refunded));
    await completeIdempotency(tx, context.idempotency, { status: 200, body: view });
    return view;
  });
}
