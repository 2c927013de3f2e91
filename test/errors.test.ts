import t from 'tap';
import { SimulatedGateway } from '../src/gateway/simulated.js';
import { attachCard, buildTestApp, buy, createCustomer, customerWithCard, expectProblem, get, json, post } from './support/helper.js';

const UNKNOWN = '00000000-0000-4000-8000-000000000000';

t.test('every seed error message, with its status and code', async (t) => {
  const app = await buildTestApp(t);
  const { user_id } = await createCustomer(app);

  expectProblem(t, await get(app, `/stripe/customer/${UNKNOWN}`), 404, 'customer_not_found', 'Customer not found');
  expectProblem(t, await get(app, `/stripe/transactions/${UNKNOWN}`), 404, 'customer_not_found', 'Customer not found');
  expectProblem(t, await attachCard(app, UNKNOWN, 'pm_card_visa'), 404, 'customer_not_found', 'Customer not found');
  expectProblem(t, await buy(app, UNKNOWN, 'package_1'), 404, 'customer_not_found', 'Customer not found');
  expectProblem(t, await buy(app, user_id, 'package_1'), 400, 'no_payment_method', 'No payment method attached');
  await attachCard(app, user_id, 'pm_card_visa');
  expectProblem(t, await buy(app, user_id, 'package_9'), 400, 'invalid_package', 'Invalid package ID');
  expectProblem(t, await buy(app, user_id, 'PACKAGE_1'), 400, 'invalid_package', 'Invalid package ID');

  const history = json(await get(app, `/stripe/transactions/${user_id}`));
  t.same(history['transactions'], [], 'refused purchases are not attempts: nothing was recorded');
});

t.test('declines give the seed messages and are recorded as failed attempts', async (t) => {
  const app = await buildTestApp(t);
  for (const [card, code, detail] of [
    ['pm_card_chargeDeclined', 'card_declined', 'Card was declined'],
    ['pm_card_insufficient_funds', 'insufficient_funds', 'Insufficient funds'],
  ] as const) {
    const { user_id } = await customerWithCard(app, card);
    const body = expectProblem(t, await buy(app, user_id, 'package_1'), 400, code, detail);
    const history = json(await get(app, `/stripe/transactions/${user_id}`)) as { transactions: Record<string, unknown>[] };
    t.same(
      history.transactions.map((tx) => [tx['transaction_id'], tx['status'], tx['failure_code']]),
      [[body['transaction_id'], 'failed', code]],
      `${card}: one failed attempt in the history`,
    );
    t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 0, `${card}: no coins`);
  }
});

t.test('validation failures are 400 problems that name each bad field and change nothing', async (t) => {
  const app = await buildTestApp(t);
  const { user_id } = await createCustomer(app);

  const cases: [string, object, string[]][] = [
    ['/stripe/create-customer', {}, ['body/email is required', 'body/name is required']],
    ['/stripe/create-customer', { email: 'not-an-email', name: 'A' }, ['body/email must match format "email"']],
    ['/stripe/create-customer', { email: 'a@example.com', name: '' }, ['body/name must NOT have fewer than 1 characters']],
    ['/stripe/create-customer', { email: 'a@example.com', name: 'x'.repeat(201) }, ['body/name must NOT have more than 200 characters']],
    ['/stripe/create-customer', { email: 'a@example.com', name: 'A', balance: 1000 }, ['body/balance is not a known field']],
    ['/stripe/create-customer', { email: 'a@example.com', name: 42 }, ['body/name must be string']],
    [
      '/stripe/attach-payment-method',
      { user_id, payment_method_id: 'card_123' },
      ['body/payment_method_id must match pattern "^pm_[A-Za-z0-9_]+$"'],
    ],
    ['/stripe/attach-payment-method', { user_id }, ['body/payment_method_id is required']],
    ['/stripe/purchase-currency', { user_id, package_id: 'package_1', amount: 1 }, ['body/amount is not a known field']],
    [
      '/stripe/purchase-currency',
      { user_id: 'u'.repeat(65), package_id: 'package_1' },
      ['body/user_id must NOT have more than 64 characters'],
    ],
  ];
  for (const [url, payload, messages] of cases) {
    const body = expectProblem(t, await post(app, url, payload), 400, 'validation_error');
    const errors = body['errors'] as { field: string; message: string }[];
    t.same(errors.map((e) => `${e.field} ${e.message}`).sort(), [...messages].sort(), `${url} ${JSON.stringify(payload)}`);
    t.equal(body['detail'], `Invalid input: ${errors.map((e) => `${e.field} ${e.message}`).join('; ')}`);
  }
  const customer = json(await get(app, `/stripe/customer/${user_id}`));
  t.equal(customer['currency_balance'], 0);
  t.same(json(await get(app, `/stripe/transactions/${user_id}`))['transactions'], []);
});

t.test('malformed requests get problems too', async (t) => {
  const app = await buildTestApp(t);
  const badJson = await app.inject({
    method: 'POST',
    url: '/stripe/create-customer',
    headers: { 'content-type': 'application/json' },
    payload: '{"email": ',
  });
  expectProblem(t, badJson, 400, 'validation_error');

  const wrongType = await app.inject({
    method: 'POST',
    url: '/stripe/create-customer',
    headers: { 'content-type': 'text/plain' },
    payload: 'email=a@example.com',
  });
  expectProblem(t, wrongType, 415, 'unsupported_media_type');

  const tooLarge = await post(app, '/stripe/create-customer', { email: 'a@example.com', name: 'x'.repeat(70_000) });
  expectProblem(t, tooLarge, 413, 'payload_too_large');

  expectProblem(t, await get(app, '/stripe/nowhere'), 404, 'not_found', 'No route GET /stripe/nowhere');
  expectProblem(t, await app.inject({ method: 'DELETE', url: '/stripe/packages' }), 404, 'not_found');
});

t.test('a request id is returned, and a sane caller-supplied one is kept', async (t) => {
  const app = await buildTestApp(t);
  const own = await app.inject({ method: 'GET', url: '/stripe/packages', headers: { 'x-request-id': 'game-backend-42' } });
  t.equal(own.headers['x-request-id'], 'game-backend-42');
  const odd = await app.inject({ method: 'GET', url: '/stripe/packages', headers: { 'x-request-id': 'bad id <script>' } });
  t.match(odd.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'an unsafe id is replaced');
});

t.test('an unexpected failure is a 500 that shows nothing of its cause', async (t) => {
  class BrokenGateway extends SimulatedGateway {
    override async createCustomer(): Promise<{ id: string }> {
      throw new Error('SQLITE_CORRUPT: secret sk_test_abc123 at /srv/app/db.sqlite');
    }
  }
  const app = await buildTestApp(t, { gateway: new BrokenGateway() });
  const response = await post(app, '/stripe/create-customer', { email: 'a@example.com', name: 'A' });
  const body = expectProblem(t, response, 500, 'internal_error');
  t.notMatch(response.body, /SQLITE|sk_test|\/srv|stack/i);
  t.equal(body['detail'], 'An unexpected error occurred. It has been logged with this request id.');
});

t.test('text no database could store as sent (NUL, unpaired surrogates) is a 400 naming the field, on every engine', async (t) => {
  const app = await buildTestApp(t);
  const { user_id } = await customerWithCard(app);
  const cases: [string, object, string][] = [
    ['/stripe/create-customer', { email: 'nul@example.com', name: 'nul\u0000inside' }, 'body/name'],
    ['/stripe/create-customer', { email: 'lone@example.com', name: 'lone \uD800 surrogate' }, 'body/name'],
    ['/stripe/spend-currency', { user_id, amount: 1, item_id: 'sword\u0000' }, 'body/item_id'],
  ];
  for (const [url, payload, field] of cases) {
    const body = expectProblem(t, await post(app, url, payload), 400, 'validation_error');
    t.same(body['errors'], [{ field, message: 'must be valid Unicode text without NUL characters (no unpaired surrogates, no U+0000)' }]);
  }
  expectProblem(t, await get(app, '/stripe/customer/abc%00def'), 400, 'validation_error');
  t.same(json(await get(app, `/stripe/transactions/${user_id}`))['transactions'], [], 'nothing was bought or spent');
  t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 0);
});

t.test('a value outside a fixed set is one error naming the allowed values, not one "must be equal to constant" per value', async (t) => {
  const app = await buildTestApp(t);
  const response = await app.inject({
    method: 'POST',
    url: '/simulator/payment-intents/pi_sim_x/authenticate',
    payload: { outcome: 'maybe' },
  });
  const body = expectProblem(t, response, 400, 'validation_error', 'Invalid input: body/outcome must be one of "succeed", "fail"');
  t.same(body['errors'], [{ field: 'body/outcome', message: 'must be one of "succeed", "fail"' }]);
  const closing = await app.inject({ method: 'POST', url: '/simulator/disputes/dp_sim_x/close', payload: { outcome: 'draw' } });
  expectProblem(t, closing, 400, 'validation_error', 'Invalid input: body/outcome must be one of "won", "lost"');
});
