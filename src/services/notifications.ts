import { randomBytes } from 'node:crypto';
import type { Notification, NotificationType } from '../../schemas/notification.js';
import type { NotificationRow, PurchaseRow } from '../store/schema.js';
import type { Store } from '../store/store.js';

/**
 * The outbox's writing side: every change the game must hear of writes its notification here, in the
 * transaction of the change, so a change that rolls back leaves none and a committed one always has
 * one. Delivery (src/services/notification-sender.ts) happens beside the request path, later.
 */

/** A notification id: the `webhook-id` of every attempt to deliver it. */
const notificationId = () => `msg_${randomBytes(16).toString('hex')}`;

/** What a purchase event carries besides what the caller adds. */
function purchaseData(purchase: PurchaseRow, coins: number, balance: number) {
  return {
    user_id: purchase.user_id,
    coins,
    balance,
    transaction_id: purchase.transaction_id,
    package_id: purchase.package_id,
    amount_paid: purchase.amount_cents,
    currency: purchase.currency,
    ...(purchase.payment_intent_id ? { payment_intent_id: purchase.payment_intent_id } : {}),
  };
}

/**
 * Writes a `purchase.*` notification for `purchase` (as it is after the change) in the caller's
 * transaction. `coins`: what the change moved (0 when none); `balance`: the player's balance after
 * it, read here when the caller does not have it.
 */
export async function notifyPurchase(
  tx: Store,
  type: Exclude<NotificationType, 'coins.spent'>,
  purchase: PurchaseRow,
  change: { coins: number; balance?: number | undefined; extra?: Record<string, unknown> },
): Promise<void> {
  const balance = change.balance ?? (await tx.findCustomer(purchase.user_id))?.currency_balance ?? 0;
  await tx.insertNotification(purchaseNotice(type, purchase, { ...change, balance }));
}

/** The notification notifyPurchase writes, with the balance given. */
export function purchaseNotice(
  type: Exclude<NotificationType, 'coins.spent'>,
  purchase: PurchaseRow,
  change: { coins: number; balance: number; extra?: Record<string, unknown> | undefined },
) {
  return {
    id: notificationId(),
    type,
    userId: purchase.user_id,
    data: { ...purchaseData(purchase, change.coins, change.balance), ...change.extra },
  };
}

/** Writes the `coins.spent` notification of a spend in the caller's transaction. */
export async function notifySpend(tx: Store, spend: { userId: string; spendId: string; itemId: string; coins: number; balance: number }) {
  await tx.insertNotification({
    id: notificationId(),
    type: 'coins.spent',
    userId: spend.userId,
    data: { user_id: spend.userId, coins: -spend.coins, balance: spend.balance, spend_id: spend.spendId, item_id: spend.itemId },
  });
}

/** A notification as the operator API shows it. */
export function notificationView(row: NotificationRow): Notification {
  return {
    id: row.id,
    type: row.type as NotificationType,
    created_at: row.created_at,
    data: JSON.parse(row.data) as Notification['data'],
    delivery: {
      status: row.status,
      attempts: row.attempts,
      ...(row.last_attempt_at ? { last_attempt_at: row.last_attempt_at } : {}),
      ...(row.last_error ? { last_error: row.last_error } : {}),
      ...(row.status === 'pending' ? { next_attempt_at: row.next_attempt_at } : {}),
      ...(row.delivered_at ? { delivered_at: row.delivered_at } : {}),
    },
  };
}

/** The body a game server receives (Standard Webhooks): `{"type","timestamp","data"}`, the data as stored. */
export const notificationBody = (row: NotificationRow) =>
  `{"type":${JSON.stringify(row.type)},"timestamp":${JSON.stringify(row.created_at)},"data":${row.data}}`;

/**
 * The wait before each retry, counted from the start of a series of attempts (creation, or an
 * operator's redelivery): about 5 s, 30 s, 2 min, 10 min, 1 h, 6 h, then every 12 h, until
 * RETRY_FOR_MS has passed; then the notification is `failed`.
 */
export const RETRY_DELAYS_MS = [5_000, 30_000, 120_000, 600_000, 3_600_000, 21_600_000, 43_200_000] as const;
export const RETRY_FOR_MS = 3 * 24 * 3_600_000;

/**
 * When to try again after a failed attempt at `now`, or undefined when the series has run out.
 * `random` in [0, 1) spreads retries ±20 %, so receivers coming back up are not hit all at once.
 */
export function nextAttemptAt(retryFrom: number, now: number, random: number): number | undefined {
  const elapsed = now - retryFrom;
  let passed = 0;
  let index = 0;
  for (; index < RETRY_DELAYS_MS.length - 1; index++) {
    passed += RETRY_DELAYS_MS[index] ?? 0;
    // A quarter of slack: an attempt the jitter brought forward still counts as the step it was.
    if (passed > elapsed * 1.25) break;
  }
  const delay = RETRY_DELAYS_MS[index] ?? 0;
  const next = now + Math.round(delay * (0.8 + 0.4 * random));
  return next - retryFrom > RETRY_FOR_MS ? undefined : next;
}
