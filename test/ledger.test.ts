import t from 'tap';
import { SimulatedGateway } from '../src/gateway/simulated.js';
import { buildTestApp, buy, customerWithCard, expectProblem, get, json, post } from './support/helper.js';

type Page = { currency_balance: number; entries: Record<string, unknown>[]; next_cursor?: string };
type App = Awaited<ReturnType<typeof buildTestApp>>;

const ledger = async (app: App, userId: string, query = '') => json(await get(app, `/stripe/ledger/${userId}${query}`)) as Page;
const balance = async (app: App, userId: string) => json(await get(app, `/stripe/customer/${userId}`))['currency_balance'];
const spend = (app: App, userId: string, amount: number, item = 'item') =>
  post(app, '/stripe/spend-currency', { user_id: userId, amount, item_id: item });
const refund = (app: App, transactionId: string, body: object = {}) => post(app, `/stripe/purchases/${transactionId}/refund`, body);

t.test('every balance change is a ledger entry; the balance is their sum; pages go back in time', async (t) => {
  const app = await buildTestApp(t);
  const { user_id } = await customerWithCard(app);
  const bought = json(await buy(app, user_id, 'package_2'));
  await buy(app, user_id, 'package_1');
  const spent = await spend(app, user_id, 150, 'sword_of_dawn');
  t.match(json(spent), { status: 'success', currency_spent: 150, new_balance: 250, message: 'Currency spent successfully' });

  const page = await ledger(app, user_id);
  t.equal(page.currency_balance, 250);
  t.match(page.entries, [
    { amount: -150, balance_after: 250, reason: 'spend', memo: 'sword_of_dawn' },
    { amount: 100, balance_after: 400, reason: 'purchase', memo: 'Starter Pack' },
    { amount: 300, balance_after: 300, reason: 'purchase', transaction_id: bought['transaction_id'], memo: 'Popular Pack' },
  ]);
  t.match(page.entries[2]?.['reference'], /^pi_sim_/);
  t.notOk(page.next_cursor, 'one page holds it all');

  const first = await ledger(app, user_id, '?limit=2');
  t.equal(first.entries.length, 2);
  t.ok(first.next_cursor);
  const second = await ledger(app, user_id, `?limit=2&cursor=${String(first.next_cursor)}`);
  t.same(second.entries, page.entries.slice(2), 'the next page continues where the first stopped');
  t.notOk(second.next_cursor);

  expectProblem(t, await get(app, `/stripe/ledger/${user_id}?limit=0`), 400, 'validation_error');
  expectProblem(t, await get(app, `/stripe/ledger/${user_id}?limit=abc`), 400, 'validation_error');
  expectProblem(t, await get(app, `/stripe/ledger/${user_id}?cursor=-1`), 400, 'validation_error');
  // Past 2^53 a cursor is no entry id JavaScript can hold (PostgreSQL was sent "1e+32"): refused on both engines.
  for (const cursor of ['9007199254740993', '9223372036854775807', '99999999999999999999999999999999']) {
    expectProblem(
      t,
      await get(app, `/stripe/ledger/${user_id}?cursor=${cursor}`),
      400,
      'validation_error',
      'Invalid input: querystring/cursor must be an entry id from next_cursor',
    );
  }
  expectProblem(t, await get(app, '/stripe/ledger/nobody'), 404, 'customer_not_found');
  t.same(await app.store.balanceMismatches(), []);
  t.same(await app.store.unbalancedJournals(), [], "every journal's entries sum to zero");
});

t.test('a spend never takes a balance below zero; a refused spend writes nothing', async (t) => {
  const app = await buildTestApp(t);
  const { user_id } = await customerWithCard(app);
  await buy(app, user_id, 'package_1');
  expectProblem(
    t,
    await spend(app, user_id, 101),
    400,
    'insufficient_balance',
    'Insufficient coins: the balance is 100, the item costs 101',
  );
  t.equal((await ledger(app, user_id)).entries.length, 1, 'no entry written');
  const racing = await Promise.all(Array.from({ length: 5 }, () => spend(app, user_id, 30)));
  t.same(racing.map((r) => r.statusCode).sort(), [200, 200, 200, 400, 400], 'three spends fit in 100 coins');
  t.equal(await balance(app, user_id), 10);
  expectProblem(t, await spend(app, 'nobody', 1), 404, 'customer_not_found');
  expectProblem(t, await spend(app, user_id, 0), 400, 'validation_error');
});

t.test('refunds take coins back pro rata; spent coins leave a visible debt', async (t) => {
  const app = await buildTestApp(t);
  const { user_id } = await customerWithCard(app);
  const purchase = json(await buy(app, user_id, 'package_3'));
  const id = String(purchase['transaction_id']);

  const partial = await refund(app, id, { amount_cents: 1000 });
  t.equal(partial.statusCode, 200);
  t.match(json(partial), { status: 'partially_refunded', amount_refunded: 1000 });
  t.equal(await balance(app, user_id), 560, '1000 of 5000 cents: 140 of 700 coins back');

  t.equal((await spend(app, user_id, 500)).statusCode, 200);
  t.equal(await balance(app, user_id), 60);

  const rest = await refund(app, id);
  t.match(json(rest), { status: 'refunded', amount_refunded: 5000 });
  t.equal(await balance(app, user_id), -500, 'the coins already spent show as a debt, not silently dropped');
  expectProblem(t, await spend(app, user_id, 1), 400, 'insufficient_balance');
  t.match((await ledger(app, user_id)).entries.slice(0, 2), [
    { reason: 'refund', amount: -560, balance_after: -500 },
    { reason: 'spend', amount: -500 },
  ]);
  expectProblem(t, await refund(app, id), 409, 'invalid_state');
  expectProblem(t, await refund(app, '00000000-0000-4000-8000-000000000000'), 404, 'purchase_not_found');

  const more = json(await buy(app, user_id, 'package_2'));
  t.equal(more['new_balance'], -200, 'a later purchase pays the debt off first');
  t.same(await app.store.balanceMismatches(), []);
});

t.test('disputes hold the coins back; won gives them back, lost does not', async (t) => {
  const app = await buildTestApp(t);
  const simulator = app.payments;
  if (!(simulator instanceof SimulatedGateway)) throw new Error('expected the simulated gateway');
  for (const [outcome, expected] of [
    ['won', 300],
    ['lost', 0],
  ] as const) {
    const { user_id } = await customerWithCard(app);
    const purchase = json(await buy(app, user_id, 'package_2'));
    const paid = json(await get(app, `/stripe/purchases/${String(purchase['transaction_id'])}`));
    const opened = await post(app, `/simulator/payment-intents/${String(paid['payment_intent_id'])}/dispute`, {});
    t.match(json(opened), { purchase: { status: 'disputed' }, dispute_id: /^dp_sim_/ });
    t.equal(await balance(app, user_id), 0, 'disputed coins are held back');
    const closed = await post(app, `/simulator/disputes/${String(json(opened)['dispute_id'])}/close`, { outcome });
    t.match(json(closed), { purchase: { status: `dispute_${outcome}` } });
    t.equal(await balance(app, user_id), expected, `dispute ${outcome}`);
  }
  t.same(await app.store.balanceMismatches(), []);
});

t.test('reconciliation on a timer finishes what was left unfinished', async (t) => {
  const app = await buildTestApp(t, { env: { RECONCILE_INTERVAL_SECONDS: '1', RECONCILE_AFTER_SECONDS: '1' } });
  const { user_id } = await customerWithCard(app, 'pm_card_threeDSecure2Required');
  const problem = expectProblem(t, await buy(app, user_id, 'package_1'), 402, 'authentication_required');
  const simulator = app.payments;
  if (!(simulator instanceof SimulatedGateway)) throw new Error('expected the simulated gateway');
  // The customer authenticates, but the webhook never arrives.
  simulator.onWebhook(async () => {});
  await simulator.authenticate(String(problem['payment_intent_id']), 'succeed');
  t.equal(await balance(app, user_id), 0);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && (await balance(app, user_id)) === 0) await new Promise((r) => setTimeout(r, 100));
  t.equal(await balance(app, user_id), 100, 'the reconciler asked Stripe and credited');
});
