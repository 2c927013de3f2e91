import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../src/config.js';
import { nextAttemptAt, RETRY_FOR_MS } from '../src/services/notifications.js';
import { buildTestApp, buy, customerWithCard, expectProblem, get, json, post, type Json } from './support/helper.js';
import { dueNow, startGameServer } from './support/game-server.js';

/** A test app whose notifications go to a real HTTP game server that verifies each one. */
async function appWithGame(t: Test, env: Record<string, string> = {}) {
  const game = await startGameServer();
  t.teardown(() => game.close());
  const app = await buildTestApp(t, { env: { GAME_WEBHOOK_URL: game.url, GAME_WEBHOOK_SECRET: game.secret, ...env } });
  await app.ready();
  return { app, game };
}

/** Waits (up to 10 s) until `check` holds. */
async function until(check: () => boolean | Promise<boolean>, what: string) {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Brings every pending retry forward to now and wakes the sender (instead of waiting for its backoff). */
async function retryNow(app: FastifyInstance) {
  await dueNow(app.store);
  app.notifier?.wake();
}

const feed = async (app: FastifyInstance, query = '') =>
  json(await get(app, `/stripe/notifications${query}`)) as { notifications: Json[]; next_cursor?: string };
const allDelivered = async (app: FastifyInstance) =>
  (await app.store.db.selectFrom('notifications').select('status').execute()).every((row) => row.status === 'delivered');

t.test('a purchase tells the game: signed per Standard Webhooks, verified by the receiver, shown as delivered', async (t) => {
  const { app, game } = await appWithGame(t);
  const { user_id } = await customerWithCard(app);
  const { transaction_id } = json(await buy(app, user_id, 'package_1'));
  await until(() => game.accepted().size === 1, 'the game has the notification');

  const [attempt] = game.attempts;
  t.ok(attempt?.verified, 'the standardwebhooks library verifies it');
  t.match(attempt?.signature, /^v1,[A-Za-z0-9+/]+=*$/);
  t.ok(Math.abs(Number(attempt?.timestamp) - Date.now() / 1000) < 60, 'webhook-timestamp is now, in seconds');
  const [notification] = (await feed(app)).notifications;
  const body = JSON.parse(String(attempt?.body)) as Json;
  t.same(Object.keys(body), ['type', 'timestamp', 'data']);
  t.same(body, {
    type: 'purchase.succeeded',
    timestamp: notification?.['created_at'],
    data: {
      user_id,
      coins: 100,
      balance: 100,
      transaction_id,
      package_id: 'package_1',
      amount_paid: 1000,
      currency: 'usd',
      payment_intent_id: json(await get(app, `/stripe/purchases/${String(transaction_id)}`))['payment_intent_id'],
      sequence: 1,
    },
  });
  t.equal(attempt?.id, notification?.['id'], 'webhook-id is the notification id');
  await until(() => allDelivered(app), 'the delivery is recorded');
  const shown = json(await get(app, `/stripe/notifications/${String(notification?.['id'])}`));
  t.match(shown, { id: notification?.['id'], type: 'purchase.succeeded', delivery: { status: 'delivered', attempts: 1 } });
  t.notOk((shown['delivery'] as Json)['next_attempt_at'], 'nothing more is planned');
});

t.test('a receiver that fails, hangs and drops the connection gets the same notification until it answers 2xx', async (t) => {
  const { app, game } = await appWithGame(t, { GAME_WEBHOOK_TIMEOUT_MS: '1000' });
  const { user_id } = await customerWithCard(app);
  game.plan('fail', 'hang', 'close', 'redirect');
  await buy(app, user_id, 'package_1');
  for (const [n, error] of [
    [1, /^HTTP 503$/],
    [2, /^timed out after 1 s$/],
    [3, /./],
    [4, /^HTTP 302$/],
  ] as const) {
    await until(
      async () => (await app.store.db.selectFrom('notifications').select('attempts').executeTakeFirst())?.attempts === n,
      `attempt ${n}`,
    );
    await until(
      async () => (await app.store.db.selectFrom('notifications').select('lease_until').executeTakeFirst())?.lease_until === null,
      `attempt ${n} recorded`,
    );
    const [row] = (await feed(app)).notifications;
    const delivery = row?.['delivery'] as Json;
    t.equal(delivery['status'], 'pending', `after attempt ${n}: pending`);
    t.match(delivery['last_error'], error, `after attempt ${n}: ${String(delivery['last_error'])}`);
    const wait = Date.parse(String(delivery['next_attempt_at'])) - Date.parse(String(delivery['last_attempt_at']));
    t.ok(wait > 0, `after attempt ${n}: retried later (${wait} ms)`);
    await retryNow(app);
  }
  await until(() => allDelivered(app), 'delivered');
  t.equal(game.attempts.length, 5);
  t.equal(new Set(game.attempts.map((a) => a.id)).size, 1, 'every attempt had the same webhook-id');
  t.ok(
    game.attempts.every((a) => a.verified),
    'every attempt was signed',
  );
  t.equal(game.accepted().size, 1, 'after dedupe the game holds it once');
  t.notOk(
    game.attempts.some((a) => a.body.includes('elsewhere')),
    'the redirect was not followed',
  );
  const [row] = (await feed(app)).notifications;
  t.match(row?.['delivery'], { status: 'delivered', attempts: 5 });
});

t.test('every money event is notified, numbered per player, and the coins add up to the balance', async (t) => {
  const { app, game } = await appWithGame(t);
  const { user_id } = await customerWithCard(app, 'pm_card_threeDSecure2Required');
  const challenge = json(await buy(app, user_id, 'package_2'));
  const authenticated = await post(app, `/simulator/payment-intents/${String(challenge['payment_intent_id'])}/authenticate`, {
    outcome: 'succeed',
  });
  t.equal(authenticated.statusCode, 200);
  await post(app, '/stripe/attach-payment-method', { user_id, payment_method_id: 'pm_card_chargeDeclined' });
  await buy(app, user_id, 'package_1');
  t.equal((await post(app, '/stripe/spend-currency', { user_id, amount: 120, item_id: 'sword' })).statusCode, 200);
  t.equal((await post(app, '/stripe/spend-currency', { user_id, amount: 1000, item_id: 'castle' })).statusCode, 400, 'a refused spend');

  const rows = (await feed(app)).notifications.reverse();
  t.same(
    rows.map((n) => n['type']),
    ['purchase.requires_action', 'purchase.succeeded', 'purchase.failed', 'coins.spent'],
    'one notification per change, none for the refused spend',
  );
  t.same(
    rows.map((n) => (n['data'] as Json)['sequence']),
    [1, 2, 3, 4],
  );
  t.match(rows[2]?.['data'], { coins: 0, balance: 300, failure_code: 'card_declined' });
  t.match(rows[3]?.['data'], { coins: -120, balance: 180, item_id: 'sword' });
  const sum = rows.reduce((n, row) => n + Number((row['data'] as Json)['coins']), 0);
  t.equal(
    sum,
    json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'],
    'the coins of the notifications add up to the balance',
  );
  await until(() => game.accepted().size === 4, 'the game has all four');
  t.same([...game.accepted().keys()].sort(), rows.map((n) => n['id']).sort(), 'the game holds exactly the outbox');
});

t.test('a change that rolls back leaves no notification', async (t) => {
  // No sender: its own transactions must not meet the failure made for the spend's.
  const app = await buildTestApp(t);
  const { user_id } = await customerWithCard(app);
  await buy(app, user_id, 'package_1');
  const real = app.store.transaction.bind(app.store);
  let armed = true;
  app.store.transaction = <T>(fn: Parameters<typeof real<T>>[0]): Promise<T> =>
    real(async (tx) => {
      const result = await fn(tx);
      if (armed) {
        armed = false;
        throw new Error('the transaction failed at COMMIT');
      }
      return result;
    });
  t.equal((await post(app, '/stripe/spend-currency', { user_id, amount: 10, item_id: 'sword' })).statusCode, 500);
  t.same(
    (await feed(app)).notifications.map((n) => n['type']),
    ['purchase.succeeded'],
    'the spend rolled back, and its notification with it',
  );
});

t.test('without GAME_WEBHOOK_URL nothing is sent and the feed still fills; filters and pages', async (t) => {
  const app = await buildTestApp(t);
  t.equal(app.notifier, undefined);
  const { user_id } = await customerWithCard(app);
  for (let i = 0; i < 3; i++) await buy(app, user_id, 'package_1');
  await post(app, '/stripe/spend-currency', { user_id, amount: 50, item_id: 'sword' });
  const first = await feed(app, '?limit=2');
  t.same(
    first.notifications.map((n) => [n['type'], (n['data'] as Json)['sequence'], (n['delivery'] as Json)['status']]),
    [
      ['coins.spent', 4, 'pending'],
      ['purchase.succeeded', 3, 'pending'],
    ],
  );
  const second = await feed(app, `?limit=2&cursor=${String(first.next_cursor)}`);
  t.same(
    second.notifications.map((n) => (n['data'] as Json)['sequence']),
    [2, 1],
  );
  t.equal(second.next_cursor, undefined, 'the last page');
  t.same(
    (await feed(app, '?type=coins.spent')).notifications.map((n) => n['type']),
    ['coins.spent'],
  );
  t.equal((await feed(app, '?status=delivered')).notifications.length, 0);
  t.equal((await feed(app, '?status=pending')).notifications.length, 4);

  for (const query of [
    '?limit=0',
    '?limit=201',
    '?cursor=-1',
    '?cursor=9223372036854775807',
    '?type=purchase.nope',
    '?status=lost',
    '?colour=red',
  ]) {
    expectProblem(t, await get(app, `/stripe/notifications${query}`), 400, 'validation_error');
  }
  expectProblem(
    t,
    await get(app, '/stripe/notifications/msg_00000000000000000000000000000000'),
    404,
    'notification_not_found',
    'Notification not found',
  );
  expectProblem(t, await get(app, '/stripe/notifications/not-an-id'), 400, 'validation_error');
  expectProblem(
    t,
    await post(app, '/stripe/notifications/msg_00000000000000000000000000000000/redeliver', {}),
    404,
    'notification_not_found',
  );
});

t.test('GAME_WEBHOOK_EVENTS narrows what is sent; the rest stays in the feed', async (t) => {
  const { app, game } = await appWithGame(t, { GAME_WEBHOOK_EVENTS: 'coins.spent' });
  const { user_id } = await customerWithCard(app);
  await buy(app, user_id, 'package_1');
  await post(app, '/stripe/spend-currency', { user_id, amount: 5, item_id: 'sword' });
  await until(() => game.accepted().size === 1, 'the spend is sent');
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.same(
    [...game.accepted().values()].map((b) => b.type),
    ['coins.spent'],
    'only the spend',
  );
  t.same(
    (await feed(app)).notifications.map((n) => [n['type'], (n['delivery'] as Json)['status']]),
    [
      ['coins.spent', 'delivered'],
      ['purchase.succeeded', 'pending'],
    ],
  );
});

t.test('redelivery sends it again with the same webhook-id, also after it failed for good', async (t) => {
  const { app, game } = await appWithGame(t);
  const { user_id } = await customerWithCard(app);
  game.fallback = 'fail';
  await buy(app, user_id, 'package_1');
  await until(() => game.attempts.length === 1, 'the first attempt');
  // Three days of retries later, the last one fails too.
  const threeDaysAgo = new Date(Date.now() - RETRY_FOR_MS - 60_000).toISOString();
  await until(
    async () => (await app.store.db.selectFrom('notifications').select('lease_until').executeTakeFirst())?.lease_until === null,
    'recorded',
  );
  await app.store.db.updateTable('notifications').set({ retry_from: threeDaysAgo }).execute();
  await retryNow(app);
  await until(
    async () =>
      (await feed(app)).notifications[0]?.['delivery'] !== undefined &&
      ((await feed(app)).notifications[0]?.['delivery'] as Json)['status'] === 'failed',
    'failed',
  );
  const [failed] = (await feed(app)).notifications;
  t.match(failed?.['delivery'], { status: 'failed', attempts: 2, last_error: 'HTTP 503' });
  t.equal((await feed(app, '?status=failed')).notifications.length, 1, 'it stays visible');

  game.fallback = 'accept';
  const redelivered = await post(app, `/stripe/notifications/${String(failed?.['id'])}/redeliver`, {});
  t.equal(redelivered.statusCode, 200);
  t.match(json(redelivered), { id: failed?.['id'], delivery: { status: 'pending' } });
  await until(() => game.accepted().size === 1, 'delivered again');
  await until(() => allDelivered(app), 'recorded as delivered');
  t.same(new Set(game.attempts.map((a) => a.id)), new Set([failed?.['id']]), 'the same webhook-id');

  const again = await post(app, `/stripe/notifications/${String(failed?.['id'])}/redeliver`, {});
  t.equal(again.statusCode, 200, 'a delivered one can be sent again too');
  await until(() => game.attempts.length === 4, 'sent once more');
});

t.test('the operator API needs an API key: a client token or nothing gets 401/403 and changes nothing', async (t) => {
  const apiKey = 'k'.repeat(32);
  const app = await buildTestApp(t, { env: { API_KEYS: apiKey, CLIENT_TOKEN_SECRETS: 's'.repeat(40) } });
  const auth = { authorization: `Bearer ${apiKey}` };
  const customer = json(
    await app.inject({ method: 'POST', url: '/stripe/create-customer', headers: auth, payload: { email: 'a@example.com', name: 'A' } }),
  );
  await app.inject({
    method: 'POST',
    url: '/stripe/attach-payment-method',
    headers: auth,
    payload: { user_id: customer['user_id'], payment_method_id: 'pm_card_visa' },
  });
  await app.inject({
    method: 'POST',
    url: '/stripe/purchase-currency',
    headers: auth,
    payload: { user_id: customer['user_id'], package_id: 'package_1' },
  });
  const token = String(
    json(await app.inject({ method: 'POST', url: '/stripe/client-tokens', headers: auth, payload: { user_id: customer['user_id'] } }))[
      'token'
    ],
  );
  const [row] = (json(await app.inject({ method: 'GET', url: '/stripe/notifications', headers: auth })) as { notifications: Json[] })
    .notifications;
  const id = String(row?.['id']);
  for (const [method, url] of [
    ['GET', '/stripe/notifications'],
    ['GET', `/stripe/notifications/${id}`],
    ['POST', `/stripe/notifications/${id}/redeliver`],
  ] as const) {
    expectProblem(t, await app.inject({ method, url, ...(method === 'POST' ? { payload: {} } : {}) }), 401, 'unauthorized');
    expectProblem(
      t,
      await app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(method === 'POST' ? { payload: {} } : {}) }),
      403,
      'forbidden',
    );
  }
  const after = await app.store.findNotification(id);
  t.match(after, { status: 'pending', attempts: 0 }, 'nothing changed');
});

t.test('a bad GAME_WEBHOOK_URL or GAME_WEBHOOK_SECRET stops the start with one line naming it', async (t) => {
  const secret = `whsec_${Buffer.alloc(24, 7).toString('base64')}`;
  const cases: [Record<string, string>, RegExp][] = [
    [
      { GAME_WEBHOOK_URL: 'ftp://game.example.com/x', GAME_WEBHOOK_SECRET: secret },
      /^Invalid configuration: GAME_WEBHOOK_URL must be an http\(s\) URL/,
    ],
    [{ GAME_WEBHOOK_URL: 'https://game.example.com/x' }, /^Invalid configuration: GAME_WEBHOOK_SECRET is required with GAME_WEBHOOK_URL/],
    [
      { GAME_WEBHOOK_URL: 'https://game.example.com/x', GAME_WEBHOOK_SECRET: 'whsec_short' },
      /^Invalid configuration: GAME_WEBHOOK_SECRET must be a Standard Webhooks secret/,
    ],
    [
      { GAME_WEBHOOK_URL: 'https://game.example.com/x', GAME_WEBHOOK_SECRET: 'not-a-secret-at-all-1234567890' },
      /^Invalid configuration: GAME_WEBHOOK_SECRET must be/,
    ],
    [
      { GAME_WEBHOOK_EVENTS: 'purchase.succeeded,purchase.teleported' },
      /^Invalid configuration: GAME_WEBHOOK_EVENTS must be a comma-separated list of purchase\.succeeded/,
    ],
  ];
  for (const [env, message] of cases) {
    t.throws(() => loadConfig(env), message, Object.keys(env).join(' '));
  }
  t.throws(
    () => loadConfig({ GAME_WEBHOOK_URL: 'https://game.example.com/x', GAME_WEBHOOK_SECRET: 'whsec_short' }),
    { message: /^[^\n]+$/ },
    'one line',
  );
  t.doesNotThrow(() => loadConfig({ GAME_WEBHOOK_URL: 'https://game.example.com/x', GAME_WEBHOOK_SECRET: secret }));
});

t.test('the retry schedule: about 5 s, 30 s, 2 min, 10 min, 1 h, 6 h, then every 12 h, for 3 days', (t) => {
  const start = Date.parse('2026-01-01T00:00:00Z');
  const waits: number[] = [];
  let now = start;
  for (;;) {
    const next = nextAttemptAt(start, now, 0.5);
    if (next === undefined) break;
    waits.push(next - now);
    now = next;
  }
  const s = 1000;
  t.same(waits.slice(0, 7), [5 * s, 30 * s, 120 * s, 600 * s, 3600 * s, 21_600 * s, 43_200 * s]);
  t.ok(
    waits.slice(7).every((w) => w === 43_200 * s),
    'then every 12 h',
  );
  t.ok(now - start <= RETRY_FOR_MS && now - start > RETRY_FOR_MS - 43_200 * s, 'for 3 days');
  t.equal(nextAttemptAt(start, start + RETRY_FOR_MS, 0.5), undefined, 'then it is failed');
  const jittered = [0, 0.999].map((r) => (nextAttemptAt(start, start, r) ?? 0) - start);
  t.ok(jittered[0] === 4 * s && (jittered[1] ?? 0) > 5.9 * s && (jittered[1] ?? 0) < 6 * s, `jitter ±20 %: ${jittered.join(', ')} ms`);
  t.end();
});

t.test('metrics: deliveries by outcome, notifications waiting and the age of the oldest', async (t) => {
  const { app, game } = await appWithGame(t);
  game.plan('fail');
  const { user_id } = await customerWithCard(app);
  await buy(app, user_id, 'package_1');
  const metrics = async () => (await get(app, '/metrics')).body;
  await until(
    async () => /coinshop_notification_deliveries_total\{outcome="retry"\} 1/.test(await metrics()),
    'the failed attempt is counted',
  );
  const waiting = await metrics();
  t.match(waiting, /coinshop_notifications_pending 1/);
  t.match(waiting, /coinshop_notification_oldest_pending_seconds (0\.\d+|[1-9])/);
  await retryNow(app);
  await until(
    async () => /coinshop_notification_deliveries_total\{outcome="delivered"\} 1/.test(await metrics()),
    'the delivery is counted',
  );
  const done = await metrics();
  t.match(done, /coinshop_notifications_pending 0/);
  t.match(done, /coinshop_notification_oldest_pending_seconds 0/);
});

t.test('a receiver that is slow to answer costs a purchase nothing: the purchase does not wait for the delivery', async (t) => {
  const { app, game } = await appWithGame(t);
  const { user_id } = await customerWithCard(app);
  game.plan('hang');
  t.equal((await buy(app, user_id, 'package_1')).statusCode, 200);
  t.equal((await buy(app, user_id, 'package_2')).statusCode, 200, 'another purchase, while the first delivery still hangs');
  await until(() => game.attempts.length === 2, 'both deliveries were attempted');
  t.equal(game.attempts[0]?.endedAt, undefined, 'the first is still unanswered');
  t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 400);
});

t.test('refunds and chargebacks are notified with the coins they move (the offline simulator plays the bank)', async (t) => {
  const app = await buildTestApp(t);
  const { user_id } = await customerWithCard(app);
  const { transaction_id } = json(await buy(app, user_id, 'package_3'));
  const purchase = json(await get(app, `/stripe/purchases/${String(transaction_id)}`));
  t.equal((await post(app, `/stripe/purchases/${String(transaction_id)}/refund`, { amount_cents: 1000 })).statusCode, 200);
  const dispute = json(await post(app, `/simulator/payment-intents/${String(purchase['payment_intent_id'])}/dispute`, {}));
  t.equal((await post(app, `/simulator/disputes/${String(dispute['dispute_id'])}/close`, { outcome: 'lost' })).statusCode, 200);

  const rows = (await feed(app)).notifications.reverse();
  t.same(
    rows.map((n) => [n['type'], (n['data'] as Json)['coins'], (n['data'] as Json)['balance']]),
    [
      ['purchase.succeeded', 700, 700],
      ['purchase.refunded', -140, 560],
      ['purchase.disputed', -560, 0],
      ['purchase.dispute_closed', 0, 0],
    ],
  );
  t.match(rows[1]?.['data'], { transaction_id, amount_refunded: 1000 });
  t.match(rows[2]?.['data'], { dispute_id: dispute['dispute_id'] });
  t.match(rows[3]?.['data'], { dispute_id: dispute['dispute_id'], dispute_outcome: 'lost' });
});
