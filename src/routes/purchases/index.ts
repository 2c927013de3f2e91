import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { UserIdParams } from '../../../schemas/customer.js';
import { ref } from '../../../schemas/index.js';
import {
  Purchase,
  PurchaseCurrencyRequest,
  PurchaseResult,
  RefundPurchaseRequest,
  TransactionHistory,
  TransactionIdParams,
} from '../../../schemas/purchase.js';
import { customerNotFound, ProblemError } from '../../errors.js';
import { assertPlayerMayAct } from '../../plugins/auth.js';
import { resourceIdFor } from '../../plugins/idempotency.js';
import { FAILURE_DETAILS } from '../../services/declines.js';
import { purchaseCurrency, purchaseView, beginPurchase, refreshPurchase, transactionStatus } from '../../services/purchases.js';
import { refundPurchase } from '../../services/refunds.js';
import {
  authenticationRequired,
  customerNotFound as customerNotFoundResponse,
  idempotencyConflicts,
  idempotencyKeyHeader,
  internalError,
  problemResponse,
  callerErrors,
  playerSecurity,
} from '../problem-responses.js';

const purchaseNotFound = problemResponse('No purchase has this `transaction_id`.', { purchase_not_found: 'Purchase not found' });

const purchaseRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const deps = (log = app.log) => ({ store: app.store, payments: app.payments, catalog: app.catalog, log });
  // A purchase whose Stripe call never answered is asked again once its request must have ended.
  const reissueAfterMs = app.config.STRIPE_TIMEOUT_MS * (app.config.STRIPE_MAX_NETWORK_RETRIES + 1) + 5_000;

  app.post(
    '/stripe/purchase-currency',
    {
      // The purchase service reserves the Idempotency-Key with the pending purchase, in one transaction.
      config: { idempotent: 'service', clientToken: 'user_id' },
      schema: {
        security: playerSecurity,
        operationId: 'purchaseCurrency',
        tags: ['Purchases'],
        summary: 'Buy a coin package with the saved card',
        description:
          "Charges the customer's saved card the package's catalog price through a Stripe PaymentIntent and " +
          'credits the coins. Every attempt, paid or declined, is recorded in the history. Send an ' +
          '`Idempotency-Key` so that a retry after a timeout can never charge twice.',
        headers: idempotencyKeyHeader,
        body: ref(PurchaseCurrencyRequest),
        response: {
          200: { ...ref(PurchaseResult), description: 'Paid and credited.' },
          400: problemResponse('The package is unknown, no card is saved, or the card was declined.', {
            invalid_package: 'Invalid package ID',
            no_payment_method: 'No payment method attached',
            card_declined: FAILURE_DETAILS.card_declined,
            insufficient_funds: FAILURE_DETAILS.insufficient_funds,
            expired_card: FAILURE_DETAILS.expired_card,
            incorrect_cvc: FAILURE_DETAILS.incorrect_cvc,
            processing_error: FAILURE_DETAILS.processing_error,
            authentication_failed: FAILURE_DETAILS.authentication_failed,
            invalid_payment_method: "Invalid payment method: No such PaymentMethod: 'pm_card_unknown'",
            validation_error: 'Invalid input: body/package_id is required',
          }),
          402: authenticationRequired,
          404: customerNotFoundResponse,
          424: problemResponse(
            'Stripe refused the request before anything was charged (rate limited, or the request was not accepted). ' +
              'The purchase is `failed` and this answer is final for its Idempotency-Key: to try again, send a new key.',
            { payment_provider_refused: FAILURE_DETAILS.payment_provider_refused },
          ),
          ...idempotencyConflicts,
          ...callerErrors,
          500: internalError,
          502: problemResponse(
            'Stripe failed or could not be reached. With `payment_pending` the charge may have happened: the ' +
              'purchase stays `pending` and is credited once Stripe confirms it (retry with the same ' +
              '`Idempotency-Key`, or look it up with getPurchase).',
            {
              payment_provider_error:
                'The payment provider failed or could not be reached, and the request may have taken effect there; retry with the same Idempotency-Key',
              payment_pending: 'The payment provider has not confirmed this payment yet; the coins are credited once it succeeds',
            },
          ),
        },
      },
    },
    async (request, reply) => {
      const begun = await beginPurchase(app, request.body, request.idempotencyKey);
      if (begun.kind === 'replay') return reply.sendKeptAnswer(begun.answer);
      request.idempotency = begun.idempotency;
      try {
        const result = await purchaseCurrency(deps(request.log), request.body, {
          requestId: request.id,
          idempotency: begun.idempotency,
          transactionId: begun.transactionId,
          recorded: begun.recorded,
        });
        app.metrics.purchases.inc({ outcome: 'succeeded' });
        return result;
      } catch (err) {
        app.metrics.purchases.inc({ outcome: err instanceof ProblemError ? err.code : 'internal_error' });
        throw err;
      }
    },
  );

  app.get(
    '/stripe/transactions/:user_id',
    {
      config: { clientToken: 'user_id' },
      schema: {
        security: playerSecurity,
        operationId: 'listTransactions',
        tags: ['Purchases'],
        summary: "List a customer's purchases, newest first",
        description: 'Every purchase attempt with its status.',
        params: UserIdParams,
        response: {
          200: { ...ref(TransactionHistory), description: 'The purchase history.' },
          404: customerNotFoundResponse,
          ...callerErrors,
          500: internalError,
        },
      },
    },
    async (request) => {
      const { user_id } = request.params;
      const customer = await app.store.findCustomer(user_id);
      if (!customer) throw customerNotFound();
      const purchases = await app.store.listPurchases(user_id);
      return {
        user_id,
        transactions: purchases.map((p) => ({
          transaction_id: p.transaction_id,
          package_id: p.package_id,
          amount_paid: p.amount_cents,
          currency: p.currency,
          currency_purchased: p.coins,
          package_name: p.package_name,
          timestamp: p.created_at,
          status: transactionStatus(p.status),
          ...(p.failure_code ? { failure_code: p.failure_code } : {}),
        })),
      };
    },
  );

  app.get(
    '/stripe/purchases/:transaction_id',
    {
      config: { clientToken: 'own' },
      schema: {
        security: playerSecurity,
        operationId: 'getPurchase',
        tags: ['Purchases'],
        summary: 'Get one purchase, brought up to date from Stripe while unfinished',
        description:
          'A `pending` or `requires_action` purchase is checked with Stripe first, so this is how a client ' +
          'learns the outcome after a `payment_pending` answer or after 3-D Secure; a payment found to have ' +
          'succeeded is credited here if no webhook did it yet.',
        params: TransactionIdParams,
        response: {
          200: { ...ref(Purchase), description: 'The purchase.' },
          404: purchaseNotFound,
          ...callerErrors,
          500: internalError,
        },
      },
    },
    async (request) => {
      const found = await app.store.findPurchase(request.params.transaction_id);
      if (!found) throw new ProblemError('purchase_not_found', 'Purchase not found');
      assertPlayerMayAct(request, found.user_id);
      const { purchase, clientSecret } = await refreshPurchase(deps(request.log), found, { reissueAfterMs });
      return purchaseView(purchase, clientSecret);
    },
  );

  app.post(
    '/stripe/purchases/:transaction_id/refund',
    {
      config: { idempotent: true },
      schema: {
        operationId: 'refundPurchase',
        tags: ['Purchases'],
        summary: 'Refund a purchase in Stripe and take its coins back',
        description:
          'For operators. Refunds all that remains, or `amount_cents`, through Stripe; coins are taken back ' +
          'pro rata (rounded down, in the player’s favour). Coins already spent are still taken: the balance ' +
          'may go below zero, a visible debt that later purchases pay off first and that blocks spending. ' +
          'Once Stripe has made the refund, the answer is that refund. A retry with the same `Idempotency-Key` ' +
          'answers the refund it made, even if a webhook has settled it since. A refund that Stripe later reports ' +
          'failed gives the coins back (the purchase is `completed` or `partially_refunded` again).',
        headers: idempotencyKeyHeader,
        params: TransactionIdParams,
        body: ref(RefundPurchaseRequest),
        response: {
          200: {
            ...ref(Purchase),
            description: 'The purchase after the refund (for a retry with the same key: after the refund it made).',
          },
          400: problemResponse('The request is malformed.', { validation_error: 'Invalid input: body/amount_cents must be >= 1' }),
          404: purchaseNotFound,
          409: problemResponse('The purchase cannot be refunded in its state, or Stripe refused the refund (nothing was refunded).', {
            invalid_state: 'Only a completed purchase can be refunded; this one is failed',
            refund_rejected: 'Stripe refused the refund: Charge ch_1 has already been refunded.',
            idempotency_key_in_use: 'A request with this Idempotency-Key is still being processed; retry later',
          }),
          422: idempotencyConflicts[422],
          ...callerErrors,
          500: internalError,
          502: problemResponse(
            'Stripe failed or could not be reached before the refund was known. Unless the detail says to try again, ' +
              'the refund may have been made: retry with the same `Idempotency-Key` (it answers the refund Stripe made, ' +
              'or makes it once); reconciliation also finishes it.',
            {
              payment_provider_error:
                'The payment provider failed or could not be reached, and the request may have taken effect there; retry with the same Idempotency-Key',
            },
          ),
        },
      },
    },
    async (request) =>
      refundPurchase({ store: app.store, payments: app.payments }, request.params.transaction_id, request.body.amount_cents, {
        idempotency: request.idempotency,
        requestId: request.id,
        refundKey: resourceIdFor(request),
      }),
  );
};

export default purchaseRoutes;
