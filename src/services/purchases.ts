import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { PurchaseResult } from '../../schemas/purchase.js';
import type { Catalog } from '../catalog.js';
import { customerNotFound, ProblemError } from '../errors.js';
import { GatewayError, PaymentMethodRejected, type ChargeOutcome, type PaymentsGateway } from '../gateway/types.js';
import type { PurchaseRow } from '../store/schema.js';
import type { Store } from '../store/store.js';
import { declineProblem } from './declines.js';

export interface PurchaseDeps {
  store: Store;
  payments: PaymentsGateway;
  catalog: Catalog;
  log: FastifyBaseLogger;
}

/**
 * Buys a coin package with the customer's saved card. The purchase is recorded (pending) before
 * Stripe is called, with its transaction id as Stripe's idempotency key; the coins are credited in
 * the same database transaction that marks it succeeded.
 */
export async function purchaseCurrency(
  deps: PurchaseDeps,
  input: { user_id: string; package_id: string },
): Promise<PurchaseResult> {
  const customer = await deps.store.findCustomer(input.user_id);
  if (!customer) throw customerNotFound();
  const pack = deps.catalog.get(input.package_id);
  if (!pack) throw new ProblemError('invalid_package', 'Invalid package ID');
  if (!customer.payment_method_id) throw new ProblemError('no_payment_method', 'No payment method attached');

  const transactionId = randomUUID();
  await deps.store.insertPendingPurchase({
    transaction_id: transactionId,
    user_id: customer.user_id,
    package_id: pack.package_id,
    package_name: pack.name,
    amount_cents: pack.price_cents,
    currency: pack.currency,
    coins: pack.currency_amount,
    payment_intent_id: null,
    failure_code: null,
  });

  let outcome: ChargeOutcome;
  try {
    outcome = await deps.payments.chargeSavedCard({
      amountCents: pack.price_cents,
      currency: pack.currency,
      customerId: customer.stripe_customer_id,
      paymentMethodId: customer.payment_method_id,
      description: `${pack.name} (${pack.currency_amount} coins)`,
      metadata: {
        user_id: customer.user_id,
        package_id: pack.package_id,
        transaction_id: transactionId,
        coins: String(pack.currency_amount),
      },
      idempotencyKey: transactionId,
    });
  } catch (err) {
    throw await chargeFailed(deps, transactionId, err);
  }
  return settle(deps, transactionId, outcome);
}

async function settle(deps: PurchaseDeps, transactionId: string, outcome: ChargeOutcome): Promise<PurchaseResult> {
  switch (outcome.status) {
    case 'succeeded': {
      const { purchase, balance } = await deps.store.settleSucceeded(transactionId, outcome.paymentIntentId);
      return {
        status: 'success',
        transaction_id: transactionId,
        currency_purchased: purchase.coins,
        new_balance: balance,
        message: 'Currency purchase successful',
      };
    }
    case 'requires_action':
      await deps.store.markRequiresAction(transactionId, outcome.paymentIntentId);
      throw new ProblemError('authentication_required', 'The card requires authentication (3-D Secure) to complete this purchase', {
        transaction_id: transactionId,
        payment_intent_id: outcome.paymentIntentId,
        client_secret: outcome.clientSecret,
      });
    case 'processing':
      throw stillPending(transactionId);
    case 'declined': {
      const problem = declineProblem(outcome.code, outcome.declineCode, transactionId);
      await deps.store.markFailed(transactionId, problem.code, outcome.paymentIntentId);
      throw problem;
    }
  }
}

/** The charge call threw: decide what we know about the money, record it, and say so. */
async function chargeFailed(deps: PurchaseDeps, transactionId: string, err: unknown): Promise<ProblemError> {
  if (err instanceof PaymentMethodRejected) {
    await deps.store.markFailed(transactionId, 'invalid_payment_method', undefined);
    return new ProblemError('invalid_payment_method', `Invalid payment method: ${err.message}`, {
      transaction_id: transactionId,
    });
  }
  if (err instanceof GatewayError && !err.mayHaveCharged) {
    deps.log.error({ err, transactionId }, 'payment refused by the provider');
    await deps.store.markFailed(transactionId, 'payment_provider_error', undefined);
    return new ProblemError('payment_provider_error', 'The payment provider refused the request; nothing was charged', {
      transaction_id: transactionId,
    });
  }
  // The charge may have gone through: the purchase stays pending, to be finished from Stripe's record.
  deps.log.error({ err, transactionId }, 'payment outcome unknown; purchase left pending');
  return stillPending(transactionId);
}

function stillPending(transactionId: string): ProblemError {
  return new ProblemError(
    'payment_pending',
    'The payment provider has not confirmed this payment yet; the coins are credited once it succeeds',
    { transaction_id: transactionId },
  );
}

/** The history status the seed's clients know: a paid purchase is `completed`. */
export function transactionStatus(status: PurchaseRow['status']) {
  return status === 'succeeded' ? 'completed' : status;
}
