import type { PurchaseRow } from '../store/schema.js';
import type { Store } from '../store/store.js';

/** The counter-accounts coins move to and from (each journal is balanced against one of them). */
export const COUNTER_ACCOUNTS = {
  sales: 'coinshop:sales',
  refunds: 'coinshop:refunds',
  disputes: 'coinshop:disputes',
  spent: 'coinshop:spent',
} as const;

/**
 * Moving a purchase toward what Stripe reports, inside the caller's transaction. Every function here
 * converges on a state rather than applying a delta, so it is safe to call any number of times, from
 * any path (the purchase call, a webhook, a lookup, reconciliation), with events in any order.
 */

async function current(tx: Store, transactionId: string): Promise<PurchaseRow> {
  const purchase = await tx.findPurchase(transactionId);
  if (!purchase) throw new Error(`settlement: no purchase ${transactionId}`);
  return purchase;
}

/** The payment succeeded: the purchase is succeeded and its coins credited, exactly once. */
export async function settleSucceeded(tx: Store, transactionId: string, paymentIntentId: string): Promise<PurchaseRow> {
  const moved = await tx.movePurchase(transactionId, 'succeeded', { payment_intent_id: paymentIntentId, failure_code: null });
  if (!moved) return current(tx, transactionId);
  await tx.postJournal({
    kind: 'purchase',
    reference: paymentIntentId,
    userId: moved.user_id,
    transactionId,
    memo: moved.package_name,
    amount: moved.coins,
    counterAccount: COUNTER_ACCOUNTS.sales,
  });
  return moved;
}

export async function settleRequiresAction(tx: Store, transactionId: string, paymentIntentId: string): Promise<PurchaseRow> {
  return (await tx.movePurchase(transactionId, 'requires_action', { payment_intent_id: paymentIntentId })) ?? current(tx, transactionId);
}

export async function settleFailed(
  tx: Store,
  transactionId: string,
  failureCode: string,
  paymentIntentId: string | undefined,
): Promise<PurchaseRow> {
  const set = paymentIntentId ? { failure_code: failureCode, payment_intent_id: paymentIntentId } : { failure_code: failureCode };
  return (await tx.movePurchase(transactionId, 'failed', set)) ?? current(tx, transactionId);
}

const wasPaid = (p: PurchaseRow) => !['pending', 'requires_action', 'failed'].includes(p.status);

/**
 * The charge has `amountRefunded` cents refunded in all. Coins come back pro rata, rounded down in
 * the player's favour; a larger cumulative amount seen later claws back only the difference, a
 * smaller one (an older event) changes nothing. After a dispute took the coins, refunds take none.
 */
export async function settleRefunded(tx: Store, transactionId: string, paymentIntentId: string, amountRefunded: number) {
  const purchase = await settleSucceeded(tx, transactionId, paymentIntentId);
  if (!wasPaid(purchase) || amountRefunded <= purchase.refunded_cents) return purchase;
  const refunded = Math.min(amountRefunded, purchase.amount_cents);
  if ((await tx.journalTotal(transactionId, ['dispute'])) === 0) {
    const target = -Math.floor((purchase.coins * refunded) / purchase.amount_cents);
    const taken = await tx.journalTotal(transactionId, ['refund']);
    if (target < taken) {
      await tx.postJournal({
        kind: 'refund',
        reference: `${paymentIntentId}:refunded:${refunded}`,
        userId: purchase.user_id,
        transactionId,
        memo: `refund of ${refunded} of ${purchase.amount_cents} ${purchase.currency}`,
        amount: target - taken,
        counterAccount: COUNTER_ACCOUNTS.refunds,
      });
    }
  }
  const to = refunded >= purchase.amount_cents ? 'refunded' : 'partially_refunded';
  return (await tx.movePurchase(transactionId, to, { refunded_cents: refunded })) ?? updateRefunded(tx, purchase, refunded);
}

async function updateRefunded(tx: Store, purchase: PurchaseRow, refunded: number) {
  // Not a status change (e.g. refunded while disputed): keep the figure, never lower it.
  await tx.db
    .updateTable('purchases')
    .set({ refunded_cents: refunded })
    .where('transaction_id', '=', purchase.transaction_id)
    .where('refunded_cents', '<', refunded)
    .execute();
  return current(tx, purchase.transaction_id);
}

/**
 * A dispute in state `status`. Opening one claws back the coins the player still holds from the
 * purchase; winning it gives them back; losing it leaves them gone. A `closed` event that arrives
 * before its `created` event applies both, so the order of delivery does not matter.
 */
export async function settleDispute(
  tx: Store,
  transactionId: string,
  paymentIntentId: string,
  dispute: { id: string; status: string },
): Promise<PurchaseRow> {
  const purchase = await settleSucceeded(tx, transactionId, paymentIntentId);
  if (!wasPaid(purchase)) return purchase;
  const remaining = purchase.coins + (await tx.journalTotal(transactionId, ['refund']));
  if (remaining > 0) {
    await tx.postJournal({
      kind: 'dispute',
      reference: dispute.id,
      userId: purchase.user_id,
      transactionId,
      memo: 'payment disputed',
      amount: -remaining,
      counterAccount: COUNTER_ACCOUNTS.disputes,
    });
  }
  await tx.movePurchase(transactionId, 'disputed');
  if (dispute.status === 'won' || dispute.status === 'warning_closed') {
    const taken = await tx.journalTotal(transactionId, ['dispute']);
    if (taken < 0) {
      await tx.postJournal({
        kind: 'dispute_reversal',
        reference: dispute.id,
        userId: purchase.user_id,
        transactionId,
        memo: 'dispute won',
        amount: -taken,
        counterAccount: COUNTER_ACCOUNTS.disputes,
      });
    }
    await tx.movePurchase(transactionId, 'dispute_won');
  } else if (dispute.status === 'lost') {
    await tx.movePurchase(transactionId, 'dispute_lost');
  }
  return current(tx, transactionId);
}
