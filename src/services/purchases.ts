import type { FastifyBaseLogger } from 'fastify';
import type { Purchase, PurchaseResult } from '../../schemas/purchase.js';
import type { Package } from '../../schemas/catalog.js';
import type { Catalog } from '../catalog.js';
import { customerNotFound, ProblemError, problemDocument } from '../errors.js';
import { GatewayError, PaymentMethodRejected, type ChargeOutcome, type PaymentsGateway } from '../gateway/types.js';
import { REVIVABLE_FAILURE, UNFINISHED, type CustomerRow, type PurchaseRow } from '../store/schema.js';
import type { PendingPurchaseFields, RecordedPurchase, Store } from '../store/store.js';
import { isCheckoutPurchase, refreshCheckout } from './checkout.js';
import { declineCode, failureProblem } from './declines.js';
import { beginWithKey, completeIdempotency, recordingWith, type Begun, type IdempotencyContext, type KeyRequest } from './idempotency.js';
import { creditPurchase, creditPurchaseAnswering, settleFailed, settleRequiresAction } from './settlement.js';

export interface PurchaseDeps {
  store: Store;
  payments: PaymentsGateway;
  catalog: Catalog;
  log: FastifyBaseLogger;
}

export interface RequestContext {
  requestId: string;
  idempotency: IdempotencyContext | undefined;
  /** The id a new purchase gets (the Idempotency-Key's reserved id when there is one). */
  transactionId: string;
  /** The pending purchase this request recorded with its new Idempotency-Key, when it did. */
  recorded?: PendingPurchase | undefined;
}

/** A purchase just recorded as pending, with the customer read to record it (Stripe needs their id). */
export interface PendingPurchase {
  purchase: PurchaseRow;
  customer: CustomerRow;
}

/**
 * What asking Stripe about a purchase told us: `unknown` when Stripe could not say; `absent` when a
 * search found no PaymentIntent for it, so nothing was charged.
 */
type Asked = ChargeOutcome | { status: 'rejected'; message: string } | { status: 'refused' } | { status: 'absent' } | { status: 'unknown' };

export type BegunPurchase = Begun<PendingPurchase>;

/**
 * A purchase's first step. With an Idempotency-Key: reserves the key and records the pending purchase
 * in one transaction, or says what the key already answered (a replay); a retry that takes over an
 * unfinished key gets its purchase's transaction id. Without a key there is nothing to reserve:
 * purchaseCurrency records the purchase. A purchase that cannot be made (unknown customer or package,
 * no saved card) records nothing here; purchaseCurrency refuses it.
 */
export async function beginPurchase(
  deps: Pick<PurchaseDeps, 'store' | 'catalog'>,
  input: { user_id: string; package_id: string },
  key: KeyRequest | undefined,
): Promise<BegunPurchase> {
  const pack = deps.catalog.get(input.package_id);
  if (!pack)
    return beginWithKey(
      deps.store,
      key,
      recordingWith((tx, transactionId) => recordPendingPurchase(tx, deps.catalog, input, transactionId)),
    );
  // The key and the pending purchase: one statement on PostgreSQL.
  return beginWithKey(deps.store, key, async (store, keyInput) => {
    const { reservation, recorded } = await store.reserveKeyRecordingPurchase(keyInput, input.user_id, pendingFields(pack));
    return { reservation, recorded: recorded && pendingOrProblem(recorded) };
  });
}

/** A pending purchase's fields from its package. */
const pendingFields = (pack: Package): PendingPurchaseFields => ({
  package_id: pack.package_id,
  package_name: pack.name,
  amount_cents: pack.price_cents,
  currency: pack.currency,
  coins: pack.currency_amount,
  payment_intent_id: null,
  failure_code: null,
});

/** What recording a purchase did, or why it could not (unknown customer, no saved card). */
function pendingOrProblem({ customer, purchase }: RecordedPurchase): PendingPurchase | ProblemError {
  if (!customer) return customerNotFound();
  if (!purchase) return new ProblemError('no_payment_method', 'No payment method attached');
  return { purchase, customer };
}

/**
 * Buys a coin package with the customer's saved card. The purchase is recorded (pending) before
 * Stripe is called, with its transaction id as Stripe's idempotency key; its outcome, the coins and
 * the Idempotency-Key's answer are written together (in one transaction; a payment that succeeded,
 * in one statement on PostgreSQL). A retry that takes over an unfinished key continues the same
 * purchase rather than starting another.
 */
export async function purchaseCurrency(
  deps: PurchaseDeps,
  input: { user_id: string; package_id: string },
  context: RequestContext,
): Promise<PurchaseResult> {
  // With an Idempotency-Key the pending purchase was usually recorded with the key (recordPendingPurchase),
  // or by the earlier request a retry takes over.
  let purchase = context.recorded?.purchase;
  let customer = context.recorded?.customer;
  if (!purchase && context.idempotency) purchase = await deps.store.findPurchase(context.transactionId);
  if (!purchase) {
    const recorded = await recordPendingPurchase(deps.store, deps.catalog, input, context.transactionId);
    if (recorded instanceof ProblemError) throw recorded;
    ({ purchase, customer } = recorded);
  }

  // `customer` is known only when this request recorded the purchase: Stripe has not been asked about it before.
  const asked = UNFINISHED.includes(purchase.status) ? await askStripe(deps, purchase, customer) : undefined;
  if (asked?.status === 'succeeded') {
    // Paid: the credit, the notification and the key's answer in one statement where the store can.
    const paid = purchase;
    const settled = await creditPurchaseAnswering(deps.store, paid, asked.paymentIntentId, context.idempotency, (balance) => ({
      status: 200,
      body: success(paid, balance),
    }));
    if (settled) {
      if (context.idempotency) context.idempotency.completed = true;
      return settled.answer.body;
    }
  }
  const answer = await deps.store.transaction(async (tx) => {
    const settled = asked ? await apply(tx, purchase, asked) : { purchase, balance: undefined };
    const response = await respond(tx, settled.purchase, asked, settled.balance);
    if (response.status < 500) {
      await completeIdempotency(tx, context.idempotency, {
        status: response.status,
        body: 'error' in response ? problemDocument(response.error, context.requestId) : response.body,
      });
    }
    return response;
  });
  if ('error' in answer) throw answer.error;
  return answer.body;
}

/**
 * Records the purchase as pending, before Stripe is called; or says why it cannot be made (unknown
 * customer or package, no saved card), writing nothing. It also runs in the transaction that
 * reserves the purchase's Idempotency-Key, so the two commit together.
 */
export async function recordPendingPurchase(
  store: Store,
  catalog: Catalog,
  input: { user_id: string; package_id: string },
  transactionId: string,
): Promise<PendingPurchase | ProblemError> {
  const pack = catalog.get(input.package_id);
  // An unknown customer is told first, whatever the package.
  if (!pack)
    return (await store.findCustomer(input.user_id)) ? new ProblemError('invalid_package', 'Invalid package ID') : customerNotFound();
  // The customer and their pending purchase, in one statement on PostgreSQL.
  return pendingOrProblem(await store.recordPendingPurchase(input.user_id, { ...pendingFields(pack), transaction_id: transactionId }));
}

/**
 * Brings a purchase whose outcome may still change up to date from Stripe: used by the purchase
 * lookup and by reconciliation. A purchase that never got a PaymentIntent id (the process died
 * mid-call) is asked again with its original idempotency key once `reissueAfterMs` has passed, so
 * Stripe answers with the PaymentIntent it made, or makes it now if the first request never arrived;
 * past Stripe's idempotency window it is searched for instead (see askStripe).
 */
export async function refreshPurchase(
  deps: Pick<PurchaseDeps, 'store' | 'payments' | 'log'>,
  purchase: PurchaseRow,
  options: { reissueAfterMs: number },
): Promise<{ purchase: PurchaseRow; clientSecret: string | undefined }> {
  // A purchase paid on Stripe Checkout is decided by its session.
  if (isCheckoutPurchase(purchase))
    return { purchase: await refreshCheckout(deps, purchase, { staleAfterMs: options.reissueAfterMs }), clientSecret: undefined };
  const unfinished = UNFINISHED.includes(purchase.status);
  if (!unfinished && !mayStillSucceed(purchase)) return { purchase, clientSecret: undefined };
  if (unfinished && !purchase.payment_intent_id && ageOf(purchase) < options.reissueAfterMs) return { purchase, clientSecret: undefined };
  const asked = await askStripe(deps, purchase);
  const { purchase: updated } = await deps.store.transaction((tx) => apply(tx, purchase, asked));
  return { purchase: updated, clientSecret: asked.status === 'requires_action' ? asked.clientSecret : undefined };
}

/**
 * Stripe keeps idempotency keys for at least 24 hours: within this window a purchase's charge call can
 * be sent again and is answered with what the first made; past it, a re-sent call could charge anew.
 */
const REISSUE_WINDOW_MS = 23 * 60 * 60 * 1000;

/** How long a purchase failed at 3-D Secure is watched for the customer paying it after all. */
export const REVIVAL_WINDOW_MS = 24 * 60 * 60 * 1000;

const ageOf = (purchase: PurchaseRow) => Date.now() - Date.parse(purchase.created_at);

/** A failed purchase whose PaymentIntent the customer can still pay (see REVIVABLE_FAILURE). */
function mayStillSucceed(purchase: PurchaseRow): boolean {
  return (
    purchase.status === 'failed' &&
    purchase.failure_code === REVIVABLE_FAILURE &&
    purchase.payment_intent_id !== null &&
    ageOf(purchase) < REVIVAL_WINDOW_MS
  );
}

/**
 * The PaymentIntent's state when we know its id; otherwise the (idempotent) charge call, or, once
 * Stripe may have forgotten the idempotency key, a search by the transaction id in its metadata. `recorded`
 * is the purchase's customer when the caller has just recorded the purchase, so this is the first
 * time Stripe is asked about it: only then is a refusal that says nothing was charged believed, and
 * the purchase failed. Asked again (a retry taking over its key, a lookup, reconciliation), an
 * earlier call may have charged the card whatever this one's error says, so the purchase stays
 * pending until Stripe tells what happened.
 */
async function askStripe(
  deps: Pick<PurchaseDeps, 'store' | 'payments' | 'log'>,
  purchase: PurchaseRow,
  recorded?: CustomerRow,
): Promise<Asked> {
  try {
    if (purchase.payment_intent_id) return await deps.payments.retrievePayment(purchase.payment_intent_id);
    if (ageOf(purchase) >= REISSUE_WINDOW_MS)
      return (await deps.payments.findPaymentByTransaction(purchase.transaction_id)) ?? { status: 'absent' };
    const customer = recorded ?? (await deps.store.findCustomer(purchase.user_id));
    if (!customer) throw new Error(`purchase ${purchase.transaction_id} has no customer`);
    // Exactly the first request's parameters, so Stripe's idempotency replays rather than refuses.
    return await deps.payments.chargeSavedCard({
      amountCents: purchase.amount_cents,
      currency: purchase.currency,
      customerId: customer.stripe_customer_id,
      paymentMethodId: purchase.payment_method_id,
      description: `${purchase.package_name} (${purchase.coins} coins)`,
      metadata: {
        user_id: purchase.user_id,
        package_id: purchase.package_id,
        transaction_id: purchase.transaction_id,
        coins: String(purchase.coins),
      },
      idempotencyKey: purchase.transaction_id,
    });
  } catch (err) {
    if (err instanceof PaymentMethodRejected) return { status: 'rejected', message: err.message };
    if (err instanceof GatewayError && !err.mayHaveCharged && recorded) {
      deps.log.error({ err, transactionId: purchase.transaction_id }, 'payment refused by the provider');
      return { status: 'refused' };
    }
    deps.log.error({ err, transactionId: purchase.transaction_id }, 'payment outcome unknown; purchase left pending');
    return { status: 'unknown' };
  }
}

/**
 * Writes what Stripe said into the purchase (and the ledger), in the caller's transaction; with the
 * player's balance when this call credited the coins.
 */
async function apply(tx: Store, purchase: PurchaseRow, asked: Asked): Promise<{ purchase: PurchaseRow; balance?: number | undefined }> {
  const id = purchase.transaction_id;
  switch (asked.status) {
    case 'succeeded':
      return creditPurchase(tx, id, asked.paymentIntentId);
    case 'requires_action':
      return { purchase: await settleRequiresAction(tx, id, asked.paymentIntentId) };
    case 'declined':
      return { purchase: await settleFailed(tx, id, declineCode(asked.code, asked.declineCode), asked.paymentIntentId) };
    case 'rejected':
      return { purchase: await settleFailed(tx, id, 'invalid_payment_method', undefined) };
    case 'refused':
    case 'absent':
      return { purchase: await settleFailed(tx, id, 'payment_provider_error', undefined) };
    case 'processing':
      // Not settled yet, but from now on asked about by id (a re-sent create would only replay `processing`).
      await tx.learnPaymentIntent(id, asked.paymentIntentId);
      return { purchase: (await tx.findPurchase(id)) ?? purchase };
    case 'unknown':
      return { purchase: (await tx.findPurchase(id)) ?? purchase };
  }
}

type Response = { status: 200; body: PurchaseResult } | { status: number; error: ProblemError };

const asProblem = (error: ProblemError): Response => ({ status: error.status, error });

/** The answer for a purchase in its current state; `balance` is the player's, when the caller just credited them. */
async function respond(tx: Store, purchase: PurchaseRow, asked: Asked | undefined, balance: number | undefined): Promise<Response> {
  const id = purchase.transaction_id;
  switch (purchase.status) {
    case 'requires_action':
      if (asked?.status === 'requires_action') {
        return asProblem(
          new ProblemError('authentication_required', 'The card requires authentication (3-D Secure) to complete this purchase', {
            transaction_id: id,
            payment_intent_id: asked.paymentIntentId,
            client_secret: asked.clientSecret,
          }),
        );
      }
      return asProblem(stillPending(id));
    case 'pending':
      return asProblem(stillPending(id));
    case 'failed':
      if (asked?.status === 'rejected') {
        return asProblem(new ProblemError('invalid_payment_method', `Invalid payment method: ${asked.message}`, { transaction_id: id }));
      }
      return asProblem(failureProblem(purchase.failure_code, id));
    default:
      return { status: 200, body: success(purchase, balance ?? (await tx.findCustomer(purchase.user_id))?.currency_balance ?? 0) };
  }
}

/** The answer to a paid purchase. */
const success = (purchase: PurchaseRow, newBalance: number): PurchaseResult => ({
  status: 'success',
  transaction_id: purchase.transaction_id,
  currency_purchased: purchase.coins,
  new_balance: newBalance,
  message: 'Currency purchase successful',
});

const stillPending = (transactionId: string) =>
  new ProblemError('payment_pending', 'The payment provider has not confirmed this payment yet; the coins are credited once it succeeds', {
    transaction_id: transactionId,
  });

/** The history status the seed's clients know: a paid purchase is `completed`. */
export function transactionStatus(status: PurchaseRow['status']) {
  return status === 'succeeded' ? 'completed' : status;
}

/** One purchase as the API shows it. */
export function purchaseView(p: PurchaseRow, clientSecret?: string): Purchase {
  return {
    transaction_id: p.transaction_id,
    user_id: p.user_id,
    package_id: p.package_id,
    package_name: p.package_name,
    amount_paid: p.amount_cents,
    currency: p.currency,
    currency_purchased: p.coins,
    status: transactionStatus(p.status),
    ...(p.payment_intent_id ? { payment_intent_id: p.payment_intent_id } : {}),
    ...(p.failure_code ? { failure_code: p.failure_code } : {}),
    amount_refunded: p.refunded_cents,
    ...(clientSecret ? { client_secret: clientSecret } : {}),
    created_at: p.created_at,
    updated_at: p.updated_at,
  };
}
