import type { CreateCustomerResponse } from '../../schemas/customer.js';
import type { AttachPaymentMethodResponse } from '../../schemas/payment-method.js';
import { customerNotFound, ProblemError } from '../errors.js';
import { isTestToken, PaymentMethodRejected, type PaymentsGateway } from '../gateway/types.js';
import type { Store } from '../store/store.js';
import { completeIdempotency, type IdempotencyContext } from './idempotency.js';

export interface CustomerDeps {
  store: Store;
  payments: PaymentsGateway;
}

/**
 * Registers a player: their Stripe customer, then the player with a balance of 0 and the key's answer
 * in one transaction. Stripe's idempotency key is our user id, so a retry that takes over the request's
 * Idempotency-Key (and so gets the same user id) finds the Stripe customer the first request made.
 */
export async function createCustomer(
  deps: CustomerDeps,
  input: { email: string; name: string },
  context: { userId: string; idempotency?: IdempotencyContext | undefined },
): Promise<CreateCustomerResponse> {
  const { userId } = context;
  const stripeCustomer = await deps.payments.createCustomer({ ...input, userId }, `create-customer-${userId}`);
  const response = {
    status: 'success' as const,
    user_id: userId,
    stripe_customer_id: stripeCustomer.id,
    message: 'Customer created successfully',
  };
  await deps.store.transaction(async (tx) => {
    await tx.insertCustomer({ user_id: userId, email: input.email, name: input.name, stripe_customer_id: stripeCustomer.id });
    await completeIdempotency(tx, context.idempotency, { status: 200, body: response });
  });
  return response;
}

/**
 * Saves the card the player's purchases charge. A test token (pm_card_visa…) is stored as it is; a real
 * PaymentMethod is attached to the Stripe customer first and made their default.
 */
export async function attachPaymentMethod(
  deps: CustomerDeps,
  input: { user_id: string; payment_method_id: string },
  context: { idempotency?: IdempotencyContext | undefined },
): Promise<AttachPaymentMethodResponse> {
  const { user_id, payment_method_id } = input;
  const customer = await deps.store.findCustomer(user_id);
  if (!customer) throw customerNotFound();
  let message = 'Test payment method configured for customer';
  if (!isTestToken(payment_method_id)) {
    try {
      await deps.payments.attachPaymentMethod(customer.stripe_customer_id, payment_method_id);
    } catch (err) {
      if (err instanceof PaymentMethodRejected) throw new ProblemError('invalid_payment_method', `Invalid payment method: ${err.message}`);
      throw err;
    }
    message = 'Payment method attached and set as default';
  }
  const response = { status: 'success' as const, message, payment_method_id };
  await deps.store.transaction(async (tx) => {
    await tx.setPaymentMethod(user_id, payment_method_id);
    await completeIdempotency(tx, context.idempotency, { status: 200, body: response });
  });
  return response;
}
