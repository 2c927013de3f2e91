import t, { type Test } from 'tap';
import { webhookRequest } from './support/fake-stripe.js';
import { buildAppOnFakeStripe, customerWithCard, expectProblem, json, post } from './support/helper.js';
import { freshPostgresUrl, TEST_ENGINE } from './support/database.js';
import { startWireCounter, type WireCounter } from './support/pg-wire.js';

/**
 * The round trips to PostgreSQL of the money paths, counted at the wire (test/support/pg-wire.ts):
 * each is a wait for the database, the kernel's socket work and an event-loop turn on both sides, so
 * a replica's throughput and CPU per purchase follow from them. The budgets:
 * - a purchase with an Idempotency-Key, ≤ 2: the key, the customer's read and the pending purchase in
 *   one statement, then the outcome, the coins, the notification and the key's answer in another
 *   (neither needs a transaction around it: a statement commits whole or not at all);
 * - a webhook crediting a purchase, ≤ 4: the event's id, the purchase, the credit, the COMMIT;
 * - a spend with an Idempotency-Key, ≤ 4: the key (one statement), then the customer, the debit and
 *   the COMMIT.
 * On SQLite there is no wire: the same requests are checked for their effect only.
 */
const BUDGET = { purchase: 2, webhookCredit: 4, spend: 4 };
const SECRET = 'whsec_round_trips';

async function appThroughCounter(t: Test, extraEnv: Record<string, string>) {
  let counter: WireCounter | undefined;
  const env: Record<string, string> = { STRIPE_WEBHOOK_SECRET: SECRET, ...extraEnv };
  if (TEST_ENGINE === 'postgres') {
    counter = await startWireCounter(await freshPostgresUrl());
    t.teardown(() => counter?.close());
    env['DATABASE_URL'] = counter.url;
  }
  const { app, stripe } = await buildAppOnFakeStripe(t, { env });
  /** Runs `fn` and returns the round trips it made (undefined on SQLite). */
  const count = async <T>(fn: () => Promise<T>): Promise<{ result: T; trips: number | undefined }> => {
    const before = counter?.roundTrips;
    const result = await fn();
    return { result, trips: counter && before !== undefined ? counter.roundTrips - before : undefined };
  };
  return { app, stripe, count };
}

const keyed = (key: string) => ({ 'idempotency-key': key });

/**
 * With prepared statements, and without them (DATABASE_PREPARED_STATEMENTS=false, as behind a pooler
 * in transaction mode): naming a statement changes what PostgreSQL parses, not the round trips.
 */
for (const prepared of ['true', 'false']) {
  t.test(
    `DATABASE_PREPARED_STATEMENTS=${prepared}: a keyed purchase, a webhook credit and a keyed spend stay within their round trips (${BUDGET.purchase}, ${BUDGET.webhookCredit}, ${BUDGET.spend})`,
    async (t) => {
      const { app, stripe, count } = await appThroughCounter(t, { DATABASE_PREPARED_STATEMENTS: prepared });
      const { user_id } = await customerWithCard(app);
      const buy = (key: string) =>
        app.inject({
          method: 'POST',
          url: '/stripe/purchase-currency',
          headers: keyed(key),
          payload: { user_id, package_id: 'package_1' },
        });
      // The first purchase opens the pool's connections and prepares the statements on them.
      t.equal((await buy('warm-up')).statusCode, 200);

      const purchase = await count(() => buy('purchase-1'));
      t.equal(purchase.result.statusCode, 200);
      t.equal(json(purchase.result)['new_balance'], 200, 'credited');

      const spend = await count(() =>
        app.inject({
          method: 'POST',
          url: '/stripe/spend-currency',
          headers: keyed('spend-1'),
          payload: { user_id, amount: 30, item_id: 'sword' },
        }),
      );
      t.equal(spend.result.statusCode, 200);
      t.equal(json(spend.result)['new_balance'], 170, 'debited');

      // A purchase that waits for 3-D Secure, then is paid: the webhook credits it.
      const secure = await customerWithCard(app, 'pm_card_threeDSecure2Required');
      const { payment_intent_id } = expectProblem(
        t,
        await post(app, '/stripe/purchase-currency', { user_id: secure.user_id, package_id: 'package_1' }),
        402,
        'authentication_required',
      );
      stripe.authenticate(String(payment_intent_id), 'succeed');
      const event = stripe.events.find((e) => e.type === 'payment_intent.succeeded' && e.data.object['id'] === payment_intent_id);
      if (!event) throw new Error('no payment_intent.succeeded event');
      const { payload, headers } = webhookRequest(event, SECRET);
      const webhook = await count(() => app.inject({ method: 'POST', url: '/stripe/webhook', headers, payload }));
      t.equal(webhook.result.statusCode, 200);
      t.equal(
        json(await app.inject({ method: 'GET', url: `/stripe/customer/${secure.user_id}` }))['currency_balance'],
        100,
        'credited by the webhook',
      );

      if (TEST_ENGINE === 'postgres') {
        t.comment(`round trips: purchase ${purchase.trips}, webhook credit ${webhook.trips}, spend ${spend.trips}`);
        t.ok(
          purchase.trips !== undefined && purchase.trips <= BUDGET.purchase,
          `a keyed purchase: ${purchase.trips} round trips, at most ${BUDGET.purchase}`,
        );
        t.ok(
          webhook.trips !== undefined && webhook.trips <= BUDGET.webhookCredit,
          `a webhook credit: ${webhook.trips} round trips, at most ${BUDGET.webhookCredit}`,
        );
        t.ok(
          spend.trips !== undefined && spend.trips <= BUDGET.spend,
          `a keyed spend: ${spend.trips} round trips, at most ${BUDGET.spend}`,
        );
      }
    },
  );
}
