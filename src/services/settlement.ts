import type { ProviderRefundStatus } from '../gateway/types.js';
import { REFUND_SETTLED, type DisputeRow, type DisputeStatus, type PurchaseRow, type PurchaseStatus } from '../store/schema.js';
import type { Store } from '../store/store.js';
import { hole, jsonAround } from '../store/json-around.js';
import { answerType } from './idempotency.js';
import { notifyPurchase, purchaseNotice } from './notifications.js';

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
  // commits, so the ledger it reads cannot change under it on another replica: the move holds it
  // when it happens, lockPurchase when it does not.
  const { purchase: moved, balance } = await tx.creditPurchase(transactionId, paymentIntentId, COUNTER_ACCOUNTS.sales);
  if (!moved) {
    await tx.lockPurchase(transactionId);
    return { purchase: await current(tx, transactionId), balance: undefined };
  }
  await notifyPurchase(tx, 'purchase.succeeded', moved, { coins: balance === undefined ? 0 : moved.coins, balance });
  return { purchase: moved, balance };
}

/**
 * creditPurchase with its request's answer, in one statement where the store can (see
 * Store.creditPurchaseAnswering): the credit, the `purchase.succeeded` notification and, with a key,
 * the key's answer `respond(balance)`, rendered here with the balance the statement computes.
 * `pending` is the purchase as recorded before Stripe was asked. Undefined when the store cannot, or
 * the purchase was not moved (a webhook settled it first): nothing was written, and the caller settles
 * it in a transaction as usual.
 */
export async function creditPurchaseAnswering<B>(
  store: Store,
  pending: PurchaseRow,
  paymentIntentId: string,
  key: { scope: string; key: string } | undefined,
  respond: (balance: number) => { status: number; body: B },
): Promise<{ balance: number; answer: { status: number; body: B } } | undefined> {
  if (!store.answersInOneStatement) return undefined;
  const paid: PurchaseRow = { ...pending, status: 'succeeded', payment_intent_id: paymentIntentId, failure_code: null };
  const notice = purchaseNotice('purchase.succeeded', paid, { coins: hole(0), balance: hole(1) });
  const answer = respond(hole(0));
  const [beforeCoins, beforeBalance, last] = jsonAround(notice.data, 2) ?? [];
  const [beforeBalanceInAnswer, afterBalanceInAnswer] = jsonAround(answer.body, 1) ?? [];
  if (beforeCoins === undefined || beforeBalance === undefined || last === undefined) return undefined;
  if (beforeBalanceInAnswer === undefined || afterBalanceInAnswer === undefined) return undefined;
  const done = await store.creditPurchaseAnswering(
    { transactionId: pending.transaction_id, paymentIntentId, counterAccount: COUNTER_ACCOUNTS.sales },
    // The number goes last, as "sequence": the data without its closing brace.
    { id: notice.id, type: notice.type, data: [beforeCoins, beforeBalance, `${last.slice(0, -1)},`] },
    key && { ...key, status: answer.status, type: answerType(answer.status), body: [beforeBalanceInAnswer, afterBalanceInAnswer] },
  );
  return done && { balance: done.balance, answer: respond(done.balance) };
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
 * Refund and dispute events move the purchase's state monotonically (what is known of its refunds
 * only grows, see refundedCents; a dispute only moves on), and the ledger is then brought to this
 * figure — so the order in which
 * Stripe's events arrive cannot change where the coins end up.
 */
export function coinsHeld(p: PurchaseRow): number {
  if (!wasPaid(p) || p.status === 'disputed' || p.status === 'dispute_lost') return 0;
  return p.coins - Math.floor((p.coins * Math.min(p.refunded_cents, p.amount_cents)) / p.amount_cents);
}

/**
 * Posts the difference between what the purchase's journals hold and what they should; returns the
 * coins it moved (0 when none) and, when it moved some, the player's balance after.
 */
async function converge(
  tx: Store,
  purchase: PurchaseRow,
  cause: { kind: 'refund' | 'dispute'; reference: string; memo: string },
): Promise<{ coins: number; balance?: number | undefined }> {
  const held = await tx.journalTotal(purchase.transaction_id, ['purchase', 'refund', 'refund_reversal', 'dispute', 'dispute_reversal']);
  const delta = coinsHeld(purchase) - held;
  if (delta === 0) return { coins: 0 };
  const kind = cause.kind === 'refund' ? (delta < 0 ? 'refund' : 'refund_reversal') : delta < 0 ? 'dispute' : 'dispute_reversal';
  const balance = await tx.postJournal({
    kind,
    reference: cause.reference,
    userId: purchase.user_id,
    transactionId: purchase.transaction_id,
    memo: cause.memo,
    amount: delta,
    counterAccount: kind === 'refund' ? COUNTER_ACCOUNTS.refunds : COUNTER_ACCOUNTS.disputes,
  });
  return balance === undefined ? { coins: 0 } : { coins: delta, balance };
}

/**
 * What is refunded of a purchase, from what is known: every Stripe refund coinshop knows of (`made`;
 * `undone`, those that failed or were canceled after), and the largest `amount_refunded` a charge was
 * seen with (refunds coinshop has no object for, made in the Dashboard, are in it). Each input only
 * grows — refunds become known, a refund's status only moves on, the largest figure only rises — so
 * events in any order land on the same figure. It never counts a refund that is not there (a charge
 * figure that included a refund since failed is covered by that refund's own amount); a Dashboard
 * refund made after another one failed may be counted only once its own refund event arrives.
 */
export function refundedCents(p: PurchaseRow, refunds: { made: number; undone: number }): number {
  const refunded = Math.max(refunds.made, p.stripe_refunded_cents) - refunds.undone;
  return Math.min(Math.max(refunded, 0), p.amount_cents);
}

/**
 * Brings a paid purchase's refunded amount, status and coins to what its refunds say. The journal's
 * reference names the refund state it converges to, which never repeats (`made` and `undone` only
 * grow), so a refund taken back, failed, then made again posts each time.
 */
async function convergeRefunds(tx: Store, transactionId: string, paymentIntentId: string): Promise<PurchaseRow> {
  const paid = await current(tx, transactionId);
  const totals = await tx.refundTotals(transactionId);
  const refunded = refundedCents(paid, totals);
  const status = refunded === 0 ? 'succeeded' : refunded >= paid.amount_cents ? 'refunded' : 'partially_refunded';
  // While a dispute is open or decided, the status stays the dispute's; the refund still counts.
  await tx.setRefunded(transactionId, refunded, status);
  // A chargeback that came while the purchase was refunded in full left its status alone (there was
  // nothing to hold back); once a refund fails there is again, and the chargeback holds it.
  const settled = await current(tx, transactionId);
  const followed =
    REFUND_SETTLED.includes(settled.status) &&
    (await followDisputes(tx, transactionId, settled.status, await tx.listDisputes(transactionId)));
  const purchase = followed ? await current(tx, transactionId) : settled;
  const undone = totals.undone > 0 ? `:after-failed:${totals.undone}` : '';
  const moved = await converge(tx, purchase, {
    kind: 'refund',
    reference: `${paymentIntentId}:refunded:${refunded}${undone}`,
    memo:
      totals.undone > 0
        ? `refund of ${refunded} of ${purchase.amount_cents} ${purchase.currency} (${totals.undone} refunded then failed)`
        : `refund of ${refunded} of ${purchase.amount_cents} ${purchase.currency}`,
  });
  if (purchase.refunded_cents !== paid.refunded_cents) {
    // More refunded: coins taken back (or none, while a dispute holds them); less: a refund failed, coins returned.
    const type = purchase.refunded_cents > paid.refunded_cents ? 'purchase.refunded' : 'purchase.refund_failed';
    await notifyPurchase(tx, type, purchase, { ...moved, extra: { amount_refunded: purchase.refunded_cents } });
  }
  return purchase;
}

/** The charge has `amountRefunded` cents refunded in all (a smaller, older figure changes nothing). */
export async function settleRefunded(tx: Store, transactionId: string, paymentIntentId: string, amountRefunded: number) {
  const paid = await settleSucceeded(tx, transactionId, paymentIntentId);
  if (!wasPaid(paid)) return paid;
  await tx.raiseStripeRefunded(transactionId, amountRefunded);
  return convergeRefunds(tx, transactionId, paymentIntentId);
}

/**
 * Stripe says this of one refund (its answer to the refund call, or an event about the refund): its
 * amount and status — a refund that failed after it succeeded gives its coins back — and, with the
 * refund call, the charge's refunded total then.
 */
export async function settleRefund(
  tx: Store,
  transactionId: string,
  paymentIntentId: string,
  refund: {
    id: string;
    amount: number;
    status: ProviderRefundStatus;
    failureReason?: string | null | undefined;
    refundKey?: string | undefined;
    amountRefunded?: number | undefined;
  },
): Promise<PurchaseRow> {
  const paid = await settleSucceeded(tx, transactionId, paymentIntentId);
  if (!wasPaid(paid)) return paid;
  await tx.recordRefund(transactionId, refund);
  if (refund.amountRefunded !== undefined) await tx.raiseStripeRefunded(transactionId, refund.amountRefunded);
  return convergeRefunds(tx, transactionId, paymentIntentId);
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
 * Moves a purchase in status `status` to the one its disputes give it, where the moves allow (see
 * disputeStatusOf); says whether it moved.
 */
async function followDisputes(tx: Store, transactionId: string, status: PurchaseStatus, disputes: DisputeRow[]): Promise<boolean> {
  const target = disputeStatusOf(status, disputes);
  if (!target || target === status) return false;
  // Through `disputed`, which a purchase already there skips (it may go straight on to the outcome).
  const opened = await tx.movePurchase(transactionId, 'disputed');
  const decided = target === 'disputed' ? undefined : await tx.movePurchase(transactionId, target);
  return opened !== undefined || decided !== undefined;
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
  const statusOf = (disputes: DisputeRow[]) => disputes.find((d) => d.dispute_id === dispute.id)?.status;
  const before = statusOf(await tx.listDisputes(transactionId));
  await tx.recordDispute(
    { disputeId: dispute.id, transactionId, status: dispute.status },
    (known) => DISPUTE_PROGRESS[dispute.status] > DISPUTE_PROGRESS[known],
  );
  const disputes = await tx.listDisputes(transactionId);
  const after = statusOf(disputes);
  await followDisputes(tx, transactionId, paid.status, disputes);
  const purchase = await current(tx, transactionId);
  const moved = await converge(tx, purchase, { kind: 'dispute', reference: dispute.id, memo: `dispute ${dispute.status}` });
  // The game hears of a chargeback when it opens and when it is decided (an inquiry moves no money:
  // nothing to tell); a `closed` event that comes first tells both at once, as one dispute_closed.
  const closed = after === 'won' || after === 'lost';
  const opened = !closed && after !== undefined && !isInquiry(after) && (before === undefined || isInquiry(before));
  const decided = closed && before !== after;
  if (opened || decided || moved.coins !== 0) {
    await notifyPurchase(tx, closed ? 'purchase.dispute_closed' : 'purchase.disputed', purchase, {
      ...moved,
      extra: { dispute_id: dispute.id, ...(closed ? { dispute_outcome: after } : {}) },
    });
  }
  return purchase;
}
