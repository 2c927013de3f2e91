import type { SpendResult } from '../../schemas/ledger.js';
import { customerNotFound, ProblemError } from '../errors.js';
import { completeIdempotency, type IdempotencyContext } from './idempotency.js';
import { InsufficientBalance, type Store } from '../store/store.js';
import { notifySpend } from './notifications.js';
import { COUNTER_ACCOUNTS } from './settlement.js';

/**
 * Spends coins on an in-game item. The debit, its ledger entries and the Idempotency-Key's answer
 * commit together; a balance can never go below zero through a spend (the update is conditional).
 */
export async function spendCurrency(
  store: Store,
  input: { user_id: string; amount: number; item_id: string },
  context: { spendId: string; idempotency: IdempotencyContext | undefined; requestId: string },
): Promise<SpendResult> {
  return store.transaction(async (tx) => {
    const customer = await tx.findCustomer(input.user_id);
    if (!customer) throw customerNotFound();
    let balance: number | undefined;
    try {
      balance = await tx.postJournal({
        kind: 'spend',
        reference: context.spendId,
        userId: input.user_id,
        transactionId: null,
        memo: input.item_id,
        amount: -input.amount,
        counterAccount: COUNTER_ACCOUNTS.spent,
        mustNotOverdraw: true,
      });
    } catch (err) {
      if (!(err instanceof InsufficientBalance)) throw err;
      throw new ProblemError('insufficient_balance', `Insufficient coins: the balance is ${err.balance}, the item costs ${input.amount}`);
    }
    // The spend's journal and its key's answer commit together, so a posted spend is always replayed.
    if (balance === undefined) throw new Error(`spend ${context.spendId} was already posted`);
    await notifySpend(tx, { userId: input.user_id, spendId: context.spendId, itemId: input.item_id, coins: input.amount, balance });
    const result: SpendResult = {
      status: 'success',
      spend_id: context.spendId,
      currency_spent: input.amount,
      new_balance: balance,
      message: 'Currency spent successfully',
    };
    await completeIdempotency(tx, context.idempotency, { status: 200, body: result });
    return result;
  });
}
