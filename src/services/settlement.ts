import type { DisputeRow, DisputeStatus, PurchaseRow, PurchaseStatus } from '../store/schema.js';
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
  return { purchase: moved, balance };
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
 * How far along a dispute is: a status replaces a known one only when it ranks higher, so a late or
 * repeated event about an earlier state changes nothing. An inquiry can be escalated in place to a
 * chargeback; `warning_closed`, `won` and `lost` are final.
 */
const DISPUTE_PROGRESS: Readonly<Record<DisputeStatus, number>> = {
  warning_needs_response: 1,
  warning_under_review: 2,
  needs_response: 3,
  under_review: 4,
  warning_closed: 5,
  won: 5,
  lost: 5,
};

/** Inquiries (`warning_*`) move no money at Stripe, so they hold no coins back either. */
export const isInquiry = (status: DisputeStatus) => status.startsWith('warning_');

/**
 * The dispute status a purchase shows, from every dispute its charge has met: lost if a chargeback
 * was lost (the money is gone for good), disputed while one is open, won once every chargeback was
 * won. Inquiries do not count. `undefined`: no chargeback, the purchase keeps the status it has — but
 * one disputed before disputes were kept one by one (an inquiry was then taken for a chargeback) is
 * won once nothing holds it any more.
 */
function disputeStatusOf(current: PurchaseStatus, disputes: DisputeRow[]): PurchaseStatus | undefined {
  const chargebacks = disputes.filter((d) => !isInquiry(d.status)).map((d) => d.status);
  if (chargebacks.includes('lost')) return 'dispute_lost';
  if (chargebacks.some((s) => s === 'needs_response' || s === 'under_review')) return 'disputed';
  if (chargebacks.includes('won') || current === 'disputed') return 'dispute_won';
  return undefined;
}

/**
 * A dispute in state `status`. Each dispute object is kept on its own (a charge can meet several: an
 * inquiry, later a chargeback; a new chargeback after a won one), its status only moving forward; the
 * purchase's status and coins follow from all of them: none while a chargeback is open or lost, all
 * (less any refund) once every chargeback was won; an inquiry holds nothing back. Events in any order
 * (a `closed` before its `created`) end in the same place.
 */
export async function settleDispute(
  tx: Store,
  transactionId: string,
  paymentIntentId: string,
  dispute: { id: string; status: DisputeStatus },
): Promise<PurchaseRow> {
  const paid = await settleSucceeded(tx, transactionId, paymentIntentId);
  if (!wasPaid(paid)) return paid;
  await tx.recordDispute(
    { disputeId: dispute.id, transactionId, status: dispute.status },
    (known) => DISPUTE_PROGRESS[dispute.status] > DISPUTE_PROGRESS[known],
  );
  const target = disputeStatusOf(paid.status, await tx.listDisputes(transactionId));
  if (target && target !== paid.status) {
    await tx.movePurchase(transactionId, 'disputed');
    if (target !== 'disputed') await tx.movePurchase(transactionId, target);
  }
  const purchase = await current(tx, transactionId);
  await converge(tx, purchase, { kind: 'dispute', reference: dispute.id, memo: `dispute ${dispute.status}` });
  return purchase;
}
