import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { UserIdParams } from '../../../schemas/customer.js';
import { ref } from '../../../schemas/index.js';
import { PurchaseCurrencyRequest, PurchaseResult, TransactionHistory } from '../../../schemas/purchase.js';
import { customerNotFound } from '../../errors.js';
import { purchaseCurrency, transactionStatus } from '../../services/purchases.js';
import {
  authenticationRequired,
  customerNotFound as customerNotFoundResponse,
  internalError,
  problemResponse,
} from '../problem-responses.js';

const purchaseRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/stripe/purchase-currency',
    {
      schema: {
        operationId: 'purchaseCurrency',
        tags: ['Purchases'],
        summary: 'Buy a coin package with the saved card',
        description:
          "Charges the customer's saved card the package's catalog price through a Stripe PaymentIntent and " +
          'credits the coins. Every attempt, paid or declined, is recorded in the history.',
        body: ref(PurchaseCurrencyRequest),
        response: {
          200: { ...ref(PurchaseResult), description: 'Paid and credited.' },
          400: problemResponse('The package is unknown, no card is saved, or the card was declined.', {
            invalid_package: 'Invalid package ID',
            no_payment_method: 'No payment method attached',
            card_declined: 'Card was declined',
            insufficient_funds: 'Insufficient funds',
            expired_card: 'Card was declined: the card has expired',
            incorrect_cvc: "Card was declined: the card's security code is incorrect",
            processing_error: 'Card was declined: an error occurred while processing the card, try again',
            invalid_payment_method: "Invalid payment method: No such PaymentMethod: 'pm_card_unknown'",
            validation_error: 'Invalid input: body/package_id is required',
          }),
          402: authenticationRequired,
          404: customerNotFoundResponse,
          500: internalError,
          502: problemResponse(
            'Stripe failed or could not be reached. With `payment_pending` the charge may have happened: the ' +
              'purchase stays `pending` in the history and is credited once Stripe confirms it.',
            {
              payment_provider_error: 'The payment provider refused the request; nothing was charged',
              payment_pending:
                'The payment provider has not confirmed this payment yet; the coins are credited once it succeeds',
            },
          ),
        },
      },
    },
    async (request) =>
      purchaseCurrency({ store: app.store, payments: app.payments, catalog: app.catalog, log: request.log }, request.body),
  );

  app.get(
    '/stripe/transactions/:user_id',
    {
      schema: {
        operationId: 'listTransactions',
        tags: ['Purchases'],
        summary: "List a customer's purchases, newest first",
        description: 'Every purchase attempt with its status: `completed`, `failed`, `pending` or `requires_action`.',
        params: UserIdParams,
        response: {
          200: { ...ref(TransactionHistory), description: 'The purchase history.' },
          404: customerNotFoundResponse,
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
};

export default purchaseRoutes;
