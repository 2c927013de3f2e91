import type { Compilable, Kysely } from 'kysely';
import type { Engine } from './engine.js';
import { runPrepared, runStatement, type StatementOptions } from './prepared.js';
import {
  CUSTOMER_COLUMNS,
  PURCHASE_COLUMNS,
  PURCHASE_TRANSITIONS,
  REVIVABLE_FAILURE,
  REFUND_SETTLED,
  UNFINISHED,
  type CustomerRow,
  type Database,
  type DisputeRow,
  type DisputeStatus,
  type IdempotencyRow,
  type JournalKind,
  type NewPurchase,
  type NotificationRow,
  type NotificationStatus,
  type PurchaseRow,
  type PurchaseStatus,
  type RefundRow,
  type RefundStatus,
} from './schema.js';

export const now = () => new Date().toISOString();

/** How far on a refund is: a status only moves to a higher rank. */
const REFUND_RANK: Readonly<Record<RefundStatus, number>> = {
  requested: 0,
  rejected: 0,
  pending: 1,
  requires_action: 1,
  succeeded: 2,
  failed: 3,
  canceled: 3,
};

export const playerAccount = (userId: string) => `player:${userId}`;

/** A spend (or any debit that must not overdraw) found too few coins; the transaction rolls back. */
export class InsufficientBalance extends Error {
  constructor(readonly balance: number) {
    super('insufficient balance');
    this.name = 'InsufficientBalance';
  }
}

export interface JournalInput {
  kind: JournalKind;
  reference: string;
  userId: string;
  transactionId: string | null;
  memo?: string | null;
  /** Coins to the player (negative: from the player). */
  amount: number;
  /** The other side of the movement, e.g. `coinshop:sales`. */
  counterAccount: string;
  /** Refuse (InsufficientBalance) if the player's balance would go below zero. */
  mustNotOverdraw?: boolean;
}

/** A customer as read to record their purchase, and the pending purchase when one was recorded. */
export interface RecordedPurchase {
  /** Undefined: no such customer. */
  customer: CustomerRow | undefined;
  /** Undefined: nothing was recorded (no such customer, or no saved card). */
  purchase: PurchaseRow | undefined;
}

/** An Idempotency-Key to reserve (Store.reserveKey). */
export interface KeyInput {
  scope: string;
  key: string;
  hash: string;
  /** The id a new key reserves for what its request creates. */
  resourceId: string;
  lockTimeoutMs: number;
}

/** What a purchase records as pending, less what the customer row and the key supply. */
export type PendingPurchaseFields = Omit<
  NewPurchase,
  'transaction_id' | 'user_id' | 'payment_method_id' | 'status' | 'created_at' | 'updated_at' | 'refunded_cents' | 'stripe_refunded_cents'
>;

export type Reservation =
  | { kind: 'reserved'; resourceId: string; resumed: boolean }
  | { kind: 'replay'; row: IdempotencyRow }
  | { kind: 'mismatch' }
  | { kind: 'in_use' };

export interface LedgerLine {
  entry_id: number;
  amount: number;
  balance_after: number;
  kind: JournalKind;
  reference: string;
  transaction_id: string | null;
  memo: string | null;
  created_at: string;
}

/**
 * Every read and write coinshop makes, in one place, over Kysely. A Store wraps either the database
 * or one transaction of it: `transaction(fn)` hands `fn` a Store whose every call is in that
 * transaction, so services compose money moves that commit or roll back together.
 */
export class Store {
  constructor(
    readonly db: Kysely<Database>,
    readonly engine: Engine,
  ) {}

  /** Set on a transaction's Store once it wrote or re-queued a notification. */
  #notified = false;

  /** Called once a change that wrote or re-queued notifications has committed (the sender wakes up). */
  onNotificationsCommitted: (() => void) | undefined;

  async transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    if (this.db.isTransaction) return fn(this);
    let tx: Store | undefined;
    const result = await this.db.transaction().execute((trx) => fn((tx = new Store(trx, this.engine))));
    if (tx !== undefined && tx.#notified) this.onNotificationsCommitted?.();
    return result;
  }

  /** Notes that notifications were written: at once when not in a transaction, else at its commit. */
  #wroteNotifications(): void {
    if (this.db.isTransaction) this.#notified = true;
    else this.onNotificationsCommitted?.();
  }

  /** A hot statement, compiled once (see runPrepared): `key` names it and whatever besides its arguments' names varies its SQL. */
  #prepared<A extends Record<string, unknown>, R>(
    key: string,
    args: A,
    build: (db: Kysely<Database>, args: A) => Compilable<R>,
    options?: StatementOptions,
  ) {
    return runPrepared(this.db, this.engine, key, args, build, options);
  }

  /** A PostgreSQL statement in fixed SQL (a state transition in one statement), named like #prepared's. */
  #statement<R>(sql: string, parameters: unknown[], options?: StatementOptions) {
    return runStatement<R>(this.db, this.engine, sql, parameters, options);
  }

  close(): Promise<void> {
    return this.db.destroy();
  }

  // Customers

  async insertCustomer(customer: Pick<CustomerRow, 'user_id' | 'email' | 'name' | 'stripe_customer_id'>) {
    const row: CustomerRow = { ...customer, payment_method_id: null, currency_balance: 0, created_at: now(), notification_seq: 0 };
    await this.db.insertInto('customers').values(row).execute();
    return row;
  }

  async findCustomer(userId: string): Promise<CustomerRow | undefined> {
    const { rows } = await this.#prepared('findCustomer', { userId }, (db, a) =>
      db.selectFrom('customers').select(CUSTOMER_COLUMNS).where('user_id', '=', a.userId),
    );
    return rows[0];
  }

  async setPaymentMethod(userId: string, paymentMethodId: string): Promise<void> {
    await this.db.updateTable('customers').set({ payment_method_id: paymentMethodId }).where('user_id', '=', userId).execute();
  }

  // Purchases

  /** Records a purchase before the provider is called (money invariant 3); returns the row. */
  async insertPendingPurchase(
    purchase: Omit<NewPurchase, 'status' | 'created_at' | 'updated_at' | 'refunded_cents' | 'stripe_refunded_cents'>,
  ): Promise<PurchaseRow> {
    const at = now();
    const row = { ...purchase, status: 'pending' as const, refunded_cents: 0, stripe_refunded_cents: 0, created_at: at, updated_at: at };
    const { rows } = await this.#prepared('insertPendingPurchase', row, (db, a) =>
      db.insertInto('purchases').values(a).returning(PURCHASE_COLUMNS),
    );
    return rows[0]!;
  }

  /**
   * Reads the customer and, when they have a saved card, records their purchase as pending with it
   * (insertPendingPurchase): on PostgreSQL in one statement. `customer` is undefined when there is
   * no such customer; `purchase` when nothing was recorded (no such customer, or no saved card).
   */
  async recordPendingPurchase(
    userId: string,
    purchase: PendingPurchaseFields & Pick<NewPurchase, 'transaction_id'>,
  ): Promise<RecordedPurchase> {
    if (this.engine !== 'postgres') {
      const customer = await this.findCustomer(userId);
      if (!customer?.payment_method_id) return { customer, purchase: undefined };
      return {
        customer,
        purchase: await this.insertPendingPurchase({ ...purchase, user_id: userId, payment_method_id: customer.payment_method_id }),
      };
    }
    const { rows } = await this.#statement<{ customer: CustomerRow; purchase: PurchaseRow | null }>(RECORD_PENDING_PURCHASE, [
      userId,
      purchase.transaction_id,
      ...pendingPurchaseParameters(purchase),
      now(),
    ]);
    const row = rows[0];
    return { customer: row?.customer, purchase: row?.purchase ?? undefined };
  }

  findPurchase(transactionId: string): Promise<PurchaseRow | undefined> {
    return this.db.selectFrom('purchases').selectAll().where('transaction_id', '=', transactionId).executeTakeFirst();
  }

  /**
   * Holds a purchase's row until the transaction ends, so two replicas settling the same purchase
   * (a webhook and a lookup, a refund and a dispute) take turns: each reads what the last one wrote.
   * PostgreSQL locks the row (SELECT … FOR UPDATE); a SQLite transaction holds the database's write
   * lock from its start (BEGIN IMMEDIATE), so there is nothing more to take.
   */
  async lockPurchase(transactionId: string): Promise<void> {
    if (this.engine !== 'postgres') return;
    await this.#prepared('lockPurchase', { transactionId }, (db, a) =>
      db.selectFrom('purchases').select('id').where('transaction_id', '=', a.transactionId).forUpdate(),
    );
  }

  findPurchaseByPaymentIntent(paymentIntentId: string): Promise<PurchaseRow | undefined> {
    return this.db.selectFrom('purchases').selectAll().where('payment_intent_id', '=', paymentIntentId).executeTakeFirst();
  }

  /** A customer's purchases, every attempt, newest first. */
  listPurchases(userId: string): Promise<PurchaseRow[]> {
    return this.db.selectFrom('purchases').selectAll().where('user_id', '=', userId).orderBy('id', 'desc').execute();
  }

  /**
   * Purchases reconciliation asks Stripe about, after row `afterId`, oldest first: those still
   * waiting for an outcome, started before `startedBefore`; and those failed at 3-D Secure since
   * `failedSince`, which the customer may still pay (see mayStillSucceed).
   */
  listToReconcile(startedBefore: string, failedSince: string, afterId: number, limit: number): Promise<PurchaseRow[]> {
    return this.db
      .selectFrom('purchases')
      .selectAll()
      .where((eb) =>
        eb.or([
          eb.and([eb('status', 'in', UNFINISHED), eb('created_at', '<', startedBefore)]),
          eb.and([
            eb('status', '=', 'failed'),
            eb('created_at', '>=', failedSince),
            eb('failure_code', '=', REVIVABLE_FAILURE),
            eb('payment_intent_id', 'is not', null),
          ]),
        ]),
      )
      .where('id', '>', afterId)
      .orderBy('id')
      .limit(limit)
      .execute();
  }

  /**
   * Keeps the PaymentIntent id Stripe named for a purchase that is still waiting (a `processing`
   * payment): from then on it is asked about by id, never created again.
   */
  async learnPaymentIntent(transactionId: string, paymentIntentId: string): Promise<void> {
    await this.db
      .updateTable('purchases')
      .set({ payment_intent_id: paymentIntentId, updated_at: now() })
      .where('transaction_id', '=', transactionId)
      .where('payment_intent_id', 'is', null)
      .where('status', 'in', UNFINISHED)
      .execute();
  }

  /** Keeps the Checkout Session Stripe made for a purchase (the same one whichever call learns it). */
  async learnCheckoutSession(transactionId: string, checkoutSessionId: string): Promise<void> {
    await this.db
      .updateTable('purchases')
      .set({ checkout_session_id: checkoutSessionId, updated_at: now() })
      .where('transaction_id', '=', transactionId)
      .where('checkout_session_id', 'is', null)
      .execute();
  }

  findPurchaseByCheckoutSession(checkoutSessionId: string): Promise<PurchaseRow | undefined> {
    return this.db.selectFrom('purchases').selectAll().where('checkout_session_id', '=', checkoutSessionId).executeTakeFirst();
  }

  /**
   * Moves a purchase to `to` if its current status allows it (PURCHASE_TRANSITIONS), setting the
   * given columns too. Returns the updated row, or undefined when the move is not allowed (the
   * purchase is already there or further on): callers never regress a purchase.
   */
  async movePurchase(
    transactionId: string,
    to: PurchaseStatus,
    set: Partial<Pick<PurchaseRow, 'payment_intent_id' | 'failure_code' | 'refunded_cents'>> = {},
  ): Promise<PurchaseRow | undefined> {
    // The statement's shape depends on the target status too (the columns set are in the arguments).
    const { rows } = await this.#prepared(
      `movePurchase:${to}`,
      { ...set, transactionId, updated_at: now() },
      (db, { transactionId: id, ...columns }) =>
        db
          .updateTable('purchases')
          .set({ ...columns, status: to })
          .where('transaction_id', '=', id)
          .where('status', 'in', PURCHASE_TRANSITIONS[to])
          .returning(PURCHASE_COLUMNS),
    );
    return rows[0];
  }

  /**
   * Moves a purchase to `succeeded` (if its status allows it) and credits its coins (if its
   * PaymentIntent's credit was not posted before): movePurchase and postJournal together. Returns the
   * moved row, or undefined when the purchase was not moved (then nothing was credited and the row is
   * not held: lock it to read it); `balance` is the player's after the credit this call made. On
   * PostgreSQL one statement does it all (the row stays locked by its update until the transaction
   * ends); the unique (kind, reference) of a journal still makes the credit happen at most once.
   */
  async creditPurchase(
    transactionId: string,
    paymentIntentId: string,
    counterAccount: string,
  ): Promise<{ purchase: PurchaseRow | undefined; balance: number | undefined }> {
    if (this.engine !== 'postgres') {
      await this.lockPurchase(transactionId);
      const moved = await this.movePurchase(transactionId, 'succeeded', { payment_intent_id: paymentIntentId, failure_code: null });
      if (!moved) return { purchase: undefined, balance: undefined };
      const balance = await this.postJournal({
        kind: 'purchase',
        reference: paymentIntentId,
        userId: moved.user_id,
        transactionId,
        memo: moved.package_name,
        amount: moved.coins,
        counterAccount,
      });
      return { purchase: moved, balance };
    }
    const { rows } = await this.#statement<PurchaseRow & { new_balance: number | null }>(CREDIT_PURCHASE, [
      transactionId,
      paymentIntentId,
      now(),
      counterAccount,
      PURCHASE_TRANSITIONS.succeeded,
    ]);
    const row = rows[0];
    if (!row) return { purchase: undefined, balance: undefined };
    const { new_balance: balance, ...purchase } = row;
    return { purchase, balance: balance ?? undefined };
  }

  /** Whether creditPurchaseAnswering can run here: on PostgreSQL, outside a transaction. */
  get answersInOneStatement(): boolean {
    return this.engine === 'postgres' && !this.db.isTransaction;
  }

  /**
   * creditPurchase and what its request writes after it, in one statement with no transaction around
   * it (it commits whole or not at all; answersInOneStatement says where): the purchase moved to
   * succeeded and credited as creditPurchase does, the player's notification (`notice.data`: its JSON
   * around the coins credited and the balance; the number goes last, as insertNotification's) and,
   * with a key, the key's answer (`answer.body`: its JSON around the balance). Returns only the
   * player's balance after it (what the request answers). Undefined when the purchase was not moved:
   * then nothing was written, and the caller takes the transaction's path.
   */
  async creditPurchaseAnswering(
    credit: { transactionId: string; paymentIntentId: string; counterAccount: string },
    notice: { id: string; type: string; data: readonly [string, string, string] },
    answer: { scope: string; key: string; status: number; type: string; body: readonly [string, string] } | undefined,
  ): Promise<{ balance: number } | undefined> {
    const { rows } = await this.#statement<{ balance: number }>(CREDIT_PURCHASE_ANSWERING, [
      credit.transactionId,
      credit.paymentIntentId,
      now(),
      credit.counterAccount,
      PURCHASE_TRANSITIONS.succeeded,
      notice.id,
      notice.type,
      ...notice.data,
      answer?.scope ?? null,
      answer?.key ?? null,
      answer?.status ?? null,
      answer?.type ?? null,
      ...(answer?.body ?? [null, null]),
    ]);
    const row = rows[0];
    if (!row) return undefined;
    this.#wroteNotifications();
    return row;
  }

  // Refunds

  /** The refund an operator request recorded under `refundKey`, if any. */
  findRefundAttempt(refundKey: string): Promise<RefundRow | undefined> {
    return this.db.selectFrom('refunds').selectAll().where('refund_key', '=', refundKey).executeTakeFirst();
  }

  /**
   * Records an operator's refund before Stripe is called (as a purchase is recorded before charging),
   * or, for a retry of the same request, makes one Stripe made nothing of `requested` again.
   */
  async recordRefundAttempt(attempt: { refundKey: string; transactionId: string; requestedCents: number | null }): Promise<void> {
    const at = now();
    await this.db
      .insertInto('refunds')
      .values({
        refund_key: attempt.refundKey,
        transaction_id: attempt.transactionId,
        requested_cents: attempt.requestedCents,
        stripe_refund_id: null,
        amount_cents: null,
        status: 'requested',
        failure_reason: null,
        created_at: at,
        updated_at: at,
      })
      .onConflict((oc) =>
        oc.column('refund_key').doUpdateSet({ status: 'requested', updated_at: at }).where('refunds.status', '=', 'rejected'),
      )
      .execute();
  }

  /** Stripe made no refund for this request (it refused, or failed before doing anything). */
  async rejectRefundAttempt(refundKey: string): Promise<void> {
    await this.db
      .updateTable('refunds')
      .set({ status: 'rejected', updated_at: now() })
      .where('refund_key', '=', refundKey)
      .where('status', '=', 'requested')
      .execute();
  }

  /**
   * Records what Stripe says of one refund, found by its id or by the request that made it. Its
   * status only moves on (requested → pending → succeeded → failed or canceled), so an older
   * answer arriving late changes nothing. Call with the purchase locked.
   */
  async recordRefund(
    transactionId: string,
    refund: { id: string; amount: number; status: RefundStatus; failureReason?: string | null | undefined; refundKey?: string | undefined },
  ): Promise<void> {
    const at = now();
    const known =
      (await this.db.selectFrom('refunds').selectAll().where('stripe_refund_id', '=', refund.id).executeTakeFirst()) ??
      (refund.refundKey === undefined ? undefined : await this.findRefundAttempt(refund.refundKey));
    if (!known) {
      await this.db
        .insertInto('refunds')
        .values({
          refund_key: refund.refundKey ?? null,
          transaction_id: transactionId,
          requested_cents: null,
          stripe_refund_id: refund.id,
          amount_cents: refund.amount,
          status: refund.status,
          failure_reason: refund.failureReason ?? null,
          created_at: at,
          updated_at: at,
        })
        .execute();
      return;
    }
    const moves = REFUND_RANK[refund.status] > REFUND_RANK[known.status];
    await this.db
      .updateTable('refunds')
      .set({
        stripe_refund_id: refund.id,
        amount_cents: refund.amount,
        ...(moves ? { status: refund.status, failure_reason: refund.failureReason ?? null } : {}),
        updated_at: at,
      })
      .where('id', '=', known.id)
      .execute();
  }

  /** The Stripe refunds a purchase is known to have: their total, and the part that failed or was canceled. */
  async refundTotals(transactionId: string): Promise<{ made: number; undone: number }> {
    const rows = await this.db
      .selectFrom('refunds')
      .select(['amount_cents', 'status'])
      .where('transaction_id', '=', transactionId)
      .where('stripe_refund_id', 'is not', null)
      .execute();
    let made = 0;
    let undone = 0;
    for (const row of rows) {
      const amount = Number(row.amount_cents ?? 0);
      made += amount;
      if (row.status === 'failed' || row.status === 'canceled') undone += amount;
    }
    return { made, undone };
  }

  /** A Stripe Charge was seen with `amountRefunded` refunded in all: kept if it is the largest yet. */
  async raiseStripeRefunded(transactionId: string, amountRefunded: number): Promise<void> {
    await this.db
      .updateTable('purchases')
      .set({ stripe_refunded_cents: amountRefunded })
      .where('transaction_id', '=', transactionId)
      .where('stripe_refunded_cents', '<', amountRefunded)
      .execute();
  }

  /**
   * Sets what is refunded of a purchase, up or down, and (unless a dispute holds the status) the
   * status it gives among REFUND_SETTLED: the one backward edge of a purchase's life (see schema).
   */
  async setRefunded(transactionId: string, refundedCents: number, status: PurchaseStatus): Promise<void> {
    const at = now();
    await this.db
      .updateTable('purchases')
      .set({ refunded_cents: refundedCents, updated_at: at })
      .where('transaction_id', '=', transactionId)
      .where('refunded_cents', '!=', refundedCents)
      .execute();
    await this.db
      .updateTable('purchases')
      .set({ status, updated_at: at })
      .where('transaction_id', '=', transactionId)
      .where('status', 'in', REFUND_SETTLED)
      .where('status', '!=', status)
      .execute();
  }

  /** Operator refunds still `requested` (Stripe's answer never recorded), recorded before `startedBefore`, after row `afterId`. */
  listUnfinishedRefunds(startedBefore: string, afterId: number, limit: number): Promise<RefundRow[]> {
    return this.db
      .selectFrom('refunds')
      .selectAll()
      .where('status', '=', 'requested')
      .where('created_at', '<', startedBefore)
      .where('id', '>', afterId)
      .orderBy('id')
      .limit(limit)
      .execute();
  }

  // Ledger

  /**
   * Posts one balanced movement: the player's entry and its counter-entry, and the balance column,
   * together. Returns the new balance, or undefined when this (kind, reference) was posted before —
   * the unique constraint is what makes every credit and clawback happen at most once.
   */
  async postJournal(input: JournalInput): Promise<number | undefined> {
    if (this.engine === 'postgres') return this.#postJournalInOneStatement(input);
    const at = now();
    const journalRow = {
      kind: input.kind,
      reference: input.reference,
      user_id: input.userId,
      transaction_id: input.transactionId,
      memo: input.memo ?? null,
      created_at: at,
    };
    const {
      rows: [journal],
    } = await this.#prepared('postJournal:journal', journalRow, (db, a) =>
      db
        .insertInto('ledger_journals')
        .values(a)
        .onConflict((oc) => oc.columns(['kind', 'reference']).doNothing())
        .returning('id'),
    );
    if (!journal) return undefined;

    const credit = { amount: input.amount, userId: input.userId };
    const {
      rows: [updated],
    } = input.mustNotOverdraw
      ? await this.#prepared('postJournal:debit', { ...credit, atLeast: -input.amount }, (db, a) =>
          db
            .updateTable('customers')
            .set((eb) => ({ currency_balance: eb('currency_balance', '+', a.amount) }))
            .where('user_id', '=', a.userId)
            .where('currency_balance', '>=', a.atLeast)
            .returning('currency_balance'),
        )
      : await this.#prepared('postJournal:credit', credit, (db, a) =>
          db
            .updateTable('customers')
            .set((eb) => ({ currency_balance: eb('currency_balance', '+', a.amount) }))
            .where('user_id', '=', a.userId)
            .returning('currency_balance'),
        );
    if (!updated) {
      const customer = await this.findCustomer(input.userId);
      if (!customer) throw new Error(`ledger: no customer ${input.userId}`);
      throw new InsufficientBalance(customer.currency_balance);
    }
    const entries = {
      journal: journal.id,
      player: playerAccount(input.userId),
      amount: input.amount,
      balance: updated.currency_balance,
      counterAccount: input.counterAccount,
      counterAmount: -input.amount,
      at,
    };
    await this.#prepared('postJournal:entries', entries, (db, a) =>
      db.insertInto('ledger_entries').values([
        { journal_id: a.journal, account: a.player, amount: a.amount, balance_after: a.balance, created_at: a.at },
        { journal_id: a.journal, account: a.counterAccount, amount: a.counterAmount, balance_after: null, created_at: a.at },
      ]),
    );
    return updated.currency_balance;
  }

  /**
   * postJournal on PostgreSQL: the journal, the balance and both entries in one statement. A debit
   * that would overdraw (or a customer that does not exist) leaves the balance alone and throws, which
   * rolls the transaction back with the journal row this statement wrote; so it runs in one.
   */
  async #postJournalInOneStatement(input: JournalInput): Promise<number | undefined> {
    if (!this.db.isTransaction) return this.transaction((tx) => tx.postJournal(input));
    const { rows } = await this.#statement<{ journal_id: number | null; balance: number | null }>(POST_JOURNAL, [
      input.kind,
      input.reference,
      input.userId,
      input.transactionId,
      input.memo ?? null,
      now(),
      input.amount,
      input.mustNotOverdraw ? -input.amount : Number.MIN_SAFE_INTEGER,
      playerAccount(input.userId),
      input.counterAccount,
    ]);
    const row = rows[0];
    if (!row || row.journal_id === null) return undefined;
    if (row.balance !== null) return row.balance;
    const customer = await this.findCustomer(input.userId);
    if (!customer) throw new Error(`ledger: no customer ${input.userId}`);
    throw new InsufficientBalance(customer.currency_balance);
  }

  /** Coins the player's journals of these kinds moved for one purchase (negative for clawbacks). */
  async journalTotal(transactionId: string, kinds: JournalKind[]): Promise<number> {
    const row = await this.db
      .selectFrom('ledger_entries')
      .innerJoin('ledger_journals', 'ledger_journals.id', 'ledger_entries.journal_id')
      .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('ledger_entries.amount'), eb.lit(0)).as('total'))
      .where('ledger_journals.transaction_id', '=', transactionId)
      .where('ledger_journals.kind', 'in', kinds)
      .where('ledger_entries.account', 'like', 'player:%')
      .executeTakeFirstOrThrow();
    return Number(row.total);
  }

  /** The player's entries, newest first, `limit` at a time, before entry id `before` when given. */
  listLedger(userId: string, options: { before?: number; limit: number }): Promise<LedgerLine[]> {
    let query = this.db
      .selectFrom('ledger_entries')
      .innerJoin('ledger_journals', 'ledger_journals.id', 'ledger_entries.journal_id')
      .select([
        'ledger_entries.id as entry_id',
        'ledger_entries.amount',
        'ledger_entries.balance_after',
        'ledger_journals.kind',
        'ledger_journals.reference',
        'ledger_journals.transaction_id',
        'ledger_journals.memo',
        'ledger_entries.created_at',
      ])
      .where('ledger_entries.account', '=', playerAccount(userId))
      .orderBy('ledger_entries.id', 'desc')
      .limit(options.limit);
    if (options.before !== undefined) query = query.where('ledger_entries.id', '<', options.before);
    return query.execute() as Promise<LedgerLine[]>;
  }

  /** Customers whose balance column differs from the sum of their ledger entries. */
  async balanceMismatches(): Promise<{ user_id: string; balance: number; ledger: number }[]> {
    const sums = await this.db
      .selectFrom('ledger_entries')
      .select(['account', (eb) => eb.fn.sum<number>('amount').as('total')])
      .where('account', 'like', 'player:%')
      .groupBy('account')
      .execute();
    const ledger = new Map(sums.map((row) => [row.account, Number(row.total)]));
    const customers = await this.db.selectFrom('customers').select(['user_id', 'currency_balance']).execute();
    return customers
      .map((c) => ({ user_id: c.user_id, balance: Number(c.currency_balance), ledger: ledger.get(playerAccount(c.user_id)) ?? 0 }))
      .filter((c) => c.balance !== c.ledger);
  }

  /** Journals whose entries do not sum to zero (there should never be any). */
  async unbalancedJournals(): Promise<number[]> {
    const rows = await this.db
      .selectFrom('ledger_entries')
      .select(['journal_id', (eb) => eb.fn.sum<number>('amount').as('total')])
      .groupBy('journal_id')
      .having((eb) => eb.fn.sum('amount'), '!=', 0)
      .execute();
    return rows.map((r) => r.journal_id);
  }

  // Idempotency keys

  /**
   * Claims an Idempotency-Key for one request: a new key is reserved with `resourceId`; a key whose
   * request finished is replayed; one still held by a live request is `in_use`; one whose request
   * died or gave up (unlocked, or locked longer than `lockTimeoutMs`) is taken over, with the
   * resource id the first request reserved, so the retry finishes that work instead of starting new.
   * `onReserved` runs in the same transaction when a new key is reserved, so a route's first write
   * (a pending purchase) commits with the key: one commit, one fsync, instead of two.
   */
  async reserveKey(input: KeyInput, onReserved?: (tx: Store, resourceId: string) => Promise<void>): Promise<Reservation> {
    // On PostgreSQL a new key with nothing to write beside it is one statement, no transaction around it.
    if (this.engine === 'postgres' && onReserved === undefined && !this.db.isTransaction) {
      const {
        rows: [inserted],
      } = await this.#statement<{ resource_id: string }>(INSERT_KEY, [input.scope, input.key, input.hash, input.resourceId, now()]);
      if (inserted) return { kind: 'reserved', resourceId: inserted.resource_id, resumed: false };
    }
    return this.#reserveKeyInTransaction(input, onReserved);
  }

  /** reserveKey in a transaction that reads an existing key (and runs `onReserved` with a new one). */
  #reserveKeyInTransaction(input: KeyInput, onReserved?: (tx: Store, resourceId: string) => Promise<void>): Promise<Reservation> {
    return this.transaction(async (tx) => {
      const at = now();
      const key = {
        scope: input.scope,
        key: input.key,
        request_hash: input.hash,
        resource_id: input.resourceId,
        locked_at: at,
        created_at: at,
      };
      const {
        rows: [inserted],
      } = await tx.#prepared('reserveKey', key, (db, a) =>
        db
          .insertInto('idempotency_keys')
          .values({ ...a, state: 'in_progress', response_status: null, response_type: null, response_body: null })
          .onConflict((oc) => oc.columns(['scope', 'key']).doNothing())
          .returning('resource_id'),
      );
      if (inserted) {
        await onReserved?.(tx, inserted.resource_id);
        return { kind: 'reserved', resourceId: inserted.resource_id, resumed: false };
      }

      const row = await tx.db
        .selectFrom('idempotency_keys')
        .selectAll()
        .where('scope', '=', input.scope)
        .where('key', '=', input.key)
        .executeTakeFirstOrThrow();
      if (row.request_hash !== input.hash) return { kind: 'mismatch' };
      if (row.state === 'completed') return { kind: 'replay', row };
      const staleBefore = new Date(Date.now() - input.lockTimeoutMs).toISOString();
      const taken = await tx.db
        .updateTable('idempotency_keys')
        .set({ locked_at: at })
        .where('scope', '=', input.scope)
        .where('key', '=', input.key)
        .where('state', '=', 'in_progress')
        .where((eb) => eb.or([eb('locked_at', 'is', null), eb('locked_at', '<', staleBefore)]))
        .returning('resource_id')
        .executeTakeFirst();
      return taken ? { kind: 'reserved', resourceId: taken.resource_id, resumed: true } : { kind: 'in_use' };
    });
  }

  /**
   * reserveKey with, for a new key, recordPendingPurchase under the id it reserves: on PostgreSQL the
   * key, the customer and the pending purchase in one statement with no transaction around it (it
   * commits as a whole or not at all). `recorded` is undefined when the key was not new.
   */
  async reserveKeyRecordingPurchase(
    input: KeyInput,
    userId: string,
    purchase: PendingPurchaseFields,
  ): Promise<{ reservation: Reservation; recorded: RecordedPurchase | undefined }> {
    if (this.engine !== 'postgres' || this.db.isTransaction) {
      let recorded: RecordedPurchase | undefined;
      const reservation = await this.reserveKey(input, async (tx, resourceId) => {
        recorded = await tx.recordPendingPurchase(userId, { ...purchase, transaction_id: resourceId });
      });
      return { reservation, recorded };
    }
    const { rows } = await this.#statement<{ reserved: string | null; customer: CustomerRow | null; purchase: PurchaseRow | null }>(
      RESERVE_KEY_RECORDING_PURCHASE,
      [input.scope, input.key, input.hash, input.resourceId, now(), userId, ...pendingPurchaseParameters(purchase)],
    );
    const row = rows[0];
    // The key exists (a retry, a replay, a reuse): read it, without trying the insert alone again.
    if (row?.reserved == null) return { reservation: await this.#reserveKeyInTransaction(input), recorded: undefined };
    return {
      reservation: { kind: 'reserved', resourceId: row.reserved, resumed: false },
      recorded: { customer: row.customer ?? undefined, purchase: row.purchase ?? undefined },
    };
  }

  /** Records the response a key replays. Only the request holding the key can complete it. */
  async completeKey(scope: string, key: string, response: { status: number; type: string; body: string }): Promise<void> {
    await this.#prepared(
      'completeKey',
      { scope, key, ...response },
      (db, a) =>
        db
          .updateTable('idempotency_keys')
          .set({ state: 'completed', locked_at: null, response_status: a.status, response_type: a.type, response_body: a.body })
          .where('scope', '=', a.scope)
          .where('key', '=', a.key)
          .where('state', '=', 'in_progress'),
      // Nothing reads its answer: it travels with the transaction's next statement or its COMMIT.
      { writeBehind: true },
    );
  }

  /** Lets go of a key without an answer (the outcome is not known yet): a retry takes it over. */
  async releaseKey(scope: string, key: string): Promise<void> {
    await this.db
      .updateTable('idempotency_keys')
      .set({ locked_at: null })
      .where('scope', '=', scope)
      .where('key', '=', key)
      .where('state', '=', 'in_progress')
      .execute();
  }

  /** Forgets keys created before `createdBefore`; returns how many. */
  async sweepKeys(createdBefore: string): Promise<number> {
    const result = await this.db.deleteFrom('idempotency_keys').where('created_at', '<', createdBefore).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  // Disputes

  /**
   * Records what an event says of one dispute on a purchase: a new dispute as it is, a known one only
   * when its status moved forward (`isForward(current)`), so a late or redelivered event about an
   * earlier state changes nothing. Call it holding the purchase (lockPurchase).
   */
  async recordDispute(
    dispute: { disputeId: string; transactionId: string; status: DisputeStatus },
    isForward: (current: DisputeStatus) => boolean,
  ): Promise<void> {
    const at = now();
    const inserted = await this.db
      .insertInto('disputes')
      .values({
        dispute_id: dispute.disputeId,
        transaction_id: dispute.transactionId,
        status: dispute.status,
        created_at: at,
        updated_at: at,
      })
      .onConflict((oc) => oc.column('dispute_id').doNothing())
      .returning('dispute_id')
      .executeTakeFirst();
    if (inserted) return;
    const known = await this.db
      .selectFrom('disputes')
      .select('status')
      .where('dispute_id', '=', dispute.disputeId)
      .executeTakeFirstOrThrow();
    if (!isForward(known.status)) return;
    await this.db
      .updateTable('disputes')
      .set({ status: dispute.status, updated_at: at })
      .where('dispute_id', '=', dispute.disputeId)
      .where('status', '=', known.status)
      .execute();
  }

  /** Every dispute a purchase's charge has met, oldest first. */
  listDisputes(transactionId: string): Promise<DisputeRow[]> {
    return this.db
      .selectFrom('disputes')
      .selectAll()
      .where('transaction_id', '=', transactionId)
      .orderBy('created_at')
      .orderBy('dispute_id')
      .execute();
  }

  // Webhook events

  /** Records an event id; false when it was recorded before (the event is a duplicate). */
  async recordEvent(eventId: string, type: string): Promise<boolean> {
    const inserted = await this.db
      .insertInto('webhook_events')
      .values({ event_id: eventId, type, received_at: now() })
      .onConflict((oc) => oc.column('event_id').doNothing())
      .returning('event_id')
      .executeTakeFirst();
    return inserted !== undefined;
  }

  // Notifications (the outbox)

  /**
   * Writes a notification in the caller's transaction, numbered after the player's last one. Taking
   * the number updates the player's row, which holds it until the transaction ends: one player's
   * notifications are numbered in commit order, with no gaps and no duplicates.
   */
  async insertNotification(input: { id: string; type: string; userId: string; data: Record<string, unknown> }): Promise<void> {
    const at = now();
    if (this.engine === 'postgres') {
      // One statement takes the number and writes the row; nothing reads its answer, so it travels
      // with the transaction's next statement. An unknown customer gives no number: user_seq NOT NULL refuses the row.
      const body = JSON.stringify(input.data);
      await this.#statement(INSERT_NOTIFICATION, [input.userId, input.id, input.type, body === '{}' ? '{' : `${body.slice(0, -1)},`, at], {
        writeBehind: true,
      });
      this.#wroteNotifications();
      return;
    }
    const { rows } = await this.#prepared('nextNotificationSeq', { userId: input.userId }, (db, a) =>
      db
        .updateTable('customers')
        .set((eb) => ({ notification_seq: eb('notification_seq', '+', 1) }))
        .where('user_id', '=', a.userId)
        .returning('notification_seq'),
    );
    const userSeq = rows[0]?.notification_seq;
    if (userSeq === undefined) throw new Error(`notification for unknown customer ${input.userId}`);
    const row = {
      id: input.id,
      type: input.type,
      user_id: input.userId,
      user_seq: Number(userSeq),
      data: JSON.stringify({ ...input.data, sequence: Number(userSeq) }),
      created_at: at,
      status: 'pending' as const,
      attempts: 0,
      last_attempt_at: null,
      last_error: null,
      next_attempt_at: at,
      retry_from: at,
      lease_until: null,
      delivered_at: null,
    };
    await this.#prepared('insertNotification', row, (db, a) => db.insertInto('notifications').values(a));
    this.#wroteNotifications();
  }

  /** The feed, newest first: `limit` notifications before `before` (a seq), of a type and status when given. */
  listNotifications(options: {
    limit: number;
    before?: number | undefined;
    type?: string | undefined;
    status?: NotificationStatus | undefined;
  }) {
    let query = this.db.selectFrom('notifications').selectAll().orderBy('seq', 'desc').limit(options.limit);
    if (options.before !== undefined) query = query.where('seq', '<', options.before);
    if (options.type !== undefined) query = query.where('type', '=', options.type);
    if (options.status !== undefined) query = query.where('status', '=', options.status);
    return query.execute();
  }

  findNotification(id: string): Promise<NotificationRow | undefined> {
    return this.db.selectFrom('notifications').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /**
   * Takes up to `limit` pending notifications that are due and not held by another sender (or whose
   * holder's lease ran out: it died mid-delivery), holding each until `leaseUntil`, and counts the
   * attempt. On PostgreSQL replicas skip the rows another replica is taking at the same moment
   * (FOR UPDATE SKIP LOCKED); a SQLite database has one writer at a time.
   */
  async claimNotifications(options: {
    at: string;
    leaseUntil: string;
    limit: number;
    types: readonly string[] | undefined;
  }): Promise<NotificationRow[]> {
    return this.transaction(async (tx) => {
      let due = tx.db
        .selectFrom('notifications')
        .select('seq')
        .where('status', '=', 'pending')
        .where('next_attempt_at', '<=', options.at)
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', options.at)]))
        .orderBy('next_attempt_at')
        .limit(options.limit);
      if (options.types !== undefined) due = due.where('type', 'in', options.types);
      if (tx.engine === 'postgres') due = due.forUpdate().skipLocked();
      const seqs = (await due.execute()).map((row) => row.seq);
      if (seqs.length === 0) return [];
      return tx.db
        .updateTable('notifications')
        .set((eb) => ({ lease_until: options.leaseUntil, attempts: eb('attempts', '+', 1), last_attempt_at: options.at }))
        .where('seq', 'in', seqs)
        .returningAll()
        .execute();
    });
  }

  /**
   * Records how a batch of attempts went, for those this sender still holds (`leaseUntil` is the
   * lease it took): delivered, or when to try again, or failed for good. One transaction.
   */
  async settleNotifications(
    leaseUntil: string,
    outcomes: readonly (
      { id: string; status: 'delivered'; at: string } | { id: string; status: 'pending' | 'failed'; error: string; nextAttemptAt: string }
    )[],
  ): Promise<void> {
    const delivered = outcomes.filter((o) => o.status === 'delivered');
    await this.transaction(async (tx) => {
      const held = tx.db.updateTable('notifications').where('lease_until', '=', leaseUntil);
      if (delivered.length > 0) {
        await held
          .set({ status: 'delivered', delivered_at: delivered[0]?.at ?? now(), last_error: null, lease_until: null })
          .where(
            'id',
            'in',
            delivered.map((o) => o.id),
          )
          .execute();
      }
      for (const o of outcomes) {
        if (o.status === 'delivered') continue;
        await held
          .set({ status: o.status, last_error: o.error.slice(0, 500), next_attempt_at: o.nextAttemptAt, lease_until: null })
          .where('id', '=', o.id)
          .execute();
      }
    });
  }

  /**
   * Queues a notification to be sent again now, whatever its status, with a new retry series; not
   * while a sender holds it (that attempt is still under way). Returns the row, or why not.
   */
  async redeliverNotification(id: string, at: string): Promise<NotificationRow | 'not_found' | 'in_flight'> {
    const updated = await this.db
      .updateTable('notifications')
      .set({ status: 'pending', next_attempt_at: at, retry_from: at })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', at)]))
      .returningAll()
      .executeTakeFirst();
    if (updated) {
      this.#wroteNotifications();
      return updated;
    }
    return (await this.findNotification(id)) ? 'in_flight' : 'not_found';
  }

  /** How many notifications wait to be sent (of `types`, when given), and since when the oldest. */
  async undeliveredNotifications(types: readonly string[] | undefined): Promise<{ count: number; oldest: string | null }> {
    let query = this.db
      .selectFrom('notifications')
      .select((eb) => [eb.fn.countAll<number>().as('count'), eb.fn.min('created_at').as('oldest')])
      .where('status', '=', 'pending');
    if (types !== undefined) query = query.where('type', 'in', types);
    const row = await query.executeTakeFirstOrThrow();
    return { count: Number(row.count), oldest: row.oldest ?? null };
  }
}

/** The columns of a purchase row, as a SELECT or RETURNING list. */
const PURCHASE_LIST = PURCHASE_COLUMNS.map((column) => `"${column}"`).join(', ');

/**
 * The first two steps of a credit, as CTEs: the purchase moves to succeeded (if its status allows;
 * `moved`), and its journal is written unless one exists for the PaymentIntent (`journal`). $1
 * transaction id, $2 PaymentIntent id, $3 time, $5 the statuses a purchase may succeed from.
 */
const SUCCEED_AND_JOURNAL = `moved AS (
  UPDATE purchases SET status = 'succeeded', payment_intent_id = $2, failure_code = NULL, updated_at = $3
  WHERE transaction_id = $1 AND status = ANY($5::text[])
  RETURNING ${PURCHASE_LIST}
), journal AS (
  INSERT INTO ledger_journals (kind, reference, user_id, transaction_id, memo, created_at)
  SELECT 'purchase', $2, user_id, transaction_id, package_name, $3 FROM moved
  ON CONFLICT (kind, reference) DO NOTHING
  RETURNING id
)`;

/**
 * creditPurchase on PostgreSQL, in one statement: the purchase moves to succeeded (if its status
 * allows), its journal is written unless one exists for the PaymentIntent (the unique (kind, reference)),
 * and only then the balance and both entries. $1 transaction id, $2 PaymentIntent id, $3 time,
 * $4 counter-account, $5 the statuses a purchase may succeed from.
 */
const CREDIT_PURCHASE = `WITH ${SUCCEED_AND_JOURNAL}, balance AS (
  UPDATE customers SET currency_balance = customers.currency_balance + moved.coins
  FROM moved, journal WHERE customers.user_id = moved.user_id
  RETURNING customers.currency_balance
), entries AS (
  INSERT INTO ledger_entries (journal_id, account, amount, balance_after, created_at)
  SELECT journal.id, 'player:' || moved.user_id, moved.coins, balance.currency_balance, $3 FROM journal, moved, balance
  UNION ALL
  SELECT journal.id, $4::text, -moved.coins, NULL, $3 FROM journal, moved, balance
)
SELECT moved.*, (SELECT currency_balance FROM balance) AS new_balance FROM moved`;

/**
 * creditPurchaseAnswering's statement: CREDIT_PURCHASE, then with the player's row updated once (a
 * row updated twice in one statement keeps only one change) the balance and the notification's
 * number, the notification, and the key's answer. A customer row missing leaves user_seq null, which
 * NOT NULL refuses: the statement fails and writes nothing. $1–$5 as CREDIT_PURCHASE's, $6 the
 * notification's id, $7 its type, $8–$10 its data around the coins and the balance (the last part
 * without the closing brace), $11 key scope, $12 key, $13 answer status, $14 type, $15–$16 its body
 * around the balance (null: no key).
 */
const CREDIT_PURCHASE_ANSWERING = `WITH ${SUCCEED_AND_JOURNAL}, credit AS (
  SELECT moved.user_id, CASE WHEN EXISTS (SELECT 1 FROM journal) THEN moved.coins ELSE 0 END AS coins FROM moved
), player AS (
  UPDATE customers SET currency_balance = customers.currency_balance + credit.coins, notification_seq = customers.notification_seq + 1
  FROM credit WHERE customers.user_id = credit.user_id
  RETURNING customers.currency_balance AS balance, customers.notification_seq AS seq
), entries AS (
  INSERT INTO ledger_entries (journal_id, account, amount, balance_after, created_at)
  SELECT journal.id, 'player:' || moved.user_id, moved.coins, player.balance, $3 FROM journal, moved, player
  UNION ALL
  SELECT journal.id, $4::text, -moved.coins, NULL, $3 FROM journal, moved, player
), notice AS (
  INSERT INTO notifications (id, type, user_id, user_seq, data, created_at, status, attempts, next_attempt_at, retry_from)
  SELECT $6, $7, moved.user_id, player.seq,
    $8::text || credit.coins || $9::text || player.balance || $10::text || '"sequence":' || player.seq || '}', $3, 'pending', 0, $3, $3
  FROM moved CROSS JOIN credit LEFT JOIN player ON true
), answer AS (
  UPDATE idempotency_keys SET state = 'completed', locked_at = NULL, response_status = $13::int, response_type = $14::text,
    response_body = $15::text || player.balance || $16::text
  FROM player WHERE scope = $11::text AND key = $12::text AND state = 'in_progress'
)
SELECT player.balance FROM moved LEFT JOIN player ON true`;

/**
 * postJournal on PostgreSQL, in one statement: the journal unless one exists for (kind, reference),
 * then the balance, only if it stays at or above $8, then both entries. $1 kind, $2 reference,
 * $3 user, $4 transaction id, $5 memo, $6 time, $7 amount, $8 the lowest balance allowed before it,
 * $9 the player's account, $10 the counter-account.
 */
const POST_JOURNAL = `WITH journal AS (
  INSERT INTO ledger_journals (kind, reference, user_id, transaction_id, memo, created_at)
  VALUES ($1, $2, $3, $4, $5, $6)
  ON CONFLICT (kind, reference) DO NOTHING
  RETURNING id
), balance AS (
  UPDATE customers SET currency_balance = customers.currency_balance + $7::bigint
  FROM journal WHERE customers.user_id = $3 AND customers.currency_balance >= $8::bigint
  RETURNING customers.currency_balance
), entries AS (
  INSERT INTO ledger_entries (journal_id, account, amount, balance_after, created_at)
  SELECT journal.id, $9::text, $7::bigint, balance.currency_balance, $6 FROM journal, balance
  UNION ALL
  SELECT journal.id, $10::text, -$7::bigint, NULL, $6 FROM journal, balance
)
SELECT (SELECT id FROM journal) AS journal_id, (SELECT currency_balance FROM balance) AS balance`;

/**
 * insertNotification on PostgreSQL: the player's next number and the row in one statement. $1 user,
 * $2 id, $3 type, $4 the data's JSON without its closing brace (the number goes last, as "sequence"),
 * $5 time.
 */
const INSERT_NOTIFICATION = `WITH numbered AS (
  UPDATE customers SET notification_seq = notification_seq + 1 WHERE user_id = $1 RETURNING notification_seq
)
INSERT INTO notifications (id, type, user_id, user_seq, data, created_at, status, attempts, next_attempt_at, retry_from)
SELECT $2, $3, $1, numbered.notification_seq, $4::text || '"sequence":' || numbered.notification_seq || '}', $5, 'pending', 0, $5, $5
FROM (SELECT 1) AS one LEFT JOIN numbered ON true`;

/** A pending purchase's own fields, in the order RECORD_PENDING_PURCHASE and RESERVE_KEY_RECORDING_PURCHASE take them. */
const pendingPurchaseParameters = (purchase: PendingPurchaseFields) => [
  purchase.package_id,
  purchase.package_name,
  purchase.amount_cents,
  purchase.currency,
  purchase.coins,
  purchase.payment_intent_id,
  purchase.failure_code,
];

/** A new Idempotency-Key, unless the caller's key exists. $1 scope, $2 key, $3 request hash, $4 resource id, $5 time. */
const INSERT_KEY = `INSERT INTO idempotency_keys (scope, key, request_hash, resource_id, locked_at, created_at, state,
  response_status, response_type, response_body)
VALUES ($1, $2, $3, $4, $5, $5, 'in_progress', NULL, NULL, NULL)
ON CONFLICT (scope, key) DO NOTHING
RETURNING resource_id`;

const CUSTOMER_LIST = CUSTOMER_COLUMNS.map((column) => `"${column}"`).join(', ');

/**
 * reserveKeyRecordingPurchase on PostgreSQL: a new key (INSERT_KEY) and, only when it is new, the
 * customer and their pending purchase under the key's resource id (RECORD_PENDING_PURCHASE). `reserved`
 * is null when the key existed, and then nothing was written. $1–$5 as INSERT_KEY's, $6 user,
 * $7 package id, $8 package name, $9 amount, $10 currency, $11 coins, $12 PaymentIntent id,
 * $13 failure code.
 */
const RESERVE_KEY_RECORDING_PURCHASE = `WITH reserved AS (
  ${INSERT_KEY.replaceAll('\n', '\n  ')}
), customer AS (
  SELECT ${CUSTOMER_LIST} FROM customers WHERE user_id = $6 AND EXISTS (SELECT 1 FROM reserved)
), purchase AS (
  INSERT INTO purchases (transaction_id, user_id, package_id, package_name, amount_cents, currency, coins, payment_method_id,
    payment_intent_id, failure_code, status, refunded_cents, stripe_refunded_cents, created_at, updated_at)
  SELECT reserved.resource_id, customer.user_id, $7, $8, $9, $10, $11, customer.payment_method_id, $12, $13, 'pending', 0, 0, $5, $5
  FROM reserved, customer WHERE customer.payment_method_id IS NOT NULL
  RETURNING ${PURCHASE_LIST}
)
SELECT reserved.resource_id AS reserved, row_to_json(customer) AS customer, row_to_json(purchase) AS purchase
FROM (SELECT 1) AS one LEFT JOIN reserved ON true LEFT JOIN customer ON true LEFT JOIN purchase ON true`;

/**
 * recordPendingPurchase on PostgreSQL: the customer, and the pending purchase made with their saved
 * card, in one statement; each comes back as JSON (a customer's and a purchase's columns share names).
 * $1 user, $2 transaction id, $3 package id, $4 package name, $5 amount, $6 currency, $7 coins,
 * $8 PaymentIntent id, $9 failure code, $10 time.
 */
const RECORD_PENDING_PURCHASE = `WITH customer AS (
  SELECT ${CUSTOMER_LIST} FROM customers WHERE user_id = $1
), purchase AS (
  INSERT INTO purchases (transaction_id, user_id, package_id, package_name, amount_cents, currency, coins, payment_method_id,
    payment_intent_id, failure_code, status, refunded_cents, stripe_refunded_cents, created_at, updated_at)
  SELECT $2, customer.user_id, $3, $4, $5, $6, $7, customer.payment_method_id, $8, $9, 'pending', 0, 0, $10, $10
  FROM customer WHERE customer.payment_method_id IS NOT NULL
  RETURNING ${PURCHASE_LIST}
)
SELECT row_to_json(customer) AS customer, row_to_json(purchase) AS purchase FROM customer LEFT JOIN purchase ON true`;
