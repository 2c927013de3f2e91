/**
 * Two coinshop replicas on one PostgreSQL, driven over real HTTP at once, each using the real
 * stripe SDK against one Stripe-compatible server. The replicas share nothing but the database,
 * so everything that must happen once — a charge, a credit, a webhook's effect, a spend — is held
 * by PostgreSQL alone.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import Stripe from 'stripe';
import t, { type Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { freshPostgresUrl } from '../support/database.js';
import { startFakeStripe, webhookRequest, type FakeStripe } from '../support/fake-stripe.js';
import { testConfig } from '../support/helper.js';

const SECRET = 'whsec_test_replicas';

interface Answer {
  status: number;
  body: Record<string, unknown>;
  replayed: boolean;
}

interface Replicas {
  apps: FastifyInstance[];
  stripe: FakeStripe;
  sdk: Stripe;
  /** Sends a request to replica `i % 2` over HTTP. */
  call: (i: number, method: 'GET' | 'POST', path: string, body?: object, headers?: Record<string, string>) => Promise<Answer>;
}

async function startReplicas(t: Test, count = 2): Promise<Replicas> {
  // Stripe answers after a few milliseconds, so requests on the two replicas overlap.
  const stripe = await startFakeStripe({ latencyMs: 15 });
  t.teardown(() => stripe.close());
  const env = {
    DATABASE_URL: await freshPostgresUrl(),
    DATABASE_POOL_SIZE: '8',
    STRIPE_SECRET_KEY: 'sk_test_coinshop',
    STRIPE_API_BASE: stripe.url,
    STRIPE_MAX_NETWORK_RETRIES: '0',
    STRIPE_WEBHOOK_SECRET: SECRET,
  };
  // The replicas start at the same moment on an empty schema: they race to migrate it.
  const apps = await Promise.all(Array.from({ length: count }, async () => buildApp({ config: await testConfig(env) })));
  for (const app of apps) t.teardown(() => app.close());
  const urls = await Promise.all(apps.map((app) => app.listen({ host: '127.0.0.1', port: 0 })));
  const sdk = new Stripe('sk_test_coinshop', { host: '127.0.0.1', port: stripe.port, protocol: 'http', maxNetworkRetries: 0 });
  const call: Replicas['call'] = async (i, method, path, body, headers = {}) => {
    const response = await fetch(`${urls[i % urls.length]}${path}`, {
      method,
      headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return {
      status: response.status,
      body: (await response.json()) as Record<string, unknown>,
      replayed: response.headers.get('idempotent-replayed') === 'true',
    };
  };
  return { apps, stripe, sdk, call };
}

async function customer(r: Replicas, i: number, card = 'pm_card_visa'): Promise<string> {
  const created = await r.call(i, 'POST', '/stripe/create-customer', { email: `p${i}@example.com`, name: `Player ${i}` });
  const userId = String(created.body['user_id']);
  const attached = await r.call(i + 1, 'POST', '/stripe/attach-payment-method', { user_id: userId, payment_method_id: card });
  if (created.status !== 200 || attached.status !== 200) throw new Error(`customer: ${created.status} ${attached.status}`);
  return userId;
}

async function balance(r: Replicas, i: number, userId: string): Promise<number> {
  return Number((await r.call(i, 'GET', `/stripe/customer/${userId}`)).body['currency_balance']);
}

/** What must hold after any run, read from the database both replicas share. */
async function checkLedger(t: Test, r: Replicas) {
  const store = r.apps[0]!.store;
  t.same(await store.balanceMismatches(), [], 'every balance equals the sum of its ledger entries');
  t.same(await store.unbalancedJournals(), [], 'every journal sums to zero');
  const { rows } = await sql<{ paid: number; credits: number; intents: number }>`
    select
      (select count(*) from purchases where status not in ('pending', 'requires_action', 'failed')) as paid,
      (select count(*) from ledger_journals where kind = 'purchase') as credits,
      (select count(distinct payment_intent_id) from purchases) as intents
  `.execute(store.db);
  const counts = rows[0]!;
  t.equal(counts.credits, counts.paid, 'one credit per paid purchase');
  t.equal(counts.intents, r.stripe.paymentIntents.size, 'one PaymentIntent at Stripe per purchase recorded');
}

t.test('concurrent purchases, and keyed retries split across both replicas: one charge and one credit each', async (t) => {
  const r = await startReplicas(t);
  const packs = (await r.call(0, 'GET', '/stripe/packages')).body['packages'] as { package_id: string; currency_amount: number }[];
  const coinsOf = new Map(packs.map((p) => [p.package_id, p.currency_amount]));
  const players = await Promise.all(Array.from({ length: 6 }, (_, i) => customer(r, i)));

  // Every player buys four packs at once; each purchase is sent three times at once with one key
  // (replica 0, 1, 0), as a client that timed out and retried through a load balancer would.
  const purchases = players.flatMap((userId, p) =>
    Array.from({ length: 4 }, (_, n) => ({ userId, packageId: packs[(p + n) % packs.length]!.package_id, key: randomUUID() })),
  );
  const answers = await Promise.all(
    purchases.flatMap((purchase, i) =>
      [0, 1, 2].map((copy) =>
        r.call(
          i + copy,
          'POST',
          '/stripe/purchase-currency',
          { user_id: purchase.userId, package_id: purchase.packageId },
          { 'idempotency-key': purchase.key },
        ),
      ),
    ),
  );
  const statuses = new Set(answers.map((a) => a.status));
  t.ok(
    [...statuses].every((s) => s === 200 || s === 409),
    `only 200s and 409s (key in use) while the copies overlap: ${[...statuses].join(', ')}`,
  );

  // Once they are done, one more retry of each key, to the other replica, replays the one answer.
  for (const [i, purchase] of purchases.entries()) {
    const copies = answers.slice(i * 3, i * 3 + 3).filter((a) => a.status === 200);
    const replay = await r.call(
      i + 1,
      'POST',
      '/stripe/purchase-currency',
      { user_id: purchase.userId, package_id: purchase.packageId },
      { 'idempotency-key': purchase.key },
    );
    t.equal(replay.status, 200);
    t.ok(replay.replayed, 'the late retry is a replay');
    const ids = new Set([...copies, replay].map((a) => a.body['transaction_id']));
    t.equal(ids.size, 1, 'every answer for one key names one transaction');
  }

  t.equal(r.stripe.paymentIntents.size, purchases.length, `${purchases.length} purchases, ${purchases.length} PaymentIntents`);
  for (const [p, userId] of players.entries()) {
    const expected = purchases.filter((x) => x.userId === userId).reduce((sum, x) => sum + coinsOf.get(x.packageId)!, 0);
    t.equal(await balance(r, p, userId), expected, `player ${p} credited once per pack`);
  }
  await checkLedger(t, r);
});

t.test('duplicate webhooks and purchase lookups split across both replicas apply once', async (t) => {
  const r = await startReplicas(t);
  // 3-D Secure purchases finish at Stripe; coinshop hears of it by webhook and by lookups.
  const players = await Promise.all(Array.from({ length: 4 }, (_, i) => customer(r, i, 'pm_card_threeDSecure2Required')));
  const pending = [];
  for (const [i, userId] of players.entries()) {
    const answer = await r.call(i, 'POST', '/stripe/purchase-currency', { user_id: userId, package_id: 'package_3' });
    t.equal(answer.status, 402);
    pending.push({
      userId,
      transactionId: String(answer.body['transaction_id']),
      paymentIntentId: String(answer.body['payment_intent_id']),
    });
  }
  for (const p of pending) r.stripe.authenticate(p.paymentIntentId, 'succeed');
  // Refunds and a dispute made at Stripe (the Dashboard, the bank).
  await r.sdk.refunds.create({ payment_intent: pending[0]!.paymentIntentId, amount: 1000 });
  await r.sdk.refunds.create({ payment_intent: pending[0]!.paymentIntentId, amount: 1500 });
  await r.sdk.refunds.create({ payment_intent: pending[1]!.paymentIntentId });
  r.stripe.dispute(pending[2]!.paymentIntentId);
  // A refund and a dispute on one charge: their events race each other on the two replicas.
  await r.sdk.refunds.create({ payment_intent: pending[3]!.paymentIntentId, amount: 1000 });
  r.stripe.closeDispute(r.stripe.dispute(pending[3]!.paymentIntentId).id, 'won');

  // Every event, three times to each replica, all at once — with purchase lookups racing them.
  const deliveries = r.stripe.events.flatMap((event) =>
    Array.from({ length: 6 }, (_, copy) => {
      const { payload, headers } = webhookRequest(event, SECRET);
      return r.apps[copy % 2]!.inject({ method: 'POST', url: '/stripe/webhook', headers, payload }).then((response) => ({
        event: event.id,
        status: response.statusCode,
        outcome: String(response.json<{ outcome: string }>().outcome),
      }));
    }),
  );
  const lookups = pending.flatMap((p, i) => [0, 1].map((copy) => r.call(i + copy, 'GET', `/stripe/purchases/${p.transactionId}`)));
  const [delivered, looked] = await Promise.all([Promise.all(deliveries), Promise.all(lookups)]);
  t.ok(
    delivered.every((d) => d.status === 200),
    'every delivery acknowledged',
  );
  t.ok(
    looked.every((l) => l.status === 200),
    'every lookup answered',
  );
  for (const event of r.stripe.events) {
    const outcomes = delivered.filter((d) => d.event === event.id).map((d) => d.outcome);
    const first = outcomes.filter((o) => o !== 'duplicate');
    t.equal(first.length, 1, `${event.type}: one of six deliveries applied it (${first.join()}), five were duplicates`);
  }
  t.ok(
    delivered.some((d) => d.outcome === 'processed'),
    'some events were processed',
  );

  // Premium Pack: 700 coins for 5,000 cents. 2,500 cents refunded takes half the coins back; a full
  // refund and an open dispute take them all.
  const packCoins = 700;
  t.equal(await balance(r, 0, pending[0]!.userId), packCoins / 2, 'partial refunds clawed back once');
  t.equal(await balance(r, 1, pending[1]!.userId), 0, 'full refund clawed back once');
  t.equal(await balance(r, 0, pending[2]!.userId), 0, 'disputed coins held back once');
  t.equal(await balance(r, 1, pending[3]!.userId), packCoins - (packCoins * 1000) / 5000, 'a refund and a won dispute, each applied once');
  await checkLedger(t, r);
});

t.test('racing spends across both replicas never take a balance below zero', async (t) => {
  const r = await startReplicas(t);
  const userId = await customer(r, 0);
  t.equal((await r.call(0, 'POST', '/stripe/purchase-currency', { user_id: userId, package_id: 'package_3' })).status, 200);
  const start = await balance(r, 1, userId);
  const amount = 70;
  const spends = await Promise.all(
    Array.from({ length: 30 }, (_, i) => r.call(i, 'POST', '/stripe/spend-currency', { user_id: userId, amount, item_id: `item_${i}` })),
  );
  const spent = spends.filter((s) => s.status === 200).length;
  const refused = spends.filter((s) => s.status === 400 && s.body['code'] === 'insufficient_balance').length;
  t.equal(spent, Math.floor(start / amount), `as many spends as ${start} coins cover`);
  t.equal(spent + refused, spends.length, 'the others are refused for the balance');
  t.equal(await balance(r, 0, userId), start - spent * amount, 'what remains');
  const { rows } = await sql<{
    lowest: number | null;
  }>`select min(balance_after) as lowest from ledger_entries where account like 'player:%'`.execute(r.apps[0]!.store.db);
  t.ok((rows[0]?.lowest ?? 0) >= 0, 'no ledger entry ever left a balance below zero');
  await checkLedger(t, r);
});

t.test('replicas starting together migrate once: one runs the migrations, the others wait', async (t) => {
  const r = await startReplicas(t, 4);
  const { rows } = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(r.apps[0]!.store.db);
  t.same(
    rows.map((row) => row.name),
    ['0001_initial', '0002_refunds', '0003_disputes', '0004_notifications', '0005_checkout_sessions'],
    'each migration recorded once',
  );
  const ready = await Promise.all(r.apps.map((_, i) => r.call(i, 'GET', '/ready')));
  t.ok(
    ready.every((a) => a.status === 200),
    'every replica is ready',
  );
});
