/**
 * Stripe Checkout (issue 20): a package bought on Stripe's hosted page, through the real stripe SDK
 * against the fake Stripe server, credited exactly once by whichever learns of the payment first —
 * the checkout.session webhooks, the purchase lookup, or reconciliation.
 */
import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../src/config.js';
import { reconcile } from '../src/services/reconcile.js';
import { webhookRequest, type FakeStripe, type StripeEventObject } from './support/fake-stripe.js';
import {
  buildAppOnFakeStripe,
  buildTestApp,
  createCustomer,
  customerWithCard,
  expectProblem,
  get,
  json,
  post,
  storeCounts,
} from './support/helper.js';

const SECRET = 'whsec_test_checkout';
const SHOP = 'https://shop.example.com';
const urls = { success_url: `${SHOP}/coins/done?session_id={CHECKOUT_SESSION_ID}`, cancel_url: `${SHOP}/coins` };

async function appOnFakeStripe(t: Test, env: Record<string, string> = {}) {
  const { app, stripe } = await buildAppOnFakeStripe(t, { env: { STRIPE_WEBHOOK_SECRET: SECRET, CHECKOUT_RETURN_ORIGINS: SHOP, ...env } });
  const deliver = (event: StripeEventObject) => {
    const { payload, headers } = webhookRequest(event, SECRET);
    return app.inject({ method: 'POST', url: '/stripe/webhook', headers, payload });
  };
  return { app, stripe, deliver };
}

const openSession = (app: FastifyInstance, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url: '/stripe/checkout-sessions', payload: { ...urls, ...body }, headers });

const balance = async (app: FastifyInstance, userId: string) => json(await get(app, `/stripe/customer/${userId}`))['currency_balance'];
const purchase = async (app: FastifyInstance, transactionId: string) => json(await get(app, `/stripe/purchases/${transactionId}`));
const lastEvent = <T extends StripeEventObject['type']>(stripe: FakeStripe, type: T) => {
  const event = stripe.events.findLast((e): e is Extract<StripeEventObject, { type: T }> => e.type === type);
  if (!event) throw new Error(`no ${type} event`);
  return event;
};
const creditJournals = async (app: FastifyInstance, transactionId: string) =>
  (await app.store.db.selectFrom('ledger_journals').select('kind').where('transaction_id', '=', transactionId).execute()).filter(
    (j) => j.kind === 'purchase',
  ).length;

/** A player (no saved card) with an open Checkout Session for package_2 (300 coins, 25.00). */
async function opened(t: Test, app: FastifyInstance, stripe: FakeStripe) {
  const { user_id } = await createCustomer(app);
  const response = await openSession(app, { user_id, package_id: 'package_2' }, { 'idempotency-key': `open-${user_id}` });
  t.equal(response.statusCode, 200, response.body);
  const body = json(response) as { session_id: string; checkout_url: string; transaction_id: string; expires_at: string };
  const session = stripe.checkoutSessions.get(body.session_id);
  if (!session) throw new Error('no session at Stripe');
  return { user_id, ...body, session };
}

t.test(
  'a session is created with the catalog price, the customer, the transaction id and an idempotency key; no saved card needed',
  async (t) => {
    const { app, stripe } = await appOnFakeStripe(t);
    const { user_id, session_id, checkout_url, transaction_id, expires_at, session } = await opened(t, app, stripe);
    const customer = json(await get(app, `/stripe/customer/${user_id}`));
    t.equal(checkout_url, session.url, "the answer's checkout_url is Stripe's hosted page");
    t.match(checkout_url, /^https:\/\/checkout\.stripe\.com\//);
    t.match(session, {
      mode: 'payment',
      status: 'open',
      amount_total: 2500,
      currency: 'usd',
      customer: customer['stripe_customer_id'],
      client_reference_id: transaction_id,
      metadata: { transaction_id, user_id, package_id: 'package_2', coins: '300' },
      success_url: urls.success_url,
      cancel_url: urls.cancel_url,
      line_items_requested: [{ name: 'Popular Pack', unit_amount: 2500, currency: 'usd', quantity: 1 }],
      payment_intent_data_requested: { metadata: { transaction_id, user_id, package_id: 'package_2', coins: '300' } },
    });
    t.ok(session.success_url?.includes('{CHECKOUT_SESSION_ID}'), "Stripe's placeholder is passed on as it is");
    t.equal(new Date(expires_at).getTime(), session.expires_at * 1000);
    const minutes = (session.expires_at - session.created) / 60;
    t.ok(minutes > 59 && minutes <= 60, `expires after CHECKOUT_EXPIRY_MINUTES (60), got ${minutes}`);
    const creates = stripe.requests.filter((r) => r.method === 'POST' && r.path === '/v1/checkout/sessions');
    t.equal(creates.length, 1);
    t.equal(creates[0]?.idempotencyKey, `checkout-${transaction_id}`, "Stripe's idempotency key names the purchase");
    t.match(await purchase(app, transaction_id), {
      status: 'pending',
      package_id: 'package_2',
      amount_paid: 2500,
      currency_purchased: 300,
    });
    t.match(
      json(await get(app, `/stripe/transactions/${user_id}`))['transactions'],
      [{ transaction_id, status: 'pending' }],
      'in the history like any purchase',
    );
    t.equal(stripe.paymentIntents.size, 0, 'nothing charged yet');
    t.equal(session_id, session.id);

    const replay = await openSession(app, { user_id, package_id: 'package_2' }, { 'idempotency-key': `open-${user_id}` });
    t.equal(replay.headers['idempotent-replayed'], 'true');
    t.same(json(replay), { session_id, checkout_url, transaction_id, expires_at }, 'a retry with the same key answers the same session');
    t.equal(stripe.checkoutSessions.size, 1);
  },
);

t.test('paid: the lookup credits once, then the webhook (delivered three times at once) changes nothing', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t);
  const { user_id, session_id, transaction_id } = await opened(t, app, stripe);
  stripe.payCheckoutSession(session_id);
  const looked = await purchase(app, transaction_id);
  t.match(looked, { status: 'completed', payment_intent_id: stripe.checkoutSessions.get(session_id)?.payment_intent });
  t.equal(await balance(app, user_id), 300);
  const completed = lastEvent(stripe, 'checkout.session.completed');
  const answers = await Promise.all([deliver(completed), deliver(completed), deliver(completed)]);
  t.same(
    answers.map((a) => a.statusCode),
    [200, 200, 200],
  );
  await deliver(lastEvent(stripe, 'payment_intent.succeeded'));
  t.equal(await balance(app, user_id), 300, 'credited once');
  t.equal(await creditJournals(app, transaction_id), 1);
});

t.test('paid: the webhook first (three deliveries at once), then the lookup changes nothing', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t);
  const { user_id, session_id, transaction_id } = await opened(t, app, stripe);
  stripe.payCheckoutSession(session_id, { behavesLike: 'pm_card_threeDSecure2Required' });
  const completed = lastEvent(stripe, 'checkout.session.completed');
  t.equal(completed.data.object.payment_status, 'paid');
  const answers = await Promise.all([deliver(completed), deliver(completed), deliver(completed)]);
  t.same(
    answers.map((a) => a.statusCode),
    [200, 200, 200],
  );
  t.equal(await balance(app, user_id), 300);
  t.match(await purchase(app, transaction_id), { status: 'completed' });
  t.equal(await balance(app, user_id), 300, 'credited once');
  t.equal(await creditJournals(app, transaction_id), 1);
  const notified = await app.store.db.selectFrom('notifications').select('type').where('user_id', '=', user_id).execute();
  t.same(
    notified.map((n) => n.type),
    ['purchase.succeeded'],
    'the game is told once, as for a card purchase',
  );
});

t.test('expired: failed with checkout_expired, nothing credited, by the webhook or by the lookup', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t);
  const first = await opened(t, app, stripe);
  stripe.lapseCheckoutSession(first.session_id);
  t.equal((await deliver(lastEvent(stripe, 'checkout.session.expired'))).statusCode, 200);
  t.match(await purchase(app, first.transaction_id), { status: 'failed', failure_code: 'checkout_expired' });

  const second = await opened(t, app, stripe);
  stripe.lapseCheckoutSession(second.session_id);
  t.match(
    await purchase(app, second.transaction_id),
    { status: 'failed', failure_code: 'checkout_expired' },
    'the lookup finds it expired',
  );
  t.equal(await balance(app, first.user_id), 0);
  t.equal(await balance(app, second.user_id), 0);
  t.equal(stripe.paymentIntents.size, 0);
  const retried = await openSession(
    app,
    { user_id: second.user_id, package_id: 'package_2' },
    { 'idempotency-key': `open-${second.user_id}` },
  );
  t.equal(retried.headers['idempotent-replayed'], 'true', 'the first answer is kept for its key');
});

t.test('a delayed payment method: credited on async_payment_succeeded, failed on async_payment_failed', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t);
  const good = await opened(t, app, stripe);
  stripe.payCheckoutSession(good.session_id, { delayed: true });
  await deliver(lastEvent(stripe, 'checkout.session.completed'));
  t.match(await purchase(app, good.transaction_id), { status: 'pending' }, 'completed but unpaid: still pending');
  t.equal(await balance(app, good.user_id), 0);
  stripe.settleDelayedCheckout(good.session_id, 'succeed');
  await deliver(lastEvent(stripe, 'checkout.session.async_payment_succeeded'));
  t.match(await purchase(app, good.transaction_id), { status: 'completed' });
  t.equal(await balance(app, good.user_id), 300);

  const bad = await opened(t, app, stripe);
  stripe.payCheckoutSession(bad.session_id, { delayed: true });
  await deliver(lastEvent(stripe, 'checkout.session.completed'));
  stripe.settleDelayedCheckout(bad.session_id, 'fail');
  // The PaymentIntent's own failure does not decide a Checkout purchase; the session's event does.
  await deliver(lastEvent(stripe, 'payment_intent.payment_failed'));
  t.equal((await app.store.findPurchase(bad.transaction_id))?.status, 'pending');
  await deliver(lastEvent(stripe, 'checkout.session.async_payment_failed'));
  t.match(await purchase(app, bad.transaction_id), { status: 'failed', failure_code: 'async_payment_failed' });
  t.equal(await balance(app, bad.user_id), 0);
});

t.test('a delayed payment the lookup decides, without any webhook', async (t) => {
  const { app, stripe } = await appOnFakeStripe(t);
  const good = await opened(t, app, stripe);
  stripe.payCheckoutSession(good.session_id, { delayed: true });
  t.match(await purchase(app, good.transaction_id), { status: 'pending' });
  stripe.settleDelayedCheckout(good.session_id, 'succeed');
  t.match(await purchase(app, good.transaction_id), { status: 'completed' });
  const bad = await opened(t, app, stripe);
  stripe.payCheckoutSession(bad.session_id, { delayed: true });
  stripe.settleDelayedCheckout(bad.session_id, 'fail');
  t.match(await purchase(app, bad.transaction_id), { status: 'failed', failure_code: 'async_payment_failed' });
  t.equal(await balance(app, bad.user_id), 0);
});

t.test('a refund of a Checkout purchase takes the coins back; its charge names the purchase', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t);
  const { user_id, session_id, transaction_id } = await opened(t, app, stripe);
  stripe.payCheckoutSession(session_id);
  await deliver(lastEvent(stripe, 'checkout.session.completed'));
  t.equal(await balance(app, user_id), 300);
  const refunded = await app.inject({ method: 'POST', url: `/stripe/purchases/${transaction_id}/refund`, payload: {} });
  t.equal(refunded.statusCode, 200, refunded.body);
  t.match(json(refunded), { status: 'refunded', amount_refunded: 2500 });
  t.equal(await balance(app, user_id), 0);
  // A Dashboard refund's webhook finds the purchase by the charge's metadata too.
  const charge = [...stripe.charges.values()][0];
  t.equal(charge?.metadata['transaction_id'], transaction_id);
  await deliver(lastEvent(stripe, 'charge.refunded'));
  t.equal(await balance(app, user_id), 0, 'the webhook takes nothing more');
});

t.test('reconciliation finishes a Checkout purchase left by a crash, and credits nothing twice', async (t) => {
  const { app, stripe } = await appOnFakeStripe(t);
  const deps = { store: app.store, payments: app.payments, log: app.log };

  // 1. The process died between recording the purchase and creating the session: no session id.
  const { user_id } = await createCustomer(app);
  stripe.failNext(1, 500, { method: 'POST', path: /^\/v1\/checkout\/sessions$/ });
  const lost = await openSession(app, { user_id, package_id: 'package_1' });
  expectProblem(t, lost, 502, 'payment_provider_error');
  const orphan = String(json(lost)['transaction_id']);
  t.match(await purchase(app, orphan), { status: 'pending' }, 'the lookup leaves it while its request may still be running');

  // 2. Paid at Stripe, but the webhook never came and nobody looked it up.
  const paid = await opened(t, app, stripe);
  stripe.payCheckoutSession(paid.session_id);

  const report = await reconcile(deps, { olderThanMs: 0, keyTtlHours: 24 });
  t.equal(report.checked, 2);
  t.match(await purchase(app, orphan), { status: 'failed', failure_code: 'checkout_expired' }, 'never sent to anyone: nobody can pay it');
  t.match(await purchase(app, paid.transaction_id), { status: 'completed' });
  t.equal(await balance(app, paid.user_id), 300);
  t.same(report.mismatches, []);

  const again = await reconcile(deps, { olderThanMs: 0, keyTtlHours: 24 });
  t.equal(again.checked, 0, 'nothing left to finish');
  t.equal(await balance(app, paid.user_id), 300);
  t.equal(await creditJournals(app, paid.transaction_id), 1);
  t.equal(await balance(app, user_id), 0);
});

t.test('refused before anything is recorded or sent to Stripe', async (t) => {
  const { app, stripe } = await appOnFakeStripe(t, { API_KEYS: 'k'.repeat(32), CLIENT_TOKEN_SECRETS: 's'.repeat(32) });
  const auth = { authorization: `Bearer ${'k'.repeat(32)}` };
  const customer = await app.inject({
    method: 'POST',
    url: '/stripe/create-customer',
    headers: auth,
    payload: { email: 'a@example.com', name: 'A' },
  });
  const { user_id } = json(customer) as { user_id: string };
  const other = json(
    await app.inject({ method: 'POST', url: '/stripe/create-customer', headers: auth, payload: { email: 'b@example.com', name: 'B' } }),
  ) as { user_id: string };
  const before = await storeCounts(app);
  const sentBefore = stripe.requests.length;

  const cases: [string, Record<string, unknown>, number, string, string | undefined][] = [
    [
      'another origin',
      { success_url: 'https://evil.example/done' },
      400,
      'invalid_return_url',
      'Return URL not allowed: body/success_url must be on an origin in CHECKOUT_RETURN_ORIGINS (https://evil.example is not)',
    ],
    [
      'javascript:',
      { cancel_url: 'javascript:alert(1)' },
      400,
      'invalid_return_url',
      'Return URL not allowed: body/cancel_url must be an absolute https URL',
    ],
    [
      'a relative URL',
      { success_url: '/coins/done' },
      400,
      'invalid_return_url',
      'Return URL not allowed: body/success_url must be an absolute https URL',
    ],
    [
      'http on an allowed host',
      { success_url: 'http://shop.example.com/done' },
      400,
      'invalid_return_url',
      'Return URL not allowed: body/success_url must be an absolute https URL',
    ],
    ['an unknown package', { package_id: 'package_9' }, 400, 'invalid_package', 'Invalid package ID'],
    ['an unknown player', { user_id: '00000000-0000-4000-8000-000000000000' }, 404, 'customer_not_found', 'Customer not found'],
  ];
  for (const [what, change, status, code, detail] of cases) {
    const response = await app.inject({
      method: 'POST',
      url: '/stripe/checkout-sessions',
      headers: auth,
      payload: { ...urls, user_id, package_id: 'package_1', ...change },
    });
    const body = expectProblem(t, response, status, code, detail);
    if (code === 'invalid_return_url') t.match(body['errors'], [{ field: `body/${Object.keys(change)[0]}` }], `${what}: names the field`);
  }
  const token = json(
    await app.inject({ method: 'POST', url: '/stripe/client-tokens', headers: auth, payload: { user_id: other.user_id } }),
  )['token'];
  const forbidden = await app.inject({
    method: 'POST',
    url: '/stripe/checkout-sessions',
    headers: { authorization: `Bearer ${String(token)}` },
    payload: { ...urls, user_id, package_id: 'package_1' },
  });
  expectProblem(t, forbidden, 403, 'forbidden');
  t.same(await storeCounts(app), before, 'nothing recorded');
  t.equal(stripe.requests.length, sentBefore, 'nothing sent to Stripe');

  const own = await app.inject({
    method: 'POST',
    url: '/stripe/checkout-sessions',
    headers: { authorization: `Bearer ${String(token)}` },
    payload: { ...urls, user_id: other.user_id, package_id: 'package_1' },
  });
  t.equal(own.statusCode, 200, "the player's own client token may open a session");
});

t.test('a card purchase is untouched by Checkout: the saved-card flow still needs its card', async (t) => {
  const { app } = await appOnFakeStripe(t);
  const { user_id } = await customerWithCard(app);
  const bought = await app.inject({ method: 'POST', url: '/stripe/purchase-currency', payload: { user_id, package_id: 'package_1' } });
  t.equal(bought.statusCode, 200);
  const { user_id: cardless } = await createCustomer(app);
  expectProblem(
    t,
    await app.inject({ method: 'POST', url: '/stripe/purchase-currency', payload: { user_id: cardless, package_id: 'package_1' } }),
    400,
    'no_payment_method',
  );
});

t.test('CHECKOUT_RETURN_ORIGINS must be https origins: a bad value stops the start with one line naming it', async (t) => {
  for (const bad of [
    'http://shop.example.com',
    'https://shop.example.com/coins',
    'shop.example.com',
    'https://a.example.com,,https://b.example.com',
  ]) {
    t.throws(
      () => loadConfig({ CHECKOUT_RETURN_ORIGINS: bad }),
      {
        name: 'ConfigError',
        variable: 'CHECKOUT_RETURN_ORIGINS',
        message: /^Invalid configuration: CHECKOUT_RETURN_ORIGINS must be [^\n]+$/,
      },
      bad,
    );
  }
  t.equal(
    loadConfig({ CHECKOUT_RETURN_ORIGINS: 'https://shop.example.com,https://m.example.com:8443' }).CHECKOUT_RETURN_ORIGINS,
    'https://shop.example.com,https://m.example.com:8443',
  );
  t.throws(
    () => loadConfig({ CHECKOUT_EXPIRY_MINUTES: '10' }),
    { name: 'ConfigError', variable: 'CHECKOUT_EXPIRY_MINUTES' },
    "below Stripe's 30 minutes",
  );
  // The expiry counts from the purchase's creation, and the session is created a moment later (or
  // re-sent later under the same key): at exactly 30 it would fall under Stripe's minimum.
  t.throws(
    () => loadConfig({ CHECKOUT_EXPIRY_MINUTES: '30' }),
    { name: 'ConfigError', variable: 'CHECKOUT_EXPIRY_MINUTES' },
    "30 leaves no margin over Stripe's minimum",
  );
  t.equal(loadConfig({ CHECKOUT_EXPIRY_MINUTES: '31' }).CHECKOUT_EXPIRY_MINUTES, 31);
});

t.test('offline: the simulated hosted page, and the simulator completing, failing or expiring a session', async (t) => {
  const app = await buildTestApp(t);
  const base = 'http://localhost:80';
  const open = async (userId: string) => {
    const response = await app.inject({
      method: 'POST',
      url: '/stripe/checkout-sessions',
      headers: { host: 'localhost:80' },
      payload: {
        user_id: userId,
        package_id: 'package_3',
        success_url: `${base}/checkout?checkout=paid&session_id={CHECKOUT_SESSION_ID}`,
        cancel_url: `${base}/checkout?checkout=canceled`,
      },
    });
    t.equal(response.statusCode, 200, response.body);
    return json(response) as { session_id: string; checkout_url: string; transaction_id: string };
  };
  const { user_id } = await createCustomer(app);

  const first = await open(user_id);
  t.equal(
    first.checkout_url,
    `http://localhost/checkout/pay/${first.session_id}`,
    "in development coinshop's own origin is a return origin, and hosts the page",
  );
  const shown = await app.inject({ method: 'GET', url: `/checkout/pay/${first.session_id}` });
  t.equal(shown.statusCode, 200);
  t.match(shown.headers['content-type'], /^text\/html/);
  t.match(shown.headers['content-security-policy'], /default-src 'none'.*form-action 'self' http:\/\/localhost/);
  t.notMatch(shown.body, /<script/i, 'the page runs no script');
  t.match(shown.body, /Premium Pack/);
  t.match(shown.body, /\$50\.00/);
  t.match(shown.body, /value="pm_card_visa" checked/);

  const declined = await app.inject({
    method: 'POST',
    url: `/checkout/pay/${first.session_id}`,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'action=pay&card=pm_card_chargeDeclined',
  });
  t.equal(declined.statusCode, 402);
  t.match(declined.body, /Your card was declined \(card_declined\)/);
  t.match(json(await get(app, `/stripe/purchases/${first.transaction_id}`)), { status: 'pending' }, 'a decline leaves the session open');
  const canceled = await app.inject({
    method: 'POST',
    url: `/checkout/pay/${first.session_id}`,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'action=cancel',
  });
  t.equal(canceled.statusCode, 303);
  t.equal(canceled.headers['location'], `${base}/checkout?checkout=canceled`);
  const paid = await app.inject({
    method: 'POST',
    url: `/checkout/pay/${first.session_id}`,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'action=pay&card=pm_card_visa',
  });
  t.equal(paid.statusCode, 303);
  t.equal(paid.headers['location'], `${base}/checkout?checkout=paid&session_id=${first.session_id}`, '{CHECKOUT_SESSION_ID} filled in');
  t.match(
    json(await get(app, `/stripe/purchases/${first.transaction_id}`)),
    { status: 'completed', currency_purchased: 700 },
    'the webhooks credited it',
  );
  const again = await app.inject({
    method: 'POST',
    url: `/checkout/pay/${first.session_id}`,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'action=pay',
  });
  t.equal(again.statusCode, 409, 'a paid session cannot be paid again');
  t.equal((await app.inject({ method: 'GET', url: '/checkout/pay/cs_sim_unknown' })).statusCode, 404);

  const failing = await open(user_id);
  const failed = await post(app, `/simulator/checkout-sessions/${failing.session_id}`, { outcome: 'fail' });
  t.match(json(failed), { purchase: { status: 'failed', failure_code: 'async_payment_failed' } });
  const expiring = await open(user_id);
  const expired = await post(app, `/simulator/checkout-sessions/${expiring.session_id}`, { outcome: 'expire' });
  t.match(json(expired), { purchase: { status: 'failed', failure_code: 'checkout_expired' } });
  expectProblem(t, await post(app, `/simulator/checkout-sessions/${expiring.session_id}`, { outcome: 'complete' }), 409, 'invalid_state');
  expectProblem(t, await post(app, '/simulator/checkout-sessions/cs_sim_unknown', { outcome: 'complete' }), 404, 'not_found');
  t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 700, 'only the paid session credited');
  const notified = await app.store.db.selectFrom('notifications').select('type').where('user_id', '=', user_id).orderBy('seq').execute();
  t.same(
    notified.map((n) => n.type),
    ['purchase.succeeded', 'purchase.failed', 'purchase.failed'],
    'the game hears of each, as of card purchases',
  );
});
