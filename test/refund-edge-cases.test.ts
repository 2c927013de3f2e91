/**
 * Issue 21, the refund cases: a refund made in Stripe is always answered from the refund itself, a
 * retry with the same Idempotency-Key answers what happened, a refund that fails later gives the
 * coins back, and a refund whose answer never reached the database is finished by reconciliation.
 * Everything goes through the real stripe SDK against the project's Stripe-compatible server.
 */
import type { FastifyInstance } from 'fastify';
import t, { type Test } from 'tap';
import { reconcile } from '../src/services/reconcile.js';
import { webhookRequest, type FakeStripe, type StripeEventObject } from './support/fake-stripe.js';
import { buildAppOnFakeStripe, buy, customerWithCard, expectProblem, get, json } from './support/helper.js';

const SECRET = 'whsec_test_refund_edge_cases';
const MAY_HAVE_TAKEN_EFFECT =
  'The payment provider failed or could not be reached, and the request may have taken effect there; retry with the same Idempotency-Key';

async function shop(t: Test, env: Record<string, string> = {}) {
  const { app, stripe } = await buildAppOnFakeStripe(t, { env: { STRIPE_WEBHOOK_SECRET: SECRET, ...env } });
  const deliver = (event: StripeEventObject) => {
    const { payload, headers } = webhookRequest(event, SECRET);
    return app.inject({ method: 'POST', url: '/stripe/webhook', headers, payload });
  };
  /** The operator's refund call. */
  const refund = (transactionId: string, key: string | undefined, body: { amount_cents?: number } = {}) =>
    app.inject({
      method: 'POST',
      url: `/stripe/purchases/${transactionId}/refund`,
      headers: key === undefined ? {} : { 'idempotency-key': key },
      payload: body,
    });
  return { app, stripe, deliver, refund };
}

async function paidPurchase(app: FastifyInstance, card: string, packageId: string) {
  const { user_id } = await customerWithCard(app, card);
  const bought = await buy(app, user_id, packageId);
  if (bought.statusCode !== 200) throw new Error(`buy: ${bought.statusCode} ${bought.body}`);
  return { userId: user_id, transactionId: String(json(bought)['transaction_id']) };
}

const balance = async (app: FastifyInstance, userId: string) => json(await get(app, `/stripe/customer/${userId}`))['currency_balance'];
const purchase = async (app: FastifyInstance, transactionId: string) => json(await get(app, `/stripe/purchases/${transactionId}`));
const journals = async (app: FastifyInstance) =>
  (await app.store.db.selectFrom('ledger_journals').select(['kind']).orderBy('id').execute()).map((j) => j.kind);
const eventsOf = (stripe: FakeStripe, type: StripeEventObject['type']) => stripe.events.filter((e) => e.type === type);

/** Waits until Stripe has run the request whose answer is delayed (coinshop stopped waiting for it). */
async function untilStripeRefunded(stripe: FakeStripe, count: number) {
  for (let waited = 0; stripe.refunds.size < count && waited < 5000; waited += 25) await new Promise((resolve) => setTimeout(resolve, 25));
  if (stripe.refunds.size < count) throw new Error('Stripe made no refund');
}

t.test('case 2: a refund Stripe made is answered from the refund, even when a read after it is refused (4xx)', async (t) => {
  const { app, stripe, refund } = await shop(t);
  const { userId, transactionId } = await paidPurchase(app, 'pm_card_visa', 'package_1');
  // Were coinshop to read the charge after creating the refund, Stripe would refuse that read.
  stripe.failNext(1, 404, { method: 'GET', path: /^\/v1\/charges\// });

  const first = await refund(transactionId, 'refund-case-2');
  t.equal(first.statusCode, 200, `the refund happened, so the operator hears so (got ${first.body})`);
  t.match(json(first), { transaction_id: transactionId, status: 'refunded', amount_refunded: 1000 });
  t.equal(await balance(app, userId), 0, 'the coins are taken back');
  t.equal(stripe.refunds.size, 1);

  const again = await refund(transactionId, 'refund-case-2');
  t.equal(again.statusCode, 200);
  t.equal(again.headers['idempotent-replayed'], 'true', 'the key keeps the answer');
  t.same(json(again), json(first));
  t.equal(await balance(app, userId), 0);
  t.equal(stripe.refunds.size, 1, 'refunded once');
});

t.test('case 3: a refund Stripe made is answered from the refund, even when a read after it fails (429/5xx)', async (t) => {
  for (const status of [429, 503]) {
    await t.test(`the read would get ${status}`, async (t) => {
      const { app, stripe, refund } = await shop(t);
      const { userId, transactionId } = await paidPurchase(app, 'pm_card_visa', 'package_2');
      stripe.failNext(1, status, { method: 'GET', path: /^\/v1\/charges\// });
      const answer = await refund(transactionId, 'refund-case-3', { amount_cents: 1000 });
      t.equal(answer.statusCode, 200, `no 502 that would invite a second refund (got ${answer.body})`);
      t.match(json(answer), { status: 'partially_refunded', amount_refunded: 1000 });
      // 1000 of 2500 cents: 120 of 300 coins taken back.
      t.equal(await balance(app, userId), 180);
      t.equal(stripe.refunds.size, 1);
    });
  }

  await t.test(
    'where a 502 remains (the create itself failed), it says to retry with the same key, and that retry refunds once',
    async (t) => {
      const { app, stripe, refund } = await shop(t);
      const { userId, transactionId } = await paidPurchase(app, 'pm_card_visa', 'package_1');
      stripe.failNext(1, 503, { method: 'POST', path: /^\/v1\/refunds$/ });
      expectProblem(t, await refund(transactionId, 'refund-case-3b'), 502, 'payment_provider_error', MAY_HAVE_TAKEN_EFFECT);
      const retried = await refund(transactionId, 'refund-case-3b');
      t.equal(retried.statusCode, 200);
      t.match(json(retried), { status: 'refunded', amount_refunded: 1000 });
      t.equal(await balance(app, userId), 0);
      t.equal(stripe.refunds.size, 1);
    },
  );
});

t.test('case 4: a full refund settled by its webhook before the operator retries: the retry answers the refund', async (t) => {
  const { app, stripe, deliver, refund } = await shop(t, { STRIPE_TIMEOUT_MS: '200' });
  const { userId, transactionId } = await paidPurchase(app, 'pm_card_visa', 'package_1');
  // Stripe refunds, but its answer comes after coinshop stopped waiting.
  stripe.setLatency(600);
  expectProblem(t, await refund(transactionId, 'refund-case-4'), 502, 'payment_provider_error', MAY_HAVE_TAKEN_EFFECT);
  await untilStripeRefunded(stripe, 1);
  stripe.setLatency(0);
  const [refunded] = eventsOf(stripe, 'charge.refunded');
  if (!refunded) throw new Error('no charge.refunded event');
  t.same(json(await deliver(refunded)), { received: true, outcome: 'processed' });
  t.match(await purchase(app, transactionId), { status: 'refunded', amount_refunded: 1000 });

  const retried = await refund(transactionId, 'refund-case-4');
  t.equal(retried.statusCode, 200, `the retry answers what happened, not a conflict (got ${retried.body})`);
  t.match(json(retried), { transaction_id: transactionId, status: 'refunded', amount_refunded: 1000 });
  t.equal(await balance(app, userId), 0, 'taken back once');
  t.equal(stripe.refunds.size, 1, 'refunded once');
  t.same(await journals(app), ['purchase', 'refund']);

  // A new refund (another key) of the refunded purchase is still refused before Stripe is asked.
  expectProblem(t, await refund(transactionId, 'refund-case-4-other'), 409, 'invalid_state');
});

t.test('case 5: a refund that fails later gives the coins back', async (t) => {
  await t.test('an operator refund, then Stripe reports it failed', async (t) => {
    const { app, stripe, deliver, refund } = await shop(t);
    const { userId, transactionId } = await paidPurchase(app, 'pm_card_refundFail', 'package_2');
    const answer = await refund(transactionId, 'refund-case-5');
    t.match(json(answer), { status: 'refunded', amount_refunded: 2500 });
    t.equal(await balance(app, userId), 0);

    const [made] = [...stripe.refunds.values()];
    if (!made) throw new Error('no refund');
    stripe.failRefund(made.id);
    const [updated] = eventsOf(stripe, 'charge.refund.updated');
    const [failed] = eventsOf(stripe, 'refund.failed');
    if (!updated || !failed) throw new Error('no refund failure events');
    t.same(json(await deliver(updated)), { received: true, outcome: 'processed' });
    t.match(await purchase(app, transactionId), { status: 'completed', amount_refunded: 0 });
    t.equal(await balance(app, userId), 300, 'the coins taken back are returned');
    t.same(await journals(app), ['purchase', 'refund', 'refund_reversal'], 'with a ledger entry that says why');

    // The failure told twice, and the refund's own (older) charge.refunded arriving late, change nothing.
    t.equal(json(await deliver(failed))['received'], true);
    const [refundedEvent] = eventsOf(stripe, 'charge.refunded');
    if (!refundedEvent) throw new Error('no charge.refunded event');
    t.equal(json(await deliver(refundedEvent))['received'], true);
    t.match(await purchase(app, transactionId), { status: 'completed', amount_refunded: 0 });
    t.equal(await balance(app, userId), 300);

    // The player can be refunded again, for real this time.
    const second = await refund(transactionId, 'refund-case-5-again', { amount_cents: 1000 });
    t.match(json(second), { status: 'partially_refunded', amount_refunded: 1000 });
    t.equal(await balance(app, userId), 180);
    t.same(await app.store.balanceMismatches(), []);
    t.same(await app.store.unbalancedJournals(), []);
  });

  await t.test('a Dashboard refund and its failure, heard only by webhook, in either order', async (t) => {
    for (const order of ['as they happened', 'reversed'] as const) {
      const { app, stripe, deliver } = await shop(t);
      const { userId, transactionId } = await paidPurchase(app, 'pm_card_refundFail', 'package_3');
      const payment = stripe.paymentIntents.get(String((await purchase(app, transactionId))['payment_intent_id']));
      if (!payment) throw new Error('no PaymentIntent');
      const before = stripe.events.length;
      const sdk = new (await import('stripe')).default('sk_test_coinshop', { host: '127.0.0.1', port: stripe.port, protocol: 'http' });
      const made = await sdk.refunds.create({ payment_intent: payment.id, amount: 1000 });
      stripe.failRefund(made.id);
      // As an endpoint on an API version without refund.created hears it: the refund's own creation is not told.
      const events = stripe.events.slice(before).filter((e) => e.type !== 'refund.created');
      t.same(
        events.map((e) => e.type),
        ['charge.refunded', 'charge.refund.updated', 'refund.failed'],
      );
      for (const event of order === 'reversed' ? events.reverse() : events)
        t.equal((await deliver(event)).statusCode, 200, `${order}: ${event.type}`);
      t.match(await purchase(app, transactionId), { status: 'completed', amount_refunded: 0 }, order);
      t.equal(await balance(app, userId), 700, `${order}: the player keeps the coins of money that was not refunded`);
      t.same(await app.store.balanceMismatches(), []);
    }
  });
});

t.test('a refund interrupted between Stripe and the database is finished by reconciliation', async (t) => {
  const { app, stripe, refund } = await shop(t, { STRIPE_TIMEOUT_MS: '200' });
  const { userId, transactionId } = await paidPurchase(app, 'pm_card_visa', 'package_2');
  // Stripe refunds 1000 cents; coinshop never hears the answer (and no webhook comes).
  stripe.setLatency(600);
  expectProblem(
    t,
    await refund(transactionId, 'refund-interrupted', { amount_cents: 1000 }),
    502,
    'payment_provider_error',
    MAY_HAVE_TAKEN_EFFECT,
  );
  await untilStripeRefunded(stripe, 1);
  stripe.setLatency(0);
  t.equal(await balance(app, userId), 300, 'nothing taken back yet');

  await reconcile({ store: app.store, payments: app.payments, log: app.log }, { olderThanMs: 0, keyTtlHours: 24 });
  t.match(await purchase(app, transactionId), { status: 'partially_refunded', amount_refunded: 1000 });
  t.equal(await balance(app, userId), 180, 'the refund is taken back by reconciliation');
  t.equal(stripe.refunds.size, 1, 'asked again with the same idempotency key: one refund');

  // Reconciliation again changes nothing; the operator's retry answers the same refund.
  await reconcile({ store: app.store, payments: app.payments, log: app.log }, { olderThanMs: 0, keyTtlHours: 24 });
  const retried = await refund(transactionId, 'refund-interrupted', { amount_cents: 1000 });
  t.equal(retried.statusCode, 200);
  t.match(json(retried), { status: 'partially_refunded', amount_refunded: 1000 });
  t.equal(await balance(app, userId), 180);
  t.equal(stripe.refunds.size, 1);
  t.same(await app.store.balanceMismatches(), []);
});

t.test(
  'after a refund failed, a Dashboard refund heard only through charge.refunded is counted: coinshop asks Stripe for the refunds',
  async (t) => {
    const { app, stripe, deliver, refund } = await shop(t);
    const { userId, transactionId } = await paidPurchase(app, 'pm_card_refundFail', 'package_3');
    t.equal((await refund(transactionId, 'refund-then-fail', { amount_cents: 1000 })).statusCode, 200);
    const [failing] = [...stripe.refunds.values()];
    stripe.failRefund(String(failing?.id));
    for (const event of eventsOf(stripe, 'charge.refund.updated')) await deliver(event);
    t.match(await purchase(app, transactionId), { status: 'completed', amount_refunded: 0 }, 'the failed refund gave its coins back');
    t.equal(await balance(app, userId), 700);

    // A refund made in the Dashboard, on an endpoint that hears charge.refunded but not refund.created.
    const before = stripe.events.length;
    const payment = stripe.paymentIntents.get(String((await purchase(app, transactionId))['payment_intent_id']));
    const sdk = new (await import('stripe')).default('sk_test_coinshop', { host: '127.0.0.1', port: stripe.port, protocol: 'http' });
    await sdk.refunds.create({ payment_intent: String(payment?.id), amount: 2500 });
    const charged = stripe.events.slice(before).filter((e) => e.type === 'charge.refunded');
    t.equal(charged.length, 1);
    for (const event of charged) t.equal((await deliver(event)).statusCode, 200);
    t.match(await purchase(app, transactionId), { status: 'partially_refunded', amount_refunded: 2500 });
    t.equal(await balance(app, userId), 350, 'half of the 700 coins taken back');
    t.ok(
      stripe.requests.some((r) => r.method === 'GET' && r.path === '/v1/refunds'),
      "the charge's refunds were listed",
    );
    t.same(await app.store.balanceMismatches(), []);
  },
);
