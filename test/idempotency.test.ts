import t, { type Test } from 'tap';
import { createStripeClient, StripeGateway } from '../src/gateway/stripe.js';
import type { ChargeOutcome, ChargeRequest } from '../src/gateway/types.js';
import { reconcile } from '../src/services/reconcile.js';
import { Store } from '../src/store/store.js';
import { startFakeStripe, webhookRequest, type FakeStripe } from './support/fake-stripe.js';
import { TEST_ENGINE } from './support/database.js';
import { buildAppOnFakeStripe, buildTestApp, customerWithCard, createCustomer, expectProblem, get, json } from './support/helper.js';

const WEBHOOK_SECRET = 'whsec_test_idempotency';

const appOnFakeStripe = (t: Test, latencyMs = 0) => buildAppOnFakeStripe(t, { latencyMs, env: { STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET } });

const purchaseWithKey = (app: Awaited<ReturnType<typeof buildTestApp>>, key: string, body: object) =>
  app.inject({ method: 'POST', url: '/stripe/purchase-currency', headers: { 'idempotency-key': key }, payload: body });

const createdIntents = (stripe: FakeStripe) => stripe.requests.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents');

t.test('a retry with the same key replays the first answer and charges nothing more', async (t) => {
  const { app, stripe } = await appOnFakeStripe(t);
  const { user_id } = await customerWithCard(app);
  const first = await purchaseWithKey(app, 'order-1', { user_id, package_id: 'package_2' });
  t.equal(first.statusCode, 200);
  t.notOk(first.headers['idempotent-replayed']);
  for (let i = 0; i < 3; i++) {
    const again = await purchaseWithKey(app, 'order-1', { package_id: 'package_2', user_id });
    t.equal(again.statusCode, 200);
    t.equal(again.headers['idempotent-replayed'], 'true');
    t.same(json(again), json(first), 'the same body, field for field (key order in the request does not matter)');
  }
  t.equal(stripe.paymentIntents.size, 1, 'one PaymentIntent');
  t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 300, 'credited once');

  const other = await purchaseWithKey(app, 'order-1', { user_id, package_id: 'package_3' });
  expectProblem(t, other, 422, 'idempotency_key_reused');
  t.equal(stripe.paymentIntents.size, 1, 'a reused key with another body charges nothing');
  t.equal((json(await get(app, `/stripe/transactions/${user_id}`))['transactions'] as unknown[]).length, 1);

  const declined = await customerWithCard(app, 'pm_card_chargeDeclined');
  const decline = await purchaseWithKey(app, 'order-2', { user_id: declined.user_id, package_id: 'package_1' });
  const declineAgain = await purchaseWithKey(app, 'order-2', { user_id: declined.user_id, package_id: 'package_1' });
  expectProblem(t, decline, 400, 'card_declined', 'Card was declined');
  t.equal(declineAgain.statusCode, 400);
  t.equal(declineAgain.headers['idempotent-replayed'], 'true');
  t.same(json(declineAgain), json(decline), "a decline is replayed too, with the first request's id");
  t.equal(createdIntents(stripe).length, 2, 'the replayed decline did not go to Stripe again');

  const badKey = await app.inject({
    method: 'POST',
    url: '/stripe/purchase-currency',
    headers: { 'idempotency-key': 'x'.repeat(256) },
    payload: { user_id, package_id: 'package_1' },
  });
  expectProblem(t, badKey, 400, 'validation_error');
  t.equal(stripe.paymentIntents.size, 2);
});

t.test('50 concurrent purchases with one Idempotency-Key make one PaymentIntent and one credit', async (t) => {
  const { app, stripe } = await appOnFakeStripe(t, 150);
  const { user_id } = await customerWithCard(app);
  const responses = await Promise.all(
    Array.from({ length: 50 }, () => purchaseWithKey(app, 'one-tap-buy', { user_id, package_id: 'package_1' })),
  );
  const statuses = responses.map((r) => r.statusCode);
  t.equal(statuses.filter((s) => s === 200).length + statuses.filter((s) => s === 409).length, 50, 'each got the answer or "in use"');
  t.ok(statuses.includes(200));
  for (const busy of responses.filter((r) => r.statusCode === 409)) expectProblem(t, busy, 409, 'idempotency_key_in_use');
  t.equal(createdIntents(stripe).length, 1, 'one PaymentIntent request reached Stripe');
  t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 100, 'one credit');
  const after = await purchaseWithKey(app, 'one-tap-buy', { user_id, package_id: 'package_1' });
  t.equal(after.headers['idempotent-replayed'], 'true', 'once finished, the key replays');
});

t.test('other POSTs are idempotent too: create customer, attach, spend', async (t) => {
  const app = await buildTestApp(t);
  const create = () =>
    app.inject({
      method: 'POST',
      url: '/stripe/create-customer',
      headers: { 'idempotency-key': 'signup-7' },
      payload: { email: 'p@example.com', name: 'P' },
    });
  const a = await create();
  const b = await create();
  t.same(json(b), json(a));
  t.equal(b.headers['idempotent-replayed'], 'true');
  t.equal((await app.store.db.selectFrom('customers').select('user_id').execute()).length, 1, 'one customer');

  const user_id = String(json(a)['user_id']);
  await app.inject({ method: 'POST', url: '/stripe/attach-payment-method', payload: { user_id, payment_method_id: 'pm_card_visa' } });
  await app.inject({ method: 'POST', url: '/stripe/purchase-currency', payload: { user_id, package_id: 'package_3' } });
  const spend = () =>
    app.inject({
      method: 'POST',
      url: '/stripe/spend-currency',
      headers: { 'idempotency-key': 'sword' },
      payload: { user_id, amount: 250, item_id: 'sword' },
    });
  t.equal(json(await spend())['new_balance'], 450);
  const replay = await spend();
  t.equal(replay.headers['idempotent-replayed'], 'true');
  t.equal(json(replay)['new_balance'], 450);
  t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 450, 'spent once');
});

t.test('when Stripe does not answer, the key is let go and a retry finishes the same purchase', async (t) => {
  const { app, stripe } = await appOnFakeStripe(t);
  const { user_id } = await customerWithCard(app);
  stripe.failNext(1, 503);
  const first = await purchaseWithKey(app, 'retry-me', { user_id, package_id: 'package_1' });
  const { transaction_id } = expectProblem(t, first, 502, 'payment_pending');
  const retry = await purchaseWithKey(app, 'retry-me', { user_id, package_id: 'package_1' });
  t.equal(retry.statusCode, 200);
  t.notOk(retry.headers['idempotent-replayed'], 'a retry of an unfinished request runs, it is not a replay');
  t.equal(json(retry)['transaction_id'], transaction_id, 'the same purchase, not a second one');
  t.equal(stripe.paymentIntents.size, 1);
  const keys = createdIntents(stripe).map((r) => r.idempotencyKey);
  t.same(keys, [transaction_id, transaction_id], "both attempts used the purchase's idempotency key at Stripe");
  t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 100);
});

t.test('a crash after Stripe charged but before the credit: reconcile or the webhook credits exactly once', async (t) => {
  // The gateway charges for real, then the process "dies": nothing after the Stripe call is recorded.
  class CrashAfterCharge extends StripeGateway {
    crash = true;
    override async chargeSavedCard(charge: ChargeRequest): Promise<ChargeOutcome> {
      const outcome = await super.chargeSavedCard(charge);
      if (this.crash) throw new Error('process killed');
      return outcome;
    }
  }
  for (const path of ['reconcile', 'webhook', 'both'] as const) {
    await t.test(path, async (t) => {
      const stripe = await startFakeStripe();
      t.teardown(() => stripe.close());
      const client = createStripeClient({ secretKey: 'sk_test_coinshop', apiBase: stripe.url, maxNetworkRetries: 0, timeoutMs: 5000 });
      const gateway = new CrashAfterCharge(client, WEBHOOK_SECRET);
      const app = await buildTestApp(t, { gateway });
      const { user_id } = await customerWithCard(app);
      const crashed = await app.inject({ method: 'POST', url: '/stripe/purchase-currency', payload: { user_id, package_id: 'package_2' } });
      const { transaction_id } = expectProblem(t, crashed, 502, 'payment_pending');
      t.equal(stripe.paymentIntents.size, 1, 'Stripe charged');
      t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 0, 'but nothing was credited');
      gateway.crash = false;

      if (path !== 'reconcile') {
        const succeeded = stripe.events.find((e) => e.type === 'payment_intent.succeeded');
        if (!succeeded) throw new Error('no payment_intent.succeeded event');
        const { payload, headers } = webhookRequest(succeeded, WEBHOOK_SECRET);
        const delivered = await app.inject({ method: 'POST', url: '/stripe/webhook', headers, payload });
        t.same(json(delivered), { received: true, outcome: 'processed' });
      }
      if (path !== 'webhook') {
        const report = await reconcile({ store: app.store, payments: app.payments, log: app.log }, { olderThanMs: 0, keyTtlHours: 24 });
        t.same(report.mismatches, []);
        t.same(report.unbalancedJournals, []);
      }
      t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 300, 'credited once');
      t.equal(stripe.paymentIntents.size, 1, 'and charged once');
      t.match(json(await get(app, `/stripe/purchases/${String(transaction_id)}`)), { status: 'completed' });
      const credits = await app.store.db.selectFrom('ledger_journals').select('id').where('kind', '=', 'purchase').execute();
      t.equal(credits.length, 1, 'one purchase journal');
    });
  }
});

t.test('keys are scoped to the caller and forgotten after their time to live', async (t) => {
  const app = await buildTestApp(t);
  const { user_id } = await createCustomer(app);
  const spendKeyed = () =>
    app.inject({
      method: 'POST',
      url: '/stripe/spend-currency',
      headers: { 'idempotency-key': 'k1' },
      payload: { user_id, amount: 5, item_id: 'x' },
    });
  expectProblem(t, await spendKeyed(), 400, 'insufficient_balance');
  const rows = await app.store.db.selectFrom('idempotency_keys').selectAll().execute();
  t.match(rows, [{ scope: 'anonymous', key: 'k1', state: 'completed', response_status: 400 }], 'even a refusal is remembered');
  t.equal(await app.store.sweepKeys(new Date(Date.now() - 24 * 3_600_000).toISOString()), 0, 'a fresh key is kept');
  t.equal(await app.store.sweepKeys(new Date(Date.now() + 1000).toISOString()), 1, 'an expired key is forgotten');
});

t.test(
  'a keyed purchase commits twice: the key with its pending purchase, then the outcome with the answer (each one statement on PostgreSQL)',
  async (t) => {
    const { app, stripe } = await appOnFakeStripe(t);
    const { user_id } = await customerWithCard(app);
    // Each top-level transaction, and each write made outside one, is a commit (with SQLite FULL, an fsync).
    const commits: string[] = [];
    // Kept to be called with .call(this) and put back.
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const { transaction, recordPendingPurchase, reserveKeyRecordingPurchase, creditPurchaseAnswering } = Store.prototype;
    Store.prototype.transaction = function <T>(this: Store, fn: (tx: Store) => Promise<T>): Promise<T> {
      if (!this.db.isTransaction) commits.push('transaction');
      return transaction.call(this, fn) as Promise<T>;
    };
    Store.prototype.recordPendingPurchase = function (this: Store, userId, purchase) {
      if (!this.db.isTransaction) commits.push('recordPendingPurchase');
      return recordPendingPurchase.call(this, userId, purchase);
    };
    // On PostgreSQL a new key and its pending purchase are one statement: a commit with no transaction.
    Store.prototype.reserveKeyRecordingPurchase = function (this: Store, input, userId, purchase) {
      if (this.engine === 'postgres') commits.push('one statement');
      return reserveKeyRecordingPurchase.call(this, input, userId, purchase);
    };
    // And the credit with its notification and the key's answer.
    Store.prototype.creditPurchaseAnswering = async function (this: Store, credit, notice, answer) {
      const done = await creditPurchaseAnswering.call(this, credit, notice, answer);
      if (done) commits.push('one statement');
      return done;
    };
    t.teardown(() => {
      Store.prototype.transaction = transaction;
      Store.prototype.recordPendingPurchase = recordPendingPurchase;
      Store.prototype.reserveKeyRecordingPurchase = reserveKeyRecordingPurchase;
      Store.prototype.creditPurchaseAnswering = creditPurchaseAnswering;
    });
    const settle = TEST_ENGINE === 'postgres' ? 'one statement' : 'transaction';

    const bought = await purchaseWithKey(app, 'two-commits', { user_id, package_id: 'package_1' });
    t.equal(bought.statusCode, 200);
    t.same(
      commits,
      [TEST_ENGINE === 'postgres' ? 'one statement' : 'transaction', settle],
      'reserve the key and record the purchase; settle, credit and keep the answer',
    );
    t.equal(createdIntents(stripe).length, 1);

    commits.length = 0;
    const unkeyed = await app.inject({ method: 'POST', url: '/stripe/purchase-currency', payload: { user_id, package_id: 'package_1' } });
    t.equal(unkeyed.statusCode, 200);
    t.same(commits, ['recordPendingPurchase', settle], 'without a key: record the purchase; settle and credit');

    commits.length = 0;
    const unknown = await purchaseWithKey(app, 'no-such-customer', { user_id: 'nobody', package_id: 'package_1' });
    expectProblem(t, unknown, 404, 'customer_not_found');
    const replay = await purchaseWithKey(app, 'no-such-customer', { user_id: 'nobody', package_id: 'package_1' });
    t.equal(replay.headers['idempotent-replayed'], 'true', 'a refused purchase still keeps its answer under the key');
    t.same(json(replay), json(unknown));
    t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 200);
    t.equal(createdIntents(stripe).length, 2, 'nothing reached Stripe for the refused purchase');
  },
);
