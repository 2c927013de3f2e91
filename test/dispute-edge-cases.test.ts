/**
 * Disputes that arrive in awkward shapes (issue 21, "Money edge cases"): several dispute objects on
 * one charge (an inquiry, then a chargeback; a chargeback after a won one), and a dispute that
 * reaches coinshop before the purchase knows its PaymentIntent. Everything goes through the real
 * stripe SDK against the fake Stripe server and signed webhook requests, as Stripe would send them.
 */
import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { webhookRequest, type StripeEventObject } from './support/fake-stripe.js';
import { buildAppOnFakeStripe, buy, customerWithCard, expectProblem, get, json, post } from './support/helper.js';

const SECRET = 'whsec_test_disputes';

async function appOnFakeStripe(t: Test, env: Record<string, string> = {}) {
  const { app, stripe } = await buildAppOnFakeStripe(t, { env: { STRIPE_WEBHOOK_SECRET: SECRET, ...env } });
  const deliver = (event: StripeEventObject) => {
    const { payload, headers } = webhookRequest(event, SECRET);
    return app.inject({ method: 'POST', url: '/stripe/webhook', headers, payload });
  };
  return { app, stripe, deliver };
}

const balance = async (app: FastifyInstance, userId: string) => json(await get(app, `/stripe/customer/${userId}`))['currency_balance'];
const purchase = async (app: FastifyInstance, transactionId: string) => json(await get(app, `/stripe/purchases/${transactionId}`));

/** The kinds and references of the ledger journals for one purchase, oldest first. */
const journals = async (app: FastifyInstance, transactionId: string) =>
  (
    await app.store.db
      .selectFrom('ledger_journals')
      .select(['kind', 'reference'])
      .where('transaction_id', '=', transactionId)
      .orderBy('id')
      .execute()
  ).map((j) => `${j.kind} ${j.reference}`);

/** A player who bought package_2 (300 coins for 25.00) with a saved card: its ids. */
async function paidPurchase(t: Test, app: FastifyInstance) {
  const { user_id } = await customerWithCard(app);
  const bought = json(await buy(app, user_id, 'package_2'));
  t.match(bought, { status: 'success', currency_purchased: 300, new_balance: 300 });
  const transactionId = String(bought['transaction_id']);
  const paymentIntentId = String((await purchase(app, transactionId))['payment_intent_id']);
  return { userId: user_id, transactionId, paymentIntentId };
}

/** The events about one PaymentIntent's disputes, in the order they happened. */
const disputeEvents = (events: StripeEventObject[], paymentIntentId: string) =>
  events.filter(
    (e) => (e.type === 'charge.dispute.created' || e.type === 'charge.dispute.closed') && e.data.object.payment_intent === paymentIntentId,
  );

/** The newest event about one PaymentIntent's disputes. */
function lastDisputeEvent(events: StripeEventObject[], paymentIntentId: string): StripeEventObject {
  const event = disputeEvents(events, paymentIntentId).at(-1);
  if (!event) throw new Error(`no dispute event for ${paymentIntentId}`);
  return event;
}

t.test('a chargeback after a closed inquiry on the same charge takes the coins back; the inquiry takes none', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t);
  const { userId, transactionId, paymentIntentId } = await paidPurchase(t, app);

  // The bank asks a question first (an inquiry, or retrieval request): no money moves at Stripe.
  const inquiry = stripe.dispute(paymentIntentId, { inquiry: true });
  t.equal(inquiry.status, 'warning_needs_response');
  const [inquiryOpened] = disputeEvents(stripe.events, paymentIntentId);
  if (!inquiryOpened) throw new Error('no event');
  t.same(json(await deliver(inquiryOpened)), { received: true, outcome: 'processed' });
  t.match(await purchase(app, transactionId), { status: 'completed' }, 'an inquiry does not dispute the payment');
  t.equal(await balance(app, userId), 300, 'an inquiry holds no coins back: Stripe took no money');

  stripe.closeDispute(inquiry.id, 'warning_closed');
  const inquiryClosed = disputeEvents(stripe.events, paymentIntentId).at(-1);
  if (!inquiryClosed) throw new Error('no event');
  t.same(json(await deliver(inquiryClosed)), { received: true, outcome: 'processed' });
  t.match(await purchase(app, transactionId), { status: 'completed' });
  t.equal(await balance(app, userId), 300);

  // Weeks later the same bank files a chargeback on the same charge: a new dispute object.
  const chargeback = stripe.dispute(paymentIntentId);
  t.not(chargeback.id, inquiry.id);
  const chargebackOpened = disputeEvents(stripe.events, paymentIntentId).at(-1);
  if (!chargebackOpened) throw new Error('no event');
  t.same(json(await deliver(chargebackOpened)), { received: true, outcome: 'processed' });
  t.match(await purchase(app, transactionId), { status: 'disputed' });
  t.equal(await balance(app, userId), 0, 'the chargeback holds the coins back');

  stripe.closeDispute(chargeback.id, 'lost');
  const chargebackLost = disputeEvents(stripe.events, paymentIntentId).at(-1);
  if (!chargebackLost) throw new Error('no event');
  t.same(json(await deliver(chargebackLost)), { received: true, outcome: 'processed' });
  t.match(await purchase(app, transactionId), { status: 'dispute_lost' });
  t.equal(await balance(app, userId), 0, 'lost: the coins stay gone');
  expectProblem(
    t,
    await post(app, '/stripe/spend-currency', { user_id: userId, amount: 1, item_id: 'sword' }),
    400,
    'insufficient_balance',
  );
  t.same(await journals(app, transactionId), [`purchase ${paymentIntentId}`, `dispute ${chargeback.id}`]);

  // Stripe delivers every event again: nothing changes.
  for (const event of disputeEvents(stripe.events, paymentIntentId))
    t.same(json(await deliver(event)), { received: true, outcome: 'duplicate' });
  t.equal(await balance(app, userId), 0);
  t.same(await app.store.balanceMismatches(), []);
});

t.test('an inquiry then a chargeback end in the same place whatever order their events arrive in', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t);
  const orders: { name: string; order: (events: StripeEventObject[]) => StripeEventObject[] }[] = [
    { name: 'as they happened', order: (e) => e },
    { name: 'newest first', order: (e) => [...e].reverse() },
    { name: "the chargeback's closing first", order: ([a, b, c, d]) => [d, a, c, b].filter((e) => e !== undefined) },
    { name: 'closings first', order: ([a, b, c, d]) => [b, d, a, c].filter((e) => e !== undefined) },
  ];
  for (const outcome of ['lost', 'won'] as const) {
    for (const { name, order } of orders) {
      const { userId, transactionId, paymentIntentId } = await paidPurchase(t, app);
      const inquiry = stripe.dispute(paymentIntentId, { inquiry: true });
      stripe.closeDispute(inquiry.id, 'warning_closed');
      const chargeback = stripe.dispute(paymentIntentId);
      stripe.closeDispute(chargeback.id, outcome);
      const events = order(disputeEvents(stripe.events, paymentIntentId));
      t.equal(events.length, 4);
      for (const event of events)
        t.same(json(await deliver(event)), { received: true, outcome: 'processed' }, `${name}: ${event.data.object.status}`);
      t.match(await purchase(app, transactionId), { status: `dispute_${outcome}` }, `${outcome}, ${name}`);
      t.equal(await balance(app, userId), outcome === 'won' ? 300 : 0, `${outcome}, ${name}`);
    }
  }
  t.same(await app.store.balanceMismatches(), []);
});

t.test('a new chargeback after a won one holds the coins back again', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t);
  const { userId, transactionId, paymentIntentId } = await paidPurchase(t, app);
  const first = stripe.dispute(paymentIntentId);
  stripe.closeDispute(first.id, 'won');
  for (const event of disputeEvents(stripe.events, paymentIntentId)) t.equal(json(await deliver(event))['outcome'], 'processed');
  t.match(await purchase(app, transactionId), { status: 'dispute_won' });
  t.equal(await balance(app, userId), 300);

  const second = stripe.dispute(paymentIntentId);
  t.same(json(await deliver(lastDisputeEvent(stripe.events, paymentIntentId))), { received: true, outcome: 'processed' });
  t.match(await purchase(app, transactionId), { status: 'disputed' }, 'disputed again');
  t.equal(await balance(app, userId), 0, 'the second chargeback holds the coins back');

  stripe.closeDispute(second.id, 'won');
  t.same(json(await deliver(lastDisputeEvent(stripe.events, paymentIntentId))), { received: true, outcome: 'processed' });
  t.match(await purchase(app, transactionId), { status: 'dispute_won' });
  t.equal(await balance(app, userId), 300);
  t.same(await journals(app, transactionId), [
    `purchase ${paymentIntentId}`,
    `dispute ${first.id}`,
    `dispute_reversal ${first.id}`,
    `dispute ${second.id}`,
    `dispute_reversal ${second.id}`,
  ]);
  t.same(await app.store.balanceMismatches(), []);
});

/**
 * A purchase whose Stripe call timed out (Stripe charged, coinshop never heard the answer): it stays
 * pending with no PaymentIntent id. Returns the PaymentIntent Stripe made.
 */
async function purchaseLeftPending(t: Test, app: FastifyInstance, stripe: Awaited<ReturnType<typeof appOnFakeStripe>>['stripe']) {
  const { user_id } = await customerWithCard(app);
  stripe.setLatency(600);
  const { transaction_id } = expectProblem(t, await buy(app, user_id, 'package_2'), 502, 'payment_pending');
  for (let waited = 0; stripe.paymentIntents.size === 0 && waited < 5000; waited += 50)
    await new Promise((resolve) => setTimeout(resolve, 50));
  stripe.setLatency(0);
  const [intent] = [...stripe.paymentIntents.values()];
  if (!intent) throw new Error('Stripe made no PaymentIntent');
  t.equal(intent.status, 'succeeded', 'Stripe charged');
  const transactionId = String(transaction_id);
  t.match(await purchase(app, transactionId), { status: 'pending' });
  t.notOk((await purchase(app, transactionId))['payment_intent_id'], 'coinshop does not know the PaymentIntent');
  return { userId: user_id, transactionId, intent };
}

t.test('a dispute that arrives before the purchase knows its PaymentIntent is linked through Stripe, not ignored', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t, { STRIPE_TIMEOUT_MS: '200' });
  const { userId, transactionId, intent } = await purchaseLeftPending(t, app, stripe);

  // The chargeback's event is the first coinshop hears of the payment (the Dispute has no metadata).
  const dispute = stripe.dispute(intent.id);
  const [opened] = disputeEvents(stripe.events, intent.id);
  if (!opened) throw new Error('no event');
  const lookupsBefore = stripe.requests.filter((r) => r.method === 'GET' && r.path === `/v1/payment_intents/${intent.id}`).length;
  t.same(json(await deliver(opened)), { received: true, outcome: 'processed' });
  t.equal(
    stripe.requests.filter((r) => r.method === 'GET' && r.path === `/v1/payment_intents/${intent.id}`).length,
    lookupsBefore + 1,
    'coinshop read the PaymentIntent (its metadata names the purchase)',
  );
  t.match(await purchase(app, transactionId), { status: 'disputed', payment_intent_id: intent.id });
  t.equal(await balance(app, userId), 0, 'credited and held back at once: nothing to spend');
  expectProblem(
    t,
    await post(app, '/stripe/spend-currency', { user_id: userId, amount: 1, item_id: 'sword' }),
    400,
    'insufficient_balance',
  );

  // The payment's own event, and a lookup, come later: the coins stay held back.
  const succeeded = stripe.events.find((e) => e.type === 'payment_intent.succeeded' && e.data.object.id === intent.id);
  if (!succeeded) throw new Error('no event');
  t.same(json(await deliver(succeeded)), { received: true, outcome: 'processed' });
  t.match(await purchase(app, transactionId), { status: 'disputed' });
  t.equal(await balance(app, userId), 0);

  stripe.closeDispute(dispute.id, 'lost');
  const lost = disputeEvents(stripe.events, intent.id).at(-1);
  if (!lost) throw new Error('no event');
  t.same(json(await deliver(lost)), { received: true, outcome: 'processed' });
  t.match(await purchase(app, transactionId), { status: 'dispute_lost' });
  t.equal(await balance(app, userId), 0);
  t.same(await journals(app, transactionId), [`purchase ${intent.id}`, `dispute ${dispute.id}`]);
  t.same(await app.store.balanceMismatches(), []);
});

t.test('an early dispute whose closing event is the only one to arrive still takes the coins', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t, { STRIPE_TIMEOUT_MS: '200' });
  const { userId, transactionId, intent } = await purchaseLeftPending(t, app, stripe);
  const dispute = stripe.dispute(intent.id);
  stripe.closeDispute(dispute.id, 'lost');
  const lost = disputeEvents(stripe.events, intent.id).at(-1);
  if (!lost) throw new Error('no event');
  t.same(json(await deliver(lost)), { received: true, outcome: 'processed' });
  t.match(await purchase(app, transactionId), { status: 'dispute_lost', payment_intent_id: intent.id });
  t.equal(await balance(app, userId), 0);
  // Reconciliation (or the purchase lookup) finds the payment succeeded: it was credited already.
  const succeeded = stripe.events.find((e) => e.type === 'payment_intent.succeeded' && e.data.object.id === intent.id);
  if (!succeeded) throw new Error('no event');
  t.same(json(await deliver(succeeded)), { received: true, outcome: 'processed' });
  t.equal(await balance(app, userId), 0);
  t.same(await journals(app, transactionId), [`purchase ${intent.id}`, `dispute ${dispute.id}`]);
});

t.test('when Stripe cannot be asked about an early dispute, the webhook fails and Stripe delivers it again', async (t) => {
  const { app, stripe, deliver } = await appOnFakeStripe(t, { STRIPE_TIMEOUT_MS: '200' });
  const { userId, transactionId, intent } = await purchaseLeftPending(t, app, stripe);
  stripe.dispute(intent.id);
  const [opened] = disputeEvents(stripe.events, intent.id);
  if (!opened) throw new Error('no event');
  stripe.failNext(1, 500);
  expectProblem(t, await deliver(opened), 502, 'payment_provider_error');
  t.equal(
    (await app.store.db.selectFrom('webhook_events').select('event_id').where('event_id', '=', opened.id).execute()).length,
    0,
    'the event is not recorded, so its redelivery is processed',
  );
  t.same(json(await deliver(opened)), { received: true, outcome: 'processed' });
  t.match(await purchase(app, transactionId), { status: 'disputed', payment_intent_id: intent.id });
  t.equal(await balance(app, userId), 0);
});
