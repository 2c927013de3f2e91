import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import Stripe from 'stripe';
import { sql } from 'kysely';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hole, jsonAround } from '../src/store/json-around.js';
import { reconcile } from '../src/services/reconcile.js';
import type { Store } from '../src/store/store.js';
import { buildAppOnFakeStripe, customerWithCard, expectProblem, get, json } from './support/helper.js';

/**
 * The purchase path's edge cases: a payment Stripe first answers `processing`, a first call Stripe
 * refuses, 3-D Secure finished after the purchase was failed, a purchase whose PaymentIntent id was
 * never learnt and whose idempotency key Stripe has forgotten, and a transaction that fails at COMMIT.
 * Each through the real stripe SDK against the project's Stripe-compatible server.
 */

const buyWithKey = (app: FastifyInstance, userId: string, key: string, packageId = 'package_1') =>
  app.inject({
    method: 'POST',
    url: '/stripe/purchase-currency',
    headers: { 'idempotency-key': key },
    payload: { user_id: userId, package_id: packageId },
  });

const balance = async (app: FastifyInstance, userId: string) => json(await get(app, `/stripe/customer/${userId}`))['currency_balance'];
const purchase = async (app: FastifyInstance, transactionId: string) => json(await get(app, `/stripe/purchases/${transactionId}`));
const runReconcile = (app: FastifyInstance) =>
  reconcile({ store: app.store, payments: app.payments, log: app.log }, { olderThanMs: 0, keyTtlHours: 24 });

t.test('a payment Stripe first answers `processing` is credited once it succeeds, by whichever path asks next', async (t) => {
  for (const path of ['the same-key retry', 'the lookup', 'reconciliation'] as const) {
    await t.test(path, async (t) => {
      const { app, stripe } = await buildAppOnFakeStripe(t);
      const { user_id } = await customerWithCard(app);
      stripe.holdProcessing(1);
      const pending = expectProblem(t, await buyWithKey(app, user_id, 'processing-1'), 502, 'payment_pending');
      const transactionId = String(pending['transaction_id']);
      const [intent] = [...stripe.paymentIntents.values()];
      if (!intent) throw new Error('no PaymentIntent');
      t.equal(intent.status, 'processing');
      t.match(await purchase(app, transactionId), { status: 'pending', payment_intent_id: intent.id }, 'the PaymentIntent id is kept');

      stripe.finishProcessing(intent.id, 'succeed');
      if (path === 'the same-key retry') {
        const retried = await buyWithKey(app, user_id, 'processing-1');
        t.equal(retried.statusCode, 200);
        t.match(json(retried), { transaction_id: transactionId, currency_purchased: 100, new_balance: 100 });
      } else if (path === 'the lookup') {
        t.match(await purchase(app, transactionId), { status: 'completed' });
      } else {
        t.same((await runReconcile(app)).outcomes, { succeeded: 1 });
      }
      t.match(await purchase(app, transactionId), { status: 'completed', payment_intent_id: intent.id });
      t.equal(await balance(app, user_id), 100, 'credited once');
      t.equal(stripe.paymentIntents.size, 1, 'charged once');
      t.equal(
        stripe.requests.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents').length,
        1,
        'asked by id after the first call, never created again',
      );
    });
  }

  await t.test('one that fails after processing fails the purchase, with nothing credited', async (t) => {
    const { app, stripe } = await buildAppOnFakeStripe(t);
    const { user_id } = await customerWithCard(app);
    stripe.holdProcessing(1);
    const pending = expectProblem(t, await buyWithKey(app, user_id, 'processing-2'), 502, 'payment_pending');
    const [intent] = [...stripe.paymentIntents.values()];
    stripe.finishProcessing(String(intent?.id), 'fail');
    expectProblem(t, await buyWithKey(app, user_id, 'processing-2'), 400, 'card_declined', 'Card was declined');
    t.match(await purchase(app, String(pending['transaction_id'])), { status: 'failed', failure_code: 'card_declined' });
    t.equal(await balance(app, user_id), 0);
  });
});

t.test('a first call Stripe refuses (429) ends with a final answer the key keeps, never an endless 5xx', async (t) => {
  const { app, stripe } = await buildAppOnFakeStripe(t);
  const { user_id } = await customerWithCard(app);
  stripe.failNext(1, 429);
  const refused = expectProblem(
    t,
    await buyWithKey(app, user_id, 'refused-1'),
    424,
    'payment_provider_refused',
    'The payment provider refused the request, and nothing was charged; to try again, send the purchase with a new Idempotency-Key',
  );
  const transactionId = String(refused['transaction_id']);
  t.match(await purchase(app, transactionId), { status: 'failed', failure_code: 'payment_provider_error' });

  const replayed = await buyWithKey(app, user_id, 'refused-1');
  t.equal(replayed.statusCode, 424, 'the same key gets the same final answer');
  t.equal(replayed.headers['idempotent-replayed'], 'true');
  t.equal(stripe.paymentIntents.size, 0, 'nothing was charged');

  const again = await buyWithKey(app, user_id, 'refused-2');
  t.equal(again.statusCode, 200, 'a new key buys');
  t.equal(await balance(app, user_id), 100);
});

t.test('3-D Secure finished after the purchase was failed is credited by the lookup and by reconciliation', async (t) => {
  for (const path of ['the lookup', 'reconciliation'] as const) {
    await t.test(path, async (t) => {
      const { app, stripe } = await buildAppOnFakeStripe(t);
      const { user_id } = await customerWithCard(app, 'pm_card_threeDSecure2Required');
      const challenge = expectProblem(t, await buyWithKey(app, user_id, '3ds-late'), 402, 'authentication_required');
      const transactionId = String(challenge['transaction_id']);
      const paymentIntentId = String(challenge['payment_intent_id']);
      stripe.authenticate(paymentIntentId, 'fail');
      t.match(await purchase(app, transactionId), { status: 'failed', failure_code: 'authentication_failed' });

      stripe.payAfterFailure(paymentIntentId);
      if (path === 'the lookup') t.match(await purchase(app, transactionId), { status: 'completed' });
      else t.same((await runReconcile(app)).outcomes, { succeeded: 1 });
      t.match(await purchase(app, transactionId), { status: 'completed', payment_intent_id: paymentIntentId });
      t.equal(await balance(app, user_id), 100, 'credited once');
      t.same((await runReconcile(app)).outcomes, {}, 'nothing left to finish');
      t.equal(await balance(app, user_id), 100);
    });
  }
});

/** Makes a purchase look `hours` old, as if it had waited that long. */
async function age(store: Store, transactionId: string, hours: number) {
  const at = new Date(Date.now() - hours * 3_600_000).toISOString();
  await store.db.updateTable('purchases').set({ created_at: at, updated_at: at }).where('transaction_id', '=', transactionId).execute();
}

t.test('a purchase that never learnt its PaymentIntent and is past the re-issue window is settled by a search in Stripe', async (t) => {
  await t.test('Stripe has no PaymentIntent for it: failed, nothing charged', async (t) => {
    const { app, stripe } = await buildAppOnFakeStripe(t);
    const { user_id } = await customerWithCard(app);
    stripe.failNext(1, 503);
    const pending = expectProblem(t, await buyWithKey(app, user_id, 'lost-1'), 502, 'payment_pending');
    const transactionId = String(pending['transaction_id']);
    await age(app.store, transactionId, 25);
    t.same((await runReconcile(app)).outcomes, { failed: 1 });
    t.match(await purchase(app, transactionId), { status: 'failed', failure_code: 'payment_provider_error' });
    t.equal(stripe.requests.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents').length, 1, 'not charged anew');
  });

  await t.test('Stripe made one (the answer was lost): credited once', async (t) => {
    const { app, stripe } = await buildAppOnFakeStripe(t);
    const { user_id } = await customerWithCard(app);
    stripe.failNext(1, 503);
    const pending = expectProblem(t, await buyWithKey(app, user_id, 'lost-2'), 502, 'payment_pending');
    const transactionId = String(pending['transaction_id']);
    // The first call reached Stripe and charged the card; only its answer never came back.
    const sdk = new Stripe('sk_test_coinshop', { host: '127.0.0.1', port: stripe.port, protocol: 'http', maxNetworkRetries: 0 });
    const customer = json(await get(app, `/stripe/customer/${user_id}`));
    const intent = await sdk.paymentIntents.create({
      amount: 1000,
      currency: 'usd',
      customer: String(customer['stripe_customer_id']),
      payment_method: 'pm_card_visa',
      confirm: true,
      automatic_payment_methods: { enabled: true, allow_redirects: 'never' },
      metadata: { transaction_id: transactionId },
    });
    await age(app.store, transactionId, 25);
    t.same((await runReconcile(app)).outcomes, { succeeded: 1 });
    t.match(await purchase(app, transactionId), { status: 'completed', payment_intent_id: intent.id });
    t.equal(await balance(app, user_id), 100, 'credited once');
    t.equal(stripe.requests.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents').length, 2, 'not charged anew');
  });
});

/**
 * Makes the database refuse to record an Idempotency-Key's answer, as a write can fail at its last
 * step (on PostgreSQL the settle is one statement; on SQLite the answer is its transaction's last
 * write): whatever the write did is rolled back and the caller gets an error. Returns what lifts it.
 */
async function refuseAnswers(store: Store): Promise<() => Promise<void>> {
  if (store.engine === 'postgres') {
    await sql`CREATE FUNCTION refuse_answer() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'refused: the answer cannot be written'; END $$`.execute(store.db);
    await sql`CREATE TRIGGER refuse_answer BEFORE UPDATE ON idempotency_keys FOR EACH ROW
      WHEN (NEW.state = 'completed') EXECUTE FUNCTION refuse_answer()`.execute(store.db);
  } else {
    await sql`CREATE TRIGGER refuse_answer BEFORE UPDATE ON idempotency_keys WHEN NEW.state = 'completed'
      BEGIN SELECT RAISE(ABORT, 'refused: the answer cannot be written'); END`.execute(store.db);
  }
  return async () => {
    await sql`DROP TRIGGER refuse_answer ${store.engine === 'postgres' ? sql`ON idempotency_keys` : sql``}`.execute(store.db);
  };
}

t.test('a settle that fails as it writes its key’s answer rolls back the credit and lets go of the key at once', async (t: Test) => {
  const { app, stripe } = await buildAppOnFakeStripe(t);
  const { user_id } = await customerWithCard(app);
  const lift = await refuseAnswers(app.store);
  const failed = await buyWithKey(app, user_id, 'commit-1');
  t.equal(failed.statusCode, 500);
  t.equal(await balance(app, user_id), 0, 'the credit was rolled back with the answer');
  const notifications = await app.store.listNotifications({ limit: 10 });
  t.same(notifications, [], 'and its notification');
  await lift();

  const retried = await buyWithKey(app, user_id, 'commit-1');
  t.equal(retried.statusCode, 200, 'the retry is not told the key is in use');
  t.match(json(retried), { currency_purchased: 100, new_balance: 100 });
  t.equal(await balance(app, user_id), 100, 'credited once');
  t.equal(stripe.paymentIntents.size, 1, 'charged once');
});

t.test('jsonAround cuts a JSON text at its holes, and refuses a text whose strings hold a hole’s digits', async (t) => {
  const parts = jsonAround({ a: 'x', coins: hole(0), b: [1], balance: hole(1) }, 2);
  t.same(parts, ['{"a":"x","coins":', ',"b":[1],"balance":', '}']);
  t.equal(`${parts?.[0]}5${parts?.[1]}-7${parts?.[2]}`, JSON.stringify({ a: 'x', coins: 5, b: [1], balance: -7 }));
  t.equal(jsonAround({ id: `p${hole(0)}`, coins: hole(0) }, 1), undefined, 'the digits twice');
  t.equal(jsonAround({ balance: hole(1), coins: hole(0) }, 2), undefined, 'out of order');
  t.equal(jsonAround({ coins: 1 }, 1), undefined, 'not there');
});

t.test('a package whose id holds a hole’s digits is credited, notified and answered exactly as any other', async (t: Test) => {
  const dir = mkdtempSync(join(tmpdir(), 'coinshop-catalog-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const packageId = `odd_${hole(0)}`;
  const catalog = join(dir, 'catalog.json');
  writeFileSync(
    catalog,
    JSON.stringify({ packages: [{ package_id: packageId, name: 'Odd Pack', price_cents: 500, currency_amount: 40 }] }),
  );
  const { app } = await buildAppOnFakeStripe(t, { env: { CATALOG_FILE: catalog } });
  const { user_id } = await customerWithCard(app);
  const bought = await buyWithKey(app, user_id, 'odd-1', packageId);
  t.equal(bought.statusCode, 200);
  t.match(json(bought), { status: 'success', currency_purchased: 40, new_balance: 40 });
  const replayed = await buyWithKey(app, user_id, 'odd-1', packageId);
  t.equal(replayed.headers['idempotent-replayed'], 'true');
  t.equal(replayed.body, bought.body, 'the key keeps the answer given');
  const [notice] = await app.store.listNotifications({ limit: 10 });
  t.match(JSON.parse(notice?.data ?? '{}'), { user_id, coins: 40, balance: 40, package_id: packageId, sequence: 1 });
  t.equal(await balance(app, user_id), 40);
});
