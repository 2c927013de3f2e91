import type { PurchaseRow } from '../store/schema.js';
import type { Store } from '../store/store.js';
import { notifyPurchase } from './notifications.js';

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
  return (await creditPurchase(tx, transactionId, paymentIntentId)).purchase;
}

/**
 * settleSucceeded, also telling the player's balance after the credit when this call made it
 * (undefined when the purchase had been settled before).
 */
export async function creditPurchase(
  tx: Store,
  transactionId: string,
  paymentIntentId: string,
): Promise<{ purchase: PurchaseRow; balance: number | undefined }> {
  // Every settlement path (refunds and disputes start here too) holds the purchase's row until it
  // commits, so the ledger it reads cannot change under it on another replica.
  await tx.lockPurchase(transactionId);
  const moved = await tx.movePurchase(transactionId, 'succeeded', { payment_intent_id: paymentIntentId, failure_code: null });
  if (!moved) return { purchase: await current(tx, transactionId), balance: undefined };
  const balance = await tx.postJournal({
    kind: 'purchase',
    reference: paymentIntentId,
    userId: moved.user_id,
    transactionId,
    memo: moved.package_name,
    amount: moved.coins,
    counterAccount: COUNTER_ACCOUNTS.sales,
  });
  await notifyPurchase(tx, 'purchase.succeeded', moved, { coins: balance === undefined ? 0 : moved.coins, balance });
  return { purchase: moved, balance };
}

export async function settleRequiresAction(tx: Store, transactionId: string, paymentIntentId: string): Promise<PurchaseRow> {
  const moved = await tx.movePurchase(transactionId, 'requires_action', { payment_intent_id: paymentIntentId });
  if (!moved) return current(tx, transactionId);
  await notifyPurchase(tx, 'purchase.requires_action', moved, { coins: 0 });
  return moved;
}

export async function settleFailed(
  tx: Store,
  transactionId: string,
  failureCode: string,
  paymentIntentId: string | undefined,
): Promise<PurchaseRow> {
  const set = paymentIntentId ? { failure_code: failureCode, payment_intent_id: paymentIntentId } : { failure_code: failureCode };
  const moved = await tx.movePurchase(transactionId, 'failed', set);
  if (!moved) return current(tx, transactionId);
  await notifyPurchase(tx, 'purchase.failed', moved, { coins: 0, extra: { failure_code: failureCode } });
  return moved;
}

const wasPaid = (p: PurchaseRow) => !['pending', 'requires_action', 'failed'].includes(p.status);

/**
 * The coins a purchase should leave with the player, from its state alone: its coins less the
 * refunded share (rounded down, in the player's favour), and none while a dispute is open or lost.
 * Refund and dispute events move the purchase's state monotonically (refunded cents only grow, a
 * dispute only moves on), and the ledger is then brought to this figure — so the order in which
 * Stripe's events arrive cannot change where the coins end up.
 */
export function coinsHeld(p: PurchaseRow): number {
  if (!wasPaid(p) || p.status === 'disputed' || p.status === 'dispute_lost') return 0;
  return p.coins - Math.floor((p.coins * Math.min(p.refunded_cents, p.amount_cents)) / p.amount_cents);
}

/** Posts the difference between what the purchase's journals hold and what they should. */
async function converge(tx: Store, purchase: PurchaseRow, cause: { kind: 'refund' | 'dispute'; reference: string; memo: string }) {
  const held = await tx.journalTotal(purchase.transaction_id, ['purchase', 'refund', 'dispute', 'dispute_reversal']);
  const delta = coinsHeld(purchase) - held;
  if (delta === 0) return;
  const kind = cause.kind === 'refund' ? 'refund' : delta < 0 ? 'dispute' : 'dispute_reversal';
  await tx.postJournal({
    kind,
    reference: cause.reference,
    userId: purchase.user_id,
    transactionId: purchase.transaction_id,
    memo: cause.memo,
    amount: delta,
    counterAccount: kind === 'refund' ? COUNTER_ACCOUNTS.refunds : COUNTER_ACCOUNTS.disputes,
  });
}

/** The charge has `amountRefunded` cents refunded in all (a smaller, older figure changes nothing). */
export async function settleRefunded(tx: Store, transactionId: string, paymentIntentId: string, amountRefunded: number) {
  const paid = await settleSucceeded(tx, transactionId, paymentIntentId);
  if (!wasPaid(paid) || amountRefunded <= paid.refunded_cents) return paid;
  const refunded = Math.min(amountRefunded, paid.amount_cents);
  await tx.db
    .updateTable('purchases')
    .set({ refunded_cents: refunded })
    .where('transaction_id', '=', transactionId)
    .where('refunded_cents', '<', refunded)
    .execute();
  // While a dispute is open or decided, the status stays the dispute's; the refund still counts.
  await tx.movePurchase(transactionId, refunded >= paid.amount_cents ? 'refunded' : 'partially_refunded');
  const purchase = await current(tx, transactionId);
  await converge(tx, purchase, {
    kind: 'refund',
    reference: `${paymentIntentId}:refunded:${refunded}`,
    memo: `refund of ${refunded} of ${purchase.amount_cents} ${purchase.currency}`,
  });
  return purchase;
}

/**
 * A dispute in state `status`: opened, the coins are held back; won, they come back (less any
 * refund); lost, they stay gone. A `closed` event that arrives before its `created` event lands in
 * the same place, because both move the status forward and the ledger follows the status.
 */
export async function settleDispute(
  tx: Store,
  transactionId: string,
  paymentIntentId: string,
  dispute: { id: string; status: string },
): Promise<PurchaseRow> {
  const paid = await settleSucceeded(tx, transactionId, paymentIntentId);
  if (!wasPaid(paid)) return paid;
  await tx.movePurchase(transactionId, 'disputed');
  if (dispute.status === 'won' || dispute.status === 'warning_closed') await tx.movePurchase(transactionId, 'dispute_won');
  else if (dispute.status === 'lost') await tx.movePurchase(transactionId, 'dispute_lost');
  const purchase = await current(tx, transactionId);
  await converge(tx, purchase, { kind: 'dispute', reference: dispute.id, memo: `dispute ${dispute.status}` });
  return purchase;
}
