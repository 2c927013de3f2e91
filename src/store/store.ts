import type { Kysely, Transaction } from 'kysely';
import type { CustomerRow, Database, LedgerReason, NewPurchase, PurchaseRow, PurchaseStatus } from './schema.js';

const now = () => new Date().toISOString();

/** Statuses a purchase may still leave; anything else is final for the purposes of settling it. */
const UNSETTLED: PurchaseStatus[] = ['pending', 'requires_action'];

export interface SettledPurchase {
  purchase: PurchaseRow;
  /** The customer's balance after this call (credited now, or earlier by another path). */
  balance: number;
}

/** Every read and write coinshop makes, in one place, over Kysely. */
export class Store {
  constructor(readonly db: Kysely<Database>) {}

  async insertCustomer(customer: Omit<CustomerRow, 'currency_balance' | 'payment_method_id' | 'created_at'>) {
    const row: CustomerRow = { ...customer, payment_method_id: null, currency_balance: 0, created_at: now() };
    await this.db.insertInto('customers').values(row).execute();
    return row;
  }

  findCustomer(userId: string): Promise<CustomerRow | undefined> {
    return this.db.selectFrom('customers').selectAll().where('user_id', '=', userId).executeTakeFirst();
  }

  async setPaymentMethod(userId: string, paymentMethodId: string): Promise<void> {
    await this.db
      .updateTable('customers')
      .set({ payment_method_id: paymentMethodId })
      .where('user_id', '=', userId)
      .execute();
  }

  /** Records a purchase before the provider is called (money invariant 3). */
  async insertPendingPurchase(purchase: Omit<NewPurchase, 'status' | 'created_at' | 'updated_at'>) {
    const at = now();
    await this.db
      .insertInto('purchases')
      .values({ ...purchase, status: 'pending', created_at: at, updated_at: at })
      .execute();
  }

  /** pending → requires_action, remembering the PaymentIntent. */
  async markRequiresAction(transactionId: string, paymentIntentId: string): Promise<void> {
    await this.db
      .updateTable('purchases')
      .set({ status: 'requires_action', payment_intent_id: paymentIntentId, updated_at: now() })
      .where('transaction_id', '=', transactionId)
      .where('status', '=', 'pending')
      .execute();
  }

  /** An unsettled purchase → failed. A settled one is left as it is. */
  async markFailed(transactionId: string, failureCode: string, paymentIntentId: string | undefined): Promise<void> {
    await this.db
      .updateTable('purchases')
      .set({
        status: 'failed',
        failure_code: failureCode,
        updated_at: now(),
        ...(paymentIntentId ? { payment_intent_id: paymentIntentId } : {}),
      })
      .where('transaction_id', '=', transactionId)
      .where('status', 'in', UNSETTLED)
      .execute();
  }

  /**
   * An unsettled purchase → succeeded, and its coins credited, in one transaction. Safe to call from
   * any path any number of times: only the call that moves the purchase writes the ledger entry, and
   * the ledger's unique (reason, reference) makes a second credit for the PaymentIntent impossible.
   */
  async settleSucceeded(transactionId: string, paymentIntentId: string): Promise<SettledPurchase> {
    return this.db.transaction().execute(async (trx) => {
      const moved = await trx
        .updateTable('purchases')
        .set({ status: 'succeeded', payment_intent_id: paymentIntentId, failure_code: null, updated_at: now() })
        .where('transaction_id', '=', transactionId)
        .where('status', 'in', UNSETTLED)
        .returningAll()
        .executeTakeFirst();
      if (moved) {
        const balance = await postLedgerEntry(trx, {
          user_id: moved.user_id,
          amount: moved.coins,
          reason: 'purchase',
          reference: paymentIntentId,
          transaction_id: transactionId,
        });
        return { purchase: moved, balance };
      }
      const purchase = await trx
        .selectFrom('purchases')
        .selectAll()
        .where('transaction_id', '=', transactionId)
        .executeTakeFirstOrThrow();
      const { currency_balance } = await trx
        .selectFrom('customers')
        .select('currency_balance')
        .where('user_id', '=', purchase.user_id)
        .executeTakeFirstOrThrow();
      return { purchase, balance: currency_balance };
    });
  }

  /** A customer's purchases, every attempt, newest first. */
  listPurchases(userId: string): Promise<PurchaseRow[]> {
    return this.db.selectFrom('purchases').selectAll().where('user_id', '=', userId).orderBy('id', 'desc').execute();
  }

  close(): Promise<void> {
    return this.db.destroy();
  }
}

/**
 * The only way a balance changes: an append-only ledger entry and the balance update, in the caller's
 * transaction. Returns the new balance.
 */
async function postLedgerEntry(
  trx: Transaction<Database>,
  entry: { user_id: string; amount: number; reason: LedgerReason; reference: string; transaction_id: string | null },
): Promise<number> {
  await trx.insertInto('ledger_entries').values({ ...entry, created_at: now() }).execute();
  const { currency_balance } = await trx
    .updateTable('customers')
    .set((eb) => ({ currency_balance: eb('currency_balance', '+', entry.amount) }))
    .where('user_id', '=', entry.user_id)
    .returning('currency_balance')
    .executeTakeFirstOrThrow();
  return currency_balance;
}
