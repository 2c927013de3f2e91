import t from 'tap';
import type { FakeStripe } from './support/fake-stripe.js';
import { attachCard, buildAppOnFakeStripe, buy, customerWithCard, createCustomer, expectProblem, get, json } from './support/helper.js';
import { seedFlow } from './support/seed-flow.js';
import { reconcile } from '../src/services/reconcile.js';
import type { Test } from 'tap';

/** An app whose StripeGateway (the real stripe SDK) talks to a local Stripe-compatible server. */
async function appOnFakeStripe(t: Test, env: Record<string, string> = {}) {
  const { app, stripe } = await buildAppOnFakeStripe(t, { env });
  t.equal(app.payments.kind, 'stripe');
  return { app, stripe };
}

const intents = (stripe: FakeStripe) => [...stripe.paymentIntents.values()];

t.test('the seed user story through the stripe SDK and a Stripe-compatible server', async (t) => {
  const { app, stripe } = await appOnFakeStripe(t);
  const userId = await seedFlow(t, app, /^cus_/);

  const customer = json(await get(app, `/stripe/customer/${userId}`));
  const stripeCustomer = stripe.customers.get(String(customer['stripe_customer_id']));
  t.match(stripeCustomer, { email: 'customer@example.com', name: 'Customer Name', metadata: { user_id: userId } });

  const history = json(await get(app, `/stripe/transactions/${userId}`)) as { transactions: Record<string, unknown>[] };
  const paid = intents(stripe);
  t.equal(paid.length, 3, 'one PaymentIntent per purchase');
  for (const tx of history.transactions) {
    const intent = paid.find((pi) => pi.metadata['transaction_id'] === tx['transaction_id']);
    t.match(intent, {
      status: 'succeeded',
      amount: tx['amount_paid'],
      currency: 'usd',
      customer: customer['stripe_customer_id'],
      metadata: {
        user_id: userId,
        package_id: tx['package_id'],
        transaction_id: tx['transaction_id'],
        coins: String(tx['currency_purchased']),
      },
    });
  }
  const creates = stripe.requests.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents');
  t.same(
    creates.map((r) => r.idempotencyKey).sort(),
    history.transactions.map((tx) => tx['transaction_id']).sort(),
    "each PaymentIntent is created with our transaction id as Stripe's idempotency key",
  );
  t.ok(
    creates.every((r) => r.body['confirm'] === 'true' && r.body['payment_method'] === 'pm_card_visa'),
    'created and confirmed with the saved card',
  );
  t.notOk(
    stripe.requests.some((r) => r.path.includes('/attach')),
    'the test token was stored without a Stripe call',
  );
});

t.test("declines are decided from Stripe's code and decline_code", async (t) => {
  const { app, stripe } = await appOnFakeStripe(t);
  for (const [card, code, detail] of [
    ['pm_card_chargeDeclined', 'card_declined', 'Card was declined'],
    ['pm_card_insufficient_funds', 'insufficient_funds', 'Insufficient funds'],
    ['pm_card_chargeDeclinedExpiredCard', 'expired_card', 'Card was declined: the card has expired'],
    ['pm_card_chargeDeclinedIncorrectCvc', 'incorrect_cvc', "Card was declined: the card's security code is incorrect"],
    ['pm_card_chargeDeclinedFraudulent', 'card_declined', 'Card was declined'],
  ] as const) {
    const { user_id } = await customerWithCard(app, card);
    const body = expectProblem(t, await buy(app, user_id, 'package_1'), 400, code, detail);
    const intent = intents(stripe).find((pi) => pi.metadata['transaction_id'] === body['transaction_id']);
    t.equal(intent?.status, 'requires_payment_method', `${card}: Stripe holds a declined PaymentIntent`);
    t.match(json(await get(app, `/stripe/transactions/${user_id}`))['transactions'], [{ status: 'failed', failure_code: code }]);
  }
  const sent = stripe.requests.filter((r) => r.path === '/v1/payment_intents').map((r) => r.body['payment_method']);
  t.ok(
    sent.includes('pm_card_visa_chargeDeclinedInsufficientFunds'),
    "the seed's pm_card_insufficient_funds goes to Stripe as its real token",
  );
  t.notOk(sent.includes('pm_card_insufficient_funds'));
});

t.test('a card that needs 3-D Secure answers 402 with the PaymentIntent client secret', async (t) => {
  const { app, stripe } = await appOnFakeStripe(t);
  const { user_id } = await customerWithCard(app, 'pm_card_threeDSecure2Required');
  const body = expectProblem(t, await buy(app, user_id, 'package_2'), 402, 'authentication_required');
  const intent = stripe.paymentIntents.get(String(body['payment_intent_id']));
  t.equal(intent?.status, 'requires_action');
  t.equal(body['client_secret'], intent?.client_secret);
  t.match(json(await get(app, `/stripe/transactions/${user_id}`))['transactions'], [
    { transaction_id: body['transaction_id'], status: 'requires_action' },
  ]);
});

t.test('a real PaymentMethod is attached in Stripe, made the default, and charged', async (t) => {
  const { app, stripe } = await appOnFakeStripe(t);
  const { user_id, stripe_customer_id } = await createCustomer(app);
  const paymentMethod = stripe.createPaymentMethod();
  const attached = await attachCard(app, user_id, paymentMethod);
  t.equal(attached.statusCode, 200);
  t.same(json(attached), { status: 'success', message: 'Payment method attached and set as default', payment_method_id: paymentMethod });
  t.equal(stripe.paymentMethods.get(paymentMethod)?.customer, stripe_customer_id);
  t.equal(stripe.customers.get(stripe_customer_id)?.invoice_settings.default_payment_method, paymentMethod);

  const purchase = await buy(app, user_id, 'package_1');
  t.equal(json(purchase)['new_balance'], 100);
  t.equal(intents(stripe)[0]?.payment_method, paymentMethod);

  expectProblem(
    t,
    await attachCard(app, user_id, 'pm_1DoesNotExist'),
    400,
    'invalid_payment_method',
    "Invalid payment method: No such PaymentMethod: 'pm_1DoesNotExist'",
  );
  t.equal(
    stripe.customers.get(stripe_customer_id)?.invoice_settings.default_payment_method,
    paymentMethod,
    'a refused card changes nothing',
  );
});

t.test('provider failures: retried by the SDK when safe, honest about what is known when not', async (t) => {
  await t.test('a 500 that the SDK retries with the same idempotency key charges once', async (t) => {
    const { app, stripe } = await appOnFakeStripe(t, { STRIPE_MAX_NETWORK_RETRIES: '2' });
    const { user_id } = await customerWithCard(app);
    stripe.failNext(1);
    const response = await buy(app, user_id, 'package_1');
    t.equal(response.statusCode, 200);
    t.equal(intents(stripe).length, 1, 'one PaymentIntent');
    t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 100);
  });

  await t.test('Stripe down: the purchase stays pending and the caller is told the outcome is not known yet', async (t) => {
    const { app, stripe } = await appOnFakeStripe(t);
    const { user_id } = await customerWithCard(app);
    stripe.failNext(1, 503);
    const body = expectProblem(t, await buy(app, user_id, 'package_1'), 502, 'payment_pending');
    t.match(json(await get(app, `/stripe/transactions/${user_id}`))['transactions'], [
      { transaction_id: body['transaction_id'], status: 'pending' },
    ]);
    t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 0);
  });

  await t.test('a charge the SDK sent twice is not failed by the last attempt’s refusal: the first may have charged', async (t) => {
    const { app, stripe } = await appOnFakeStripe(t, { STRIPE_MAX_NETWORK_RETRIES: '2' });
    const { user_id } = await customerWithCard(app);
    // The first attempt gets a 500 (for all the SDK knows, Stripe charged); the retry is rate limited.
    stripe.failNext(1, 500);
    stripe.failNext(1, 429);
    const body = expectProblem(t, await buy(app, user_id, 'package_1'), 502, 'payment_pending');
    const transactionId = String(body['transaction_id']);
    t.same(
      stripe.requests.filter((r) => r.path === '/v1/payment_intents').map((r) => r.idempotencyKey),
      [transactionId, transactionId],
      "two attempts under the purchase's key",
    );
    t.match(json(await get(app, `/stripe/purchases/${transactionId}`)), { status: 'pending' }, 'left pending, not failed');
    const report = await reconcile({ store: app.store, payments: app.payments, log: app.log }, { olderThanMs: 0, keyTtlHours: 24 });
    t.same(report.outcomes, { succeeded: 1 }, 'reconciliation asks again with the same key and finishes it');
    t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 100, 'credited once');
    t.equal(intents(stripe).length, 1, 'charged once');
  });

  await t.test('a charge sent a first time is failed by a refusal that says nothing was charged (429)', async (t) => {
    const { app, stripe } = await appOnFakeStripe(t);
    const { user_id } = await customerWithCard(app);
    stripe.failNext(1, 429);
    const body = expectProblem(t, await buy(app, user_id, 'package_1'), 424, 'payment_provider_refused');
    t.match(json(await get(app, `/stripe/purchases/${String(body['transaction_id'])}`)), {
      status: 'failed',
      failure_code: 'payment_provider_error',
    });
    t.equal(intents(stripe).length, 0);
  });

  await t.test('asked again (reconciliation), a refusal leaves the purchase pending: the first call may have charged', async (t) => {
    const { app, stripe } = await appOnFakeStripe(t);
    const { user_id } = await customerWithCard(app);
    stripe.failNext(1, 503);
    const body = expectProblem(t, await buy(app, user_id, 'package_1'), 502, 'payment_pending');
    const transactionId = String(body['transaction_id']);
    const again = () => reconcile({ store: app.store, payments: app.payments, log: app.log }, { olderThanMs: 0, keyTtlHours: 24 });
    for (const status of [429, 401, 403]) {
      stripe.failNext(1, status);
      t.same((await again()).outcomes, { pending: 1 }, `${status}: still pending`);
    }
    t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 0);
    t.same((await again()).outcomes, { succeeded: 1 }, 'once Stripe answers, the purchase is finished');
    t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 100, 'credited once');
    t.match(json(await get(app, `/stripe/purchases/${transactionId}`)), { status: 'completed' });
  });

  await t.test('a lookup Stripe refuses does not fail a purchase that has a PaymentIntent', async (t) => {
    const { app, stripe } = await appOnFakeStripe(t);
    const { user_id } = await customerWithCard(app, 'pm_card_threeDSecure2Required');
    const body = expectProblem(t, await buy(app, user_id, 'package_1'), 402, 'authentication_required');
    const transactionId = String(body['transaction_id']);
    stripe.failNext(1, 429);
    t.match(json(await get(app, `/stripe/purchases/${transactionId}`)), { status: 'requires_action' }, 'still waiting for 3-D Secure');
    stripe.authenticate(String(body['payment_intent_id']), 'succeed');
    t.match(json(await get(app, `/stripe/purchases/${transactionId}`)), { status: 'completed' });
    t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 100);
  });

  await t.test('a refund the SDK sent twice is not recorded as refused by the last attempt: the first may have refunded', async (t) => {
    const { app, stripe } = await appOnFakeStripe(t, { STRIPE_MAX_NETWORK_RETRIES: '2' });
    const { user_id } = await customerWithCard(app);
    const { transaction_id } = json(await buy(app, user_id, 'package_1'));
    const refund = () =>
      app.inject({
        method: 'POST',
        url: `/stripe/purchases/${String(transaction_id)}/refund`,
        headers: { 'idempotency-key': 'too-much' },
        payload: { amount_cents: 5000 },
      });
    stripe.failNext(1, 500);
    expectProblem(
      t,
      await refund(),
      502,
      'payment_provider_error',
      'The payment provider failed or could not be reached, and the request may have taken effect there; retry with the same Idempotency-Key',
    );
    // Asked once, Stripe's refusal (more than was charged) is the answer, and the key keeps it.
    expectProblem(t, await refund(), 409, 'refund_rejected');
    const replayed = await refund();
    t.equal(replayed.statusCode, 409);
    t.equal(replayed.headers['idempotent-replayed'], 'true');
    t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 100, 'no coins taken back');
  });

  await t.test('Stripe unreachable when creating a customer: 502, nothing stored', async (t) => {
    const { app, stripe } = await appOnFakeStripe(t);
    await stripe.close();
    const response = await app.inject({
      method: 'POST',
      url: '/stripe/create-customer',
      payload: { email: 'a@example.com', name: 'A' },
    });
    expectProblem(t, response, 502, 'payment_provider_error');
    t.equal((await app.store.db.selectFrom('customers').select('user_id').execute()).length, 0);
  });
});
