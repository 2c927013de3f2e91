import t, { type Test } from 'tap';
import Stripe from 'stripe';
import { webhookRequest, type StripeEventObject } from './support/fake-stripe.js';
import { buildAppOnFakeStripe, buildTestApp, buy, customerWithCard, expectProblem, get, json } from './support/helper.js';

const SECRET = 'whsec_test_webhooks';

async function appOnFakeStripe(t: Test, env: Record<string, string> = { STRIPE_WEBHOOK_SECRET: SECRET }) {
  const { app, stripe } = await buildAppOnFakeStripe(t, { env });
  const sdk = new Stripe('sk_test_coinshop', { host: '127.0.0.1', port: stripe.port, protocol: 'http', maxNetworkRetries: 0 });
  const deliver = (event: StripeEventObject, options?: { timestamp?: number }) => {
    const { payload, headers } = webhookRequest(event, SECRET, options);
    return app.inject({ method: 'POST', url: '/stripe/webhook', headers, payload });
  };
  return { app, stripe, sdk, deliver };
}

const balance = async (app: Awaited<ReturnType<typeof buildTestApp>>, userId: string) =>
  json(await get(app, `/stripe/customer/${userId}`))['currency_balance'];

t.test('a webhook without a valid, fresh signature is refused and changes nothing', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t);
  const { user_id } = await customerWithCard(app, 'pm_card_threeDSecure2Required');
  const { payment_intent_id } = expectProblem(t, await buy(app, user_id, 'package_1'), 402, 'authentication_required');
  stripe.authenticate(String(payment_intent_id), 'succeed');
  const event = stripe.events.find((e) => e.type === 'payment_intent.succeeded');
  if (!event) throw new Error('no event');
  const { payload, headers } = webhookRequest(event, SECRET);

  const attempts = [
    { name: 'no signature', headers: { 'content-type': 'application/json' }, payload },
    { name: 'wrong secret', headers: webhookRequest(event, 'whsec_someone_else').headers, payload },
    { name: 'tampered body', headers, payload: payload.replace('"succeeded"', '"Succeeded"') },
    {
      name: 'stale (10 minutes old)',
      headers: webhookRequest(event, SECRET, { timestamp: Math.floor(Date.now() / 1000) - 600 }).headers,
      payload,
    },
  ];
  for (const attempt of attempts) {
    const response = await app.inject({ method: 'POST', url: '/stripe/webhook', headers: attempt.headers, payload: attempt.payload });
    expectProblem(t, response, 400, 'webhook_rejected');
  }
  t.equal((await app.store.db.selectFrom('webhook_events').select('event_id').execute()).length, 0, 'no event recorded');
  t.equal(await balance(app, user_id), 0, 'nothing credited');
  t.same(json(await deliver(event)), { received: true, outcome: 'processed' }, 'the genuine delivery works');
  t.equal(await balance(app, user_id), 100);
});

t.test('without STRIPE_WEBHOOK_SECRET, webhooks answer 503 so Stripe keeps them for later', async (t) => {
  const { app, stripe } = await appOnFakeStripe(t, {});
  const { user_id } = await customerWithCard(app);
  await buy(app, user_id, 'package_1');
  const event = stripe.events.at(-1);
  if (!event) throw new Error('no event');
  const { payload, headers } = webhookRequest(event, SECRET);
  expectProblem(t, await app.inject({ method: 'POST', url: '/stripe/webhook', headers, payload }), 503, 'webhooks_not_configured');
});

t.test('the same event delivered 10 times has one effect', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t);
  const { user_id } = await customerWithCard(app, 'pm_card_threeDSecure2Required');
  const { payment_intent_id } = expectProblem(t, await buy(app, user_id, 'package_3'), 402, 'authentication_required');
  stripe.authenticate(String(payment_intent_id), 'succeed');
  const event = stripe.events.find((e) => e.type === 'payment_intent.succeeded');
  if (!event) throw new Error('no event');
  const outcomes = [];
  for (let i = 0; i < 10; i++) outcomes.push(json(await deliver(event))['outcome']);
  t.same(outcomes, ['processed', ...Array<string>(9).fill('duplicate')]);
  t.equal(await balance(app, user_id), 700, 'credited once');
  const parallel = await Promise.all(Array.from({ length: 10 }, () => deliver(event)));
  t.ok(parallel.every((r) => json(r)['outcome'] === 'duplicate'));
  t.equal(await balance(app, user_id), 700);
});

t.test('events in reverse order end where events in order do', async (t) => {
  const { app, stripe, sdk, deliver } = await appOnFakeStripe(t);
  const refunded = await customerWithCard(app, 'pm_card_threeDSecure2Required');
  const disputed = await customerWithCard(app, 'pm_card_threeDSecure2Required');
  const a = expectProblem(t, await buy(app, refunded.user_id, 'package_3'), 402, 'authentication_required');
  const b = expectProblem(t, await buy(app, disputed.user_id, 'package_2'), 402, 'authentication_required');
  const piA = String(a['payment_intent_id']);
  const piB = String(b['payment_intent_id']);
  // All of this happens at Stripe (the customer, the dashboard, the bank); coinshop hears of it only by webhook.
  stripe.authenticate(piA, 'succeed');
  stripe.authenticate(piB, 'succeed');
  await sdk.refunds.create({ payment_intent: piA, amount: 1000 });
  await sdk.refunds.create({ payment_intent: piA, amount: 1500 });
  const dispute = stripe.dispute(piB);
  stripe.closeDispute(dispute.id, 'won');

  const events = [...stripe.events].reverse();
  t.same([...new Set(events.map((e) => e.type))].sort(), [
    'charge.dispute.closed',
    'charge.dispute.created',
    'charge.refunded',
    'charge.succeeded',
    'payment_intent.requires_action',
    'payment_intent.succeeded',
    'refund.created',
  ]);
  for (const event of events) t.equal((await deliver(event)).statusCode, 200, event.type);

  // 2500 of 5000 cents refunded: half of 700 coins back. The dispute was won: its coins are back.
  t.equal(await balance(app, refunded.user_id), 350);
  t.match(json(await get(app, `/stripe/purchases/${String(a['transaction_id'])}`)), {
    status: 'partially_refunded',
    amount_refunded: 2500,
  });
  t.equal(await balance(app, disputed.user_id), 300);
  t.match(json(await get(app, `/stripe/purchases/${String(b['transaction_id'])}`)), { status: 'dispute_won' });

  // Delivering them all again, in order this time, changes nothing.
  for (const event of [...events].reverse()) t.equal(json(await deliver(event))['outcome'], 'duplicate');
  t.equal(await balance(app, refunded.user_id), 350);
  t.equal(await balance(app, disputed.user_id), 300);
  const report = await app.store.balanceMismatches();
  t.same(report, []);
});

t.test('a refund that arrives before the purchase learnt its PaymentIntent is taken back, not lost', async (t) => {
  const { app, stripe, sdk, deliver } = await appOnFakeStripe(t, {
    STRIPE_WEBHOOK_SECRET: SECRET,
    STRIPE_TIMEOUT_MS: '200',
    STRIPE_MAX_NETWORK_RETRIES: '0',
  });
  const { user_id } = await customerWithCard(app);
  // Stripe charges, but its answer comes after coinshop gave up waiting: the purchase has no PaymentIntent id.
  stripe.setLatency(600);
  const { transaction_id } = expectProblem(t, await buy(app, user_id, 'package_1'), 502, 'payment_pending');
  // Stripe runs the request when its (delayed) answer is due.
  for (let waited = 0; stripe.paymentIntents.size === 0 && waited < 5000; waited += 50)
    await new Promise((resolve) => setTimeout(resolve, 50));
  stripe.setLatency(0);
  const [intent] = [...stripe.paymentIntents.values()];
  if (!intent) throw new Error('Stripe made no PaymentIntent');
  t.equal(intent.status, 'succeeded', 'Stripe charged');
  await sdk.refunds.create({ payment_intent: intent.id });
  // The refund's event is delivered first (Stripe does not promise an order), then the payment's.
  const refunded = stripe.events.find((e) => e.type === 'charge.refunded');
  const succeeded = stripe.events.find((e) => e.type === 'payment_intent.succeeded');
  if (!refunded || !succeeded) throw new Error('missing events');
  t.same(json(await deliver(refunded)), { received: true, outcome: 'processed' });
  t.same(json(await deliver(succeeded)), { received: true, outcome: 'processed' });
  t.match(json(await get(app, `/stripe/purchases/${String(transaction_id)}`)), {
    status: 'refunded',
    payment_intent_id: intent.id,
    amount_refunded: 1000,
  });
  t.equal(await balance(app, user_id), 0, 'credited, then taken back');
  const journals = await app.store.db.selectFrom('ledger_journals').select('kind').orderBy('id').execute();
  t.same(
    journals.map((j) => j.kind),
    ['purchase', 'refund'],
  );
});

t.test('3-D Secure through the real SDK: 402 with the client secret, credited once it succeeds', async (t) => {
  await t.test('found by the purchase lookup first, then the webhook', async (t) => {
    const { app, stripe, deliver } = await appOnFakeStripe(t);
    const { user_id } = await customerWithCard(app, 'pm_card_authenticationRequired');
    const problem = expectProblem(t, await buy(app, user_id, 'package_1'), 402, 'authentication_required');
    const intent = stripe.paymentIntents.get(String(problem['payment_intent_id']));
    t.equal(problem['client_secret'], intent?.client_secret, "the PaymentIntent's client secret, for Stripe.js");
    const waiting = json(await get(app, `/stripe/purchases/${String(problem['transaction_id'])}`));
    t.match(waiting, { status: 'requires_action', client_secret: intent?.client_secret });

    stripe.authenticate(String(problem['payment_intent_id']), 'succeed');
    t.match(json(await get(app, `/stripe/purchases/${String(problem['transaction_id'])}`)), { status: 'completed' });
    t.equal(await balance(app, user_id), 100);
    const event = stripe.events.find((e) => e.type === 'payment_intent.succeeded');
    if (!event) throw new Error('no event');
    t.equal(json(await deliver(event))['outcome'], 'processed');
    t.equal(await balance(app, user_id), 100, 'the webhook found it already credited');
  });

  await t.test('failed authentication: the purchase fails and nothing is credited', async (t) => {
    const { app, stripe } = await appOnFakeStripe(t);
    const { user_id } = await customerWithCard(app, 'pm_card_threeDSecure2Required');
    const problem = expectProblem(t, await buy(app, user_id, 'package_1'), 402, 'authentication_required');
    stripe.authenticate(String(problem['payment_intent_id']), 'fail');
    t.match(json(await get(app, `/stripe/purchases/${String(problem['transaction_id'])}`)), {
      status: 'failed',
      failure_code: 'authentication_failed',
    });
    t.equal(await balance(app, user_id), 0);
  });
});

t.test('3-D Secure offline: the simulator plays the customer, its signed webhook credits', async (t) => {
  const app = await buildTestApp(t);
  const { user_id } = await customerWithCard(app, 'pm_card_threeDSecure2Required');
  const problem = expectProblem(t, await buy(app, user_id, 'package_2'), 402, 'authentication_required');
  const done = await app.inject({
    method: 'POST',
    url: `/simulator/payment-intents/${String(problem['payment_intent_id'])}/authenticate`,
    payload: { outcome: 'succeed' },
  });
  t.equal(done.statusCode, 200);
  t.match(json(done), { purchase: { transaction_id: problem['transaction_id'], status: 'completed' } });
  t.equal(await balance(app, user_id), 300);
  const events = await app.store.db.selectFrom('webhook_events').select('type').orderBy('received_at').execute();
  t.ok(
    events.some((e) => e.type === 'payment_intent.succeeded'),
    'credited by the signed webhook',
  );
  const again = await app.inject({
    method: 'POST',
    url: `/simulator/payment-intents/${String(problem['payment_intent_id'])}/authenticate`,
    payload: { outcome: 'succeed' },
  });
  expectProblem(t, again, 409, 'invalid_state');
  t.equal(await balance(app, user_id), 300);
});

t.test(
  'failed signature checks are counted per client address: past 20 a minute it gets 429 before its body is read, others are unaffected',
  async (t) => {
    const { app, stripe, deliver } = await appOnFakeStripe(t);
    const { user_id } = await customerWithCard(app);
    await buy(app, user_id, 'package_1');
    const event = stripe.events.at(-1);
    if (!event) throw new Error('no event');
    const forged = { ...webhookRequest(event, 'whsec_someone_else'), remoteAddress: '203.0.113.7' };
    for (let i = 0; i < 20; i++) {
      const response = await app.inject({ method: 'POST', url: '/stripe/webhook', ...forged });
      if (response.statusCode !== 400) t.fail(`attempt ${i + 1}: ${response.statusCode}`);
    }
    const refused = await app.inject({ method: 'POST', url: '/stripe/webhook', ...forged });
    expectProblem(t, refused, 429, 'rate_limited', 'Too many webhook deliveries with a bad signature from this address; retry in 1 minute');
    t.match(refused.headers['retry-after'], /^(5\d|60)$/, 'Retry-After: the rest of the minute');
    const genuineFromThere = await app.inject({
      method: 'POST',
      url: '/stripe/webhook',
      ...webhookRequest(event, SECRET),
      remoteAddress: '203.0.113.7',
    });
    t.equal(genuineFromThere.statusCode, 429, 'the address is refused whatever it sends, until the minute is over');
    t.equal((await app.store.db.selectFrom('webhook_events').select('event_id').execute()).length, 0, 'nothing recorded');
    t.same(json(await deliver(event)), { received: true, outcome: 'processed' }, 'Stripe, from its own address, still gets through');
  },
);

t.test('a webhook body over 256 KiB is refused with 413 (Stripe sends a few KiB); one under it reaches the signature check', async (t) => {
  const { app } = await appOnFakeStripe(t);
  const send = (bytes: number) =>
    app.inject({
      method: 'POST',
      url: '/stripe/webhook',
      headers: { 'content-type': 'application/json', 'stripe-signature': 't=1,v1=00' },
      payload: `{"pad":"${'x'.repeat(bytes - 10)}"}`,
    });
  expectProblem(t, await send(256 * 1024 + 1), 413, 'payload_too_large');
  expectProblem(t, await send(256 * 1024), 400, 'webhook_rejected');
});

t.test('a webhook signed with a timestamp more than 5 minutes in the future is refused like a stale one', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t);
  const { user_id } = await customerWithCard(app);
  await buy(app, user_id, 'package_1');
  const event = stripe.events.at(-1);
  if (!event) throw new Error('no event');
  const now = Math.floor(Date.now() / 1000);
  expectProblem(
    t,
    await deliver(event, { timestamp: now + 600 }),
    400,
    'webhook_rejected',
    'Webhook signature rejected: Timestamp is more than 300 seconds in the future',
  );
  t.equal((await app.store.db.selectFrom('webhook_events').select('event_id').execute()).length, 0, 'nothing recorded');
  t.same(
    json(await deliver(event, { timestamp: now + 60 })),
    { received: true, outcome: 'processed' },
    'a clock a minute ahead is within the tolerance',
  );
});
