import type { FastifyBaseLogger } from 'fastify';
import type { CheckoutSessionCreated, CreateCheckoutSessionRequest } from '../../schemas/checkout-session.js';
import type { Catalog } from '../catalog.js';
import { customerNotFound, ProblemError, problemDocument } from '../errors.js';
import { CheckoutRefused, GatewayError, type CheckoutSession, type PaymentsGateway } from '../gateway/types.js';
import { CHECKOUT_PAYMENT_METHOD, UNFINISHED, type CustomerRow, type PurchaseRow } from '../store/schema.js';
import type { Store } from '../store/store.js';
import { failureProblem } from './declines.js';
import { beginWithKey, completeIdempotency, recordingWith, type Begun, type IdempotencyContext, type KeyRequest } from './idempotency.js';
import { creditPurchase, settleFailed } from './settlement.js';

export interface CheckoutDeps {
  store: Store;
  payments: PaymentsGateway;
  catalog: Catalog;
  log: FastifyBaseLogger;
  /** How long a session stays open unpaid. */
  expiryMinutes: number;
}

/** Whether a purchase is paid on Stripe Checkout (rather than by charging a saved card). */
export const isCheckoutPurchase = (purchase: PurchaseRow) => purchase.payment_method_id === CHECKOUT_PAYMENT_METHOD;

/**
 * Why a return URL cannot be used, or undefined when it can: it must be an absolute https URL on one
 * of `allowedOrigins`, or on `ownOrigin` (coinshop's own, allowed in development, where it is http).
 * The URL is sent to Stripe as given, so its `{CHECKOUT_SESSION_ID}` placeholder stays as it is.
 */
export function returnUrlProblem(value: string, allowedOrigins: ReadonlySet<string>, ownOrigin: string | undefined): string | undefined {
  if (!URL.canParse(value)) return 'must be an absolute https URL';
  const url = new URL(value);
  if (ownOrigin !== undefined && url.origin === ownOrigin) return undefined;
  if (url.protocol !== 'https:') return 'must be an absolute https URL';
  if (!allowedOrigins.has(url.origin)) return `must be on an origin in CHECKOUT_RETURN_ORIGINS (${url.origin} is not)`;
  return undefined;
}

/** Refuses (400 invalid_return_url, naming each field in `errors`) return URLs Stripe must not send the customer to. */
export function checkReturnUrls(
  input: Pick<CreateCheckoutSessionRequest, 'success_url' | 'cancel_url'>,
  allowedOrigins: ReadonlySet<string>,
  ownOrigin: string | undefined,
): void {
  const errors = (['success_url', 'cancel_url'] as const).flatMap((field) => {
    const problem = returnUrlProblem(input[field], allowedOrigins, ownOrigin);
    return problem === undefined ? [] : [{ field: `body/${field}`, message: problem }];
  });
  const first = errors[0];
  if (first) throw new ProblemError('invalid_return_url', `Return URL not allowed: ${first.field} ${first.message}`, { errors });
}

type Recorded = { purchase: PurchaseRow; customer: CustomerRow };

export type BegunCheckout = Begun<Recorded>;

/**
 * A Checkout purchase's first step, as a card purchase's (beginPurchase): with an Idempotency-Key,
 * the key is reserved and the pending purchase recorded in one transaction, or the key's answer
 * replayed. An unknown player or package records nothing; createCheckout refuses it.
 */
export async function beginCheckout(
  deps: Pick<CheckoutDeps, 'store' | 'catalog'>,
  input: Pick<CreateCheckoutSessionRequest, 'user_id' | 'package_id'>,
  key: KeyRequest | undefined,
): Promise<BegunCheckout> {
  return beginWithKey(
    deps.store,
    key,
    recordingWith((tx, transactionId) => recordPendingCheckout(tx, deps.catalog, input, transactionId)),
  );
}

/** Records the Checkout purchase as pending, before Stripe is called (no saved card is needed); or says why it cannot be made. */
async function recordPendingCheckout(
  store: Store,
  catalog: Catalog,
  input: Pick<CreateCheckoutSessionRequest, 'user_id' | 'package_id'>,
  transactionId: string,
): Promise<Recorded | ProblemError> {
  const customer = await store.findCustomer(input.user_id);
  if (!customer) return customerNotFound();
  const pack = catalog.get(input.package_id);
  if (!pack) return new ProblemError('invalid_package', 'Invalid package ID');
  const purchase = await store.insertPendingPurchase({
    transaction_id: transactionId,
    user_id: customer.user_id,
    package_id: pack.package_id,
    package_name: pack.name,
    amount_cents: pack.price_cents,
    currency: pack.currency,
    coins: pack.currency_amount,
    payment_method_id: CHECKOUT_PAYMENT_METHOD,
    payment_intent_id: null,
    failure_code: null,
  });
  return { purchase, customer };
}

/**
 * Opens a Stripe Checkout Session for a package. The purchase is recorded `pending` first; the
 * session is created with the transaction id as Stripe's idempotency key and an expiry fixed by the
 * purchase's creation time, so a retry (one taking over the request's Idempotency-Key) sends exactly
 * the same request and gets the session the first made. The session id and the key's answer are
 * written in one transaction. The coins are credited later, by the webhook, a lookup or
 * reconciliation (see refreshCheckout), whichever learns of the payment first.
 */
export async function createCheckout(
  deps: CheckoutDeps,
  input: CreateCheckoutSessionRequest,
  context: {
    requestId: string;
    idempotency: IdempotencyContext | undefined;
    transactionId: string;
    recorded: Recorded | undefined;
    origin: string;
  },
): Promise<CheckoutSessionCreated> {
  let purchase = context.recorded?.purchase;
  let customer = context.recorded?.customer;
  if (!purchase && context.idempotency) purchase = await deps.store.findPurchase(context.transactionId);
  if (!purchase) {
    const recorded = await recordPendingCheckout(deps.store, deps.catalog, input, context.transactionId);
    if (recorded instanceof ProblemError) throw recorded;
    ({ purchase, customer } = recorded);
  }
  customer ??= await deps.store.findCustomer(purchase.user_id);
  if (!customer) throw customerNotFound();

  const id = purchase.transaction_id;
  let outcome: { session: CheckoutSession } | { problem: ProblemError };
  if (!UNFINISHED.includes(purchase.status)) {
    outcome = { problem: purchase.status === 'failed' ? failureProblem(purchase.failure_code, id) : sessionOver(id) };
  } else {
    try {
      const session = purchase.checkout_session_id
        ? await deps.payments.retrieveCheckoutSession(purchase.checkout_session_id)
        : await deps.payments.createCheckoutSession(sessionRequest(deps, purchase, customer, input));
      outcome = { session };
    } catch (err) {
      if (!(err instanceof CheckoutRefused)) {
        // The session may exist: the purchase stays pending; a retry with the same key, or reconciliation, finishes it.
        deps.log.error({ err, transactionId: id }, 'checkout session outcome unknown; purchase left pending');
        if (err instanceof GatewayError) {
          throw new ProblemError(
            'payment_provider_error',
            'The payment provider failed or could not be reached, and the request may have taken effect there; retry with the same Idempotency-Key',
            { transaction_id: id },
          );
        }
        throw err;
      }
      deps.log.error({ err, transactionId: id }, 'checkout session refused by the provider');
      outcome = {
        problem: new ProblemError('payment_provider_refused', `The payment provider refused the Checkout Session: ${err.message}`, {
          transaction_id: id,
        }),
      };
    }
  }

  const answer = await deps.store.transaction(async (tx) => {
    let problem = 'problem' in outcome ? outcome.problem : undefined;
    let body: CheckoutSessionCreated | undefined;
    if ('session' in outcome) {
      const { session } = outcome;
      await tx.learnCheckoutSession(id, session.id);
      if (session.url === null) problem = sessionOver(id);
      else {
        body = {
          session_id: session.id,
          // The simulated gateway's page is a path on coinshop; Stripe's is absolute already.
          checkout_url: new URL(session.url, context.origin).href,
          transaction_id: id,
          expires_at: new Date(session.expiresAt * 1000).toISOString(),
        };
      }
    } else if (problem?.code === 'payment_provider_refused') {
      // Stripe made nothing: the purchase is over, and the answer is final for its key.
      await settleFailed(tx, id, 'payment_provider_error', undefined);
    }
    const response = problem ? { status: problem.status, body: problemDocument(problem, context.requestId) } : { status: 200, body };
    await completeIdempotency(tx, context.idempotency, response);
    return problem ?? body;
  });
  if (answer instanceof ProblemError) throw answer;
  if (!answer) throw new Error('createCheckout: no answer');
  return answer;
}

const sessionOver = (transactionId: string) =>
  new ProblemError('invalid_state', "This purchase's Checkout Session is over; look the purchase up with getPurchase", {
    transaction_id: transactionId,
  });

/** Exactly the first request's parameters, whichever call sends them, so Stripe's idempotency replays. */
function sessionRequest(
  deps: Pick<CheckoutDeps, 'expiryMinutes'>,
  purchase: PurchaseRow,
  customer: CustomerRow,
  urls: Pick<CreateCheckoutSessionRequest, 'success_url' | 'cancel_url'>,
) {
  return {
    amountCents: purchase.amount_cents,
    currency: purchase.currency,
    productName: purchase.package_name,
    description: `${purchase.package_name} (${purchase.coins} coins)`,
    customerId: customer.stripe_customer_id,
    successUrl: urls.success_url,
    cancelUrl: urls.cancel_url,
    expiresAt: Math.floor(Date.parse(purchase.created_at) / 1000) + deps.expiryMinutes * 60,
    transactionId: purchase.transaction_id,
    metadata: {
      user_id: purchase.user_id,
      package_id: purchase.package_id,
      transaction_id: purchase.transaction_id,
      coins: String(purchase.coins),
    },
    idempotencyKey: `checkout-${purchase.transaction_id}`,
  };
}

/**
 * Brings an unfinished Checkout purchase up to date from its session (the purchase lookup and
 * reconciliation): paid → credited (keyed by the PaymentIntent, as every credit); expired →
 * `failed/checkout_expired`; a delayed payment the bank refused → `failed/async_payment_failed`.
 *
 * A purchase that never learnt its session once its request must have ended (`staleAfterMs`; the
 * process died between recording it and hearing from Stripe) is failed with `checkout_expired`:
 * nobody was sent its `checkout_url` — that happens only after the session id is written — so
 * nobody can have paid it. Creating the session again would give its URL to no one; a retry of the
 * request with the same Idempotency-Key before then gets the session Stripe made, and one after
 * gets the failure.
 */
export async function refreshCheckout(
  deps: Pick<CheckoutDeps, 'store' | 'payments' | 'log'>,
  purchase: PurchaseRow,
  options: { staleAfterMs: number },
): Promise<PurchaseRow> {
  if (!UNFINISHED.includes(purchase.status)) return purchase;
  const id = purchase.transaction_id;
  if (!purchase.checkout_session_id) {
    if (Date.now() - Date.parse(purchase.created_at) < options.staleAfterMs) return purchase;
    return deps.store.transaction((tx) => settleFailed(tx, id, 'checkout_expired', undefined));
  }
  let session: CheckoutSession;
  let intent: Awaited<ReturnType<PaymentsGateway['retrievePayment']>> | undefined;
  try {
    session = await deps.payments.retrieveCheckoutSession(purchase.checkout_session_id);
    // Completed but unpaid: a delayed method, decided by its PaymentIntent.
    if (session.status === 'complete' && session.paymentStatus === 'unpaid' && session.paymentIntentId) {
      intent = await deps.payments.retrievePayment(session.paymentIntentId);
    }
  } catch (err) {
    deps.log.error({ err, transactionId: id }, 'checkout session lookup failed; purchase left pending');
    return purchase;
  }
  return deps.store.transaction(async (tx) => {
    if (session.status === 'expired') return settleFailed(tx, id, 'checkout_expired', undefined);
    if (session.status !== 'complete' || !session.paymentIntentId) return (await tx.findPurchase(id)) ?? purchase;
    if (session.paymentStatus !== 'unpaid' || intent?.status === 'succeeded') {
      return (await creditPurchase(tx, id, session.paymentIntentId)).purchase;
    }
    if (intent?.status === 'declined') return settleFailed(tx, id, 'async_payment_failed', session.paymentIntentId);
    await tx.learnPaymentIntent(id, session.paymentIntentId);
    return (await tx.findPurchase(id)) ?? purchase;
  });
}
