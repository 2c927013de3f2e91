import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { UserIdParams } from '../../../schemas/customer.js';
import { ref } from '../../../schemas/index.js';
import { LedgerPage, LedgerQuery, SpendCurrencyRequest, SpendResult } from '../../../schemas/ledger.js';
import { customerNotFound, ProblemError } from '../../errors.js';
import { resourceIdFor } from '../../plugins/idempotency.js';
import { spendCurrency } from '../../services/spend.js';
import {
  customerNotFound as customerNotFoundResponse,
  idempotencyConflicts,
  idempotencyKeyHeader,
  internalError,
  problemResponse,
  callerErrors,
  playerSecurity,
} from '../problem-responses.js';

const ledgerRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/stripe/spend-currency',
    {
      config: { idempotent: true, clientToken: 'spend' },
      schema: {
        security: playerSecurity,
        operationId: 'spendCurrency',
        tags: ['Ledger'],
        summary: 'Spend coins on an in-game item',
        description:
          'Debits the balance. Never takes it below zero: with too few coins nothing is written and the answer ' +
          'is 400 `insufficient_balance`. Send an `Idempotency-Key` so a retry never spends twice. A client token ' +
          'may spend only while the server has `CLIENT_TOKENS_MAY_SPEND=true` (otherwise 403).',
        headers: idempotencyKeyHeader,
        body: ref(SpendCurrencyRequest),
        response: {
          200: { ...ref(SpendResult), description: 'The coins were spent.' },
          400: problemResponse('Too few coins, or a malformed request.', {
            insufficient_balance: 'Insufficient coins: the balance is 100, the item costs 250',
            validation_error: 'Invalid input: body/amount must be >= 1',
          }),
          404: customerNotFoundResponse,
          ...idempotencyConflicts,
          ...callerErrors,
          500: internalError,
        },
      },
    },
    async (request) =>
      spendCurrency(app.store, request.body, { spendId: resourceIdFor(request), idempotency: request.idempotency, requestId: request.id }),
  );

  app.get(
    '/stripe/ledger/:user_id',
    {
      schema: {
        operationId: 'listLedgerEntries',
        tags: ['Ledger'],
        summary: "Page through a player's coin ledger, newest first",
        description:
          'Every change to the balance is an append-only entry with its reason and the Stripe object behind ' +
          'it; the balance is always the sum of the entries. Pass `next_cursor` as `cursor` for older entries.',
        params: UserIdParams,
        querystring: LedgerQuery,
        response: {
          200: { ...ref(LedgerPage), description: 'One page of entries.' },
          400: problemResponse('A malformed query.', { validation_error: 'Invalid input: querystring/limit must be <= 200' }),
          404: customerNotFoundResponse,
          ...callerErrors,
          500: internalError,
        },
      },
    },
    async (request) => {
      const customer = await app.store.findCustomer(request.params.user_id);
      if (!customer) throw customerNotFound();
      const limit = request.query.limit ?? 50;
      const before = request.query.cursor === undefined ? undefined : Number(request.query.cursor);
      // Entry ids are safe integers; a longer run of digits is no cursor this API gave out (and
      // PostgreSQL would be sent it as "1e+32").
      if (before !== undefined && !Number.isSafeInteger(before)) {
        const message = 'must be an entry id from next_cursor';
        throw new ProblemError('validation_error', `Invalid input: querystring/cursor ${message}`, {
          errors: [{ field: 'querystring/cursor', message }],
        });
      }
      const lines = await app.store.listLedger(customer.user_id, { limit: limit + 1, ...(before !== undefined ? { before } : {}) });
      const page = lines.slice(0, limit);
      const last = page.at(-1);
      return {
        user_id: customer.user_id,
        currency_balance: customer.currency_balance,
        entries: page.map((line) => ({
          entry_id: line.entry_id,
          amount: line.amount,
          balance_after: line.balance_after,
          reason: line.kind,
          reference: line.reference,
          ...(line.transaction_id ? { transaction_id: line.transaction_id } : {}),
          ...(line.memo ? { memo: line.memo } : {}),
          created_at: line.created_at,
        })),
        ...(lines.length > limit && last ? { next_cursor: String(last.entry_id) } : {}),
      };
    },
  );
};

export default ledgerRoutes;
