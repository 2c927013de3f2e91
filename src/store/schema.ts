import type { Generated, Insertable, Selectable } from 'kysely';

/**
 * A purchase's life. It only moves forward: see `PURCHASE_TRANSITIONS` for the edges. `failed` can
 * still become `succeeded` when Stripe says the PaymentIntent succeeded after all (the customer
 * finished it with another attempt): money that moved is always credited.
 *
 * One edge goes back, and only through `Store.setRefunded`, never `movePurchase`: among
 * `REFUND_SETTLED` the status follows `refunded_cents`, which falls when a refund fails after
 * Stripe reported it (`pm_card_refundFail`; the bank sends the money back to the merchant). A
 * `refunded` purchase whose refund failed is `succeeded` (or `partially_refunded`) again, because the
 * player paid and was not repaid: its coins are returned.
 */
export type PurchaseStatus =
  'pending' | 'requires_action' | 'failed' | 'succeeded' | 'partially_refunded' | 'refunded' | 'disputed' | 'dispute_won' | 'dispute_lost';

/**
 * For each status, the statuses a purchase may move to it from. `dispute_won` → `disputed` is the one
 * step that looks backwards: a charge can meet several chargebacks in its life (each its own dispute
 * object, each moving only forward), and a new one opened after a won one disputes the payment again.
 * `dispute_lost` is final.
 */
export const PURCHASE_TRANSITIONS: Readonly<Record<PurchaseStatus, readonly PurchaseStatus[]>> = {
  pending: [],
  requires_action: ['pending'],
  failed: ['pending', 'requires_action'],
  succeeded: ['pending', 'requires_action', 'failed'],
  partially_refunded: ['succeeded', 'partially_refunded'],
  refunded: ['succeeded', 'partially_refunded'],
  disputed: ['succeeded', 'partially_refunded', 'dispute_won'],
  dispute_won: ['disputed'],
  dispute_lost: ['disputed'],
};

export const UNFINISHED: readonly PurchaseStatus[] = ['pending', 'requires_action'];

/** What a purchase paid on Stripe Checkout records as its payment method: the customer picks one on Stripe's page. */
export const CHECKOUT_PAYMENT_METHOD = 'checkout';

/**
 * The failure a customer can still undo: 3-D Secure failed, and the PaymentIntent waits for another
 * attempt in the browser (Stripe.js with the same client secret). If it then succeeds, the purchase
 * is credited (`failed` → `succeeded`).
 */
export const REVIVABLE_FAILURE = 'authentication_failed';
/** The statuses a paid, undisputed purchase takes from its refunded amount (none, part, all). */
export const REFUND_SETTLED: readonly PurchaseStatus[] = ['succeeded', 'partially_refunded', 'refunded'];

export interface CustomersTable {
  user_id: string;
  email: string;
  name: string;
  stripe_customer_id: string;
  /** The saved card: a Stripe PaymentMethod id or a seed test token. */
  payment_method_id: string | null;
  /** Always the sum of the player's ledger entries; written only together with one. */
  currency_balance: number;
  created_at: string;
  /** The number of the player's last notification (see NotificationsTable.user_seq). */
  notification_seq: Generated<number>;
}

export interface PurchasesTable {
  id: Generated<number>;
  transaction_id: string;
  user_id: string;
  package_id: string;
  package_name: string;
  amount_cents: number;
  currency: string;
  coins: number;
  /**
   * The card charged, as it was at purchase time: a retry sends Stripe exactly the same request.
   * `checkout` (CHECKOUT_PAYMENT_METHOD) for a purchase paid on Stripe Checkout, which needs no saved card.
   */
  payment_method_id: string;
  status: PurchaseStatus;
  payment_intent_id: string | null;
  failure_code: string | null;
  /**
   * What is refunded in Stripe now, in cents: refunds coinshop knows (pending or succeeded), plus
   * what the charge reported beyond them (see settlement's refundedCents). Falls when a refund fails.
   */
  refunded_cents: number;
  /** The largest cumulative `amount_refunded` a Stripe Charge was seen with; never falls. */
  stripe_refunded_cents: number;
  /** For a purchase paid on Stripe Checkout: its Checkout Session, once Stripe made it. */
  checkout_session_id: string | null;
  created_at: string;
  updated_at: string;
}

/**
 * Why coins moved. Each (kind, reference) can be written once: that is the exactly-once guarantee.
 * `refund_reversal`: coins a refund took back, returned because the refund failed.
 */
export type JournalKind = 'purchase' | 'refund' | 'refund_reversal' | 'dispute' | 'dispute_reversal' | 'spend';

/** One balanced movement of coins: its entries sum to zero. */
export interface LedgerJournalsTable {
  id: Generated<number>;
  kind: JournalKind;
  /** The object behind it: a PaymentIntent, `<PaymentIntent>:refunded:<cents>`, a dispute, a spend id. */
  reference: string;
  user_id: string;
  transaction_id: string | null;
  memo: string | null;
  created_at: string;
}

/** Append-only. A player's account is `player:<user_id>`; the other side is a `coinshop:*` account. */
export interface LedgerEntriesTable {
  id: Generated<number>;
  journal_id: number;
  account: string;
  amount: number;
  /** For player accounts: the balance after this entry. */
  balance_after: number | null;
  created_at: string;
}

export type IdempotencyState = 'in_progress' | 'completed';

export interface IdempotencyKeysTable {
  scope: string;
  key: string;
  request_hash: string;
  /** The id the first request reserved for what it creates (transaction, customer, spend): a retry reuses it. */
  resource_id: string;
  state: IdempotencyState;
  /** When the request holding the key started; null once it let go (a retry may take over). */
  locked_at: string | null;
  response_status: number | null;
  response_type: string | null;
  response_body: string | null;
  created_at: string;
}

export type NotificationStatus = 'pending' | 'delivered' | 'failed';

/**
 * The outbox: one row per money event the game is told of, written in the transaction of the change
 * it reports, then delivered (signed, retried) beside the request path.
 */
export interface NotificationsTable {
  /** Global order; the feed's cursor. */
  seq: Generated<number>;
  /** `msg_…`: the `webhook-id` of every delivery attempt. */
  id: string;
  type: string;
  user_id: string;
  /** 1, 2, 3… per player, so a receiver can order one player's events. */
  user_seq: number;
  /** The event's `data`, as JSON text. */
  data: string;
  created_at: string;
  status: NotificationStatus;
  attempts: number;
  last_attempt_at: string | null;
  last_error: string | null;
  next_attempt_at: string;
  retry_from: string;
  lease_until: string | null;
  delivered_at: string | null;
}

/**
 * Where a refund is: `requested` (recorded before Stripe is called; Stripe's answer not known yet),
 * `rejected` (Stripe made no refund for it), or the Stripe refund's own status.
 */
export type RefundStatus = 'requested' | 'rejected' | 'pending' | 'requires_action' | 'succeeded' | 'failed' | 'canceled';

/**
 * The refunds of a purchase: each operator refund is recorded (`requested`) before Stripe is called,
 * under the key it is sent to Stripe with, so that one interrupted before its answer was written is
 * found and finished; refunds made elsewhere (the Dashboard) are recorded when an event shows them.
 */
export interface RefundsTable {
  id: Generated<number>;
  /** The operator request's key (`refund-<key>` at Stripe); null for refunds coinshop did not make. */
  refund_key: string | null;
  transaction_id: string;
  /** What the operator asked for; null: all that remained. */
  requested_cents: number | null;
  stripe_refund_id: string | null;
  /** The refund's amount, once Stripe has told it. */
  amount_cents: number | null;
  status: RefundStatus;
  failure_reason: string | null;
  created_at: string;
  updated_at: string;
}

/**
 * A Stripe dispute's status. Inquiries (`warning_*`, a bank's retrieval request) move no money;
 * chargebacks (the others) do: the disputed amount is withdrawn while one is open, returned if won.
 */
export type DisputeStatus =
  'warning_needs_response' | 'warning_under_review' | 'warning_closed' | 'needs_response' | 'under_review' | 'won' | 'lost';

export const DISPUTE_STATUSES: readonly DisputeStatus[] = [
  'warning_needs_response',
  'warning_under_review',
  'warning_closed',
  'needs_response',
  'under_review',
  'won',
  'lost',
];

/**
 * Each Stripe dispute object on a purchase's charge, as the latest event about it said (a charge can
 * meet several: an inquiry, later a chargeback). A dispute's status only moves forward.
 */
export interface DisputesTable {
  dispute_id: string;
  transaction_id: string;
  status: DisputeStatus;
  created_at: string;
  updated_at: string;
}

export interface WebhookEventsTable {
  event_id: string;
  type: string;
  received_at: string;
}

export interface Database {
  customers: CustomersTable;
  purchases: PurchasesTable;
  ledger_journals: LedgerJournalsTable;
  ledger_entries: LedgerEntriesTable;
  idempotency_keys: IdempotencyKeysTable;
  webhook_events: WebhookEventsTable;
  notifications: NotificationsTable;
  refunds: RefundsTable;
  disputes: DisputesTable;
}

/**
 * Every column of customers and of purchases, by name. The hot statements that return whole rows
 * name them rather than read `*`: on PostgreSQL those statements are prepared once per connection,
 * and a prepared `*` fails once a migration adds a column ("cached plan must not change result
 * type"). A column added to a table above and not here fails to compile where the row is returned.
 */
export const CUSTOMER_COLUMNS = [
  'user_id',
  'email',
  'name',
  'stripe_customer_id',
  'payment_method_id',
  'currency_balance',
  'created_at',
  'notification_seq',
] as const;
export const PURCHASE_COLUMNS = [
  'id',
  'transaction_id',
  'user_id',
  'package_id',
  'package_name',
  'amount_cents',
  'currency',
  'coins',
  'payment_method_id',
  'status',
  'payment_intent_id',
  'failure_code',
  'refunded_cents',
  'stripe_refunded_cents',
  'checkout_session_id',
  'created_at',
  'updated_at',
] as const;

export type CustomerRow = Selectable<CustomersTable>;
export type PurchaseRow = Selectable<PurchasesTable>;
export type NewPurchase = Insertable<PurchasesTable>;
export type IdempotencyRow = Selectable<IdempotencyKeysTable>;
export type NotificationRow = Selectable<NotificationsTable>;
export type RefundRow = Selectable<RefundsTable>;
export type DisputeRow = Selectable<DisputesTable>;
