import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { renderSdkSchema, SPEC } from '../sdk/generate.js';
import {
  createCoinshopClient,
  type CheckoutSessionCreated,
  verifyNotification,
  type Customer,
  type NotificationEvent,
  type Package,
  type Problem,
  type PurchaseResult,
  type Transaction,
} from '../sdk/index.js';
import { buildTestApp, buy, customerWithCard } from './support/helper.js';
import { inSource, projectFile } from './support/project.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const apiKey = 'ck_test_sdk_0123456789abcdefghijklmn';

t.test('sdk/schema.ts is exactly what openapi-typescript makes of openapi.yaml (run `npm run sdk` after `npm run openapi`)', async (t) => {
  const committed = readFileSync(projectFile('sdk/schema.ts'), 'utf8');
  t.equal(await renderSdkSchema(inSource(SPEC)), committed);
  for (const name of [
    'Customer',
    'PurchaseResult',
    'Problem',
    'FieldError',
    'Package',
    'Transaction',
    'TransactionStatus',
    'LedgerReason',
  ]) {
    t.match(committed, new RegExp(`^        ${name}: `, 'm'), `components.schemas.${name} is a named type`);
  }
});

/** A coinshop listening on a free port (real HTTP), with API keys required. */
async function serve(t: Test) {
  const app = await buildTestApp(t, { env: { API_KEYS: apiKey } });
  return app.listen({ host: '127.0.0.1', port: 0 });
}

t.test('Stripe Checkout through the generated SDK: open a session, pay it (simulated), the purchase is credited', async (t) => {
  const baseUrl = await serve(t);
  const shop = createCoinshopClient(baseUrl, apiKey);
  const created = await shop.POST('/stripe/create-customer', { body: { email: 'checkout@example.com', name: 'Checkout' } });
  const user_id = created.data?.user_id ?? '';
  const opened = await shop.POST('/stripe/checkout-sessions', {
    params: { header: { 'idempotency-key': randomUUID() } },
    // In development the server's own origin is an allowed return origin.
    body: {
      user_id,
      package_id: 'package_1',
      success_url: `${baseUrl}/checkout?checkout=paid`,
      cancel_url: `${baseUrl}/checkout?checkout=canceled`,
    },
  });
  const session: CheckoutSessionCreated | undefined = opened.data;
  t.match(session, { session_id: /^cs_sim_/, transaction_id: UUID, checkout_url: `${baseUrl}/checkout/pay/${session?.session_id ?? ''}` });
  const paid = await shop.POST('/simulator/checkout-sessions/{session_id}', {
    params: { path: { session_id: session?.session_id ?? '' } },
    body: { outcome: 'complete' },
  });
  t.equal(paid.data?.purchase.status, 'completed');
  const purchase = await shop.GET('/stripe/purchases/{transaction_id}', {
    params: { path: { transaction_id: session?.transaction_id ?? '' } },
  });
  t.match(purchase.data, { status: 'completed', currency_purchased: 100, user_id });
  const refused = await shop.POST('/stripe/checkout-sessions', {
    body: { user_id, package_id: 'package_1', success_url: 'https://elsewhere.example/done', cancel_url: `${baseUrl}/checkout` },
  });
  t.equal(refused.error?.code, 'invalid_return_url');
  t.match(refused.error?.errors, [{ field: 'body/success_url' }]);
});

t.test('the seed flow through the generated SDK, over real HTTP', async (t) => {
  const baseUrl = await serve(t);

  const anonymous = await createCoinshopClient(baseUrl).GET('/stripe/packages');
  t.equal(anonymous.response.status, 401, 'without the key the server refuses');
  t.equal(anonymous.error?.code, 'unauthorized');
  t.equal(anonymous.data, undefined);

  const shop = createCoinshopClient(baseUrl, apiKey);

  const packages = await shop.GET('/stripe/packages');
  const list: Package[] = packages.data?.packages ?? [];
  t.same(
    list.map((p) => [p.package_id, p.name, p.price_cents, p.price_dollars, p.currency_amount]),
    [
      ['package_1', 'Starter Pack', 1000, 10, 100],
      ['package_2', 'Popular Pack', 2500, 25, 300],
      ['package_3', 'Premium Pack', 5000, 50, 700],
    ],
  );

  const created = await shop.POST('/stripe/create-customer', { body: { email: 'customer@example.com', name: 'Customer Name' } });
  t.equal(created.response.status, 200);
  t.match(created.data, { status: 'success', message: 'Customer created successfully', stripe_customer_id: /^cus_sim_/ });
  const userId = created.data?.user_id ?? '';
  t.match(userId, UUID);

  const fresh = await shop.GET('/stripe/customer/{user_id}', { params: { path: { user_id: userId } } });
  const customer: Customer | undefined = fresh.data;
  t.match(customer, { user_id: userId, email: 'customer@example.com', name: 'Customer Name', currency_balance: 0 });

  const attached = await shop.POST('/stripe/attach-payment-method', { body: { user_id: userId, payment_method_id: 'pm_card_visa' } });
  t.same(attached.data, { status: 'success', message: 'Test payment method configured for customer', payment_method_id: 'pm_card_visa' });

  const bought: PurchaseResult[] = [];
  for (const [packageId, coins, balance] of [
    ['package_1', 100, 100],
    ['package_2', 300, 400],
    ['package_3', 700, 1100],
  ] as const) {
    const purchase = await shop.POST('/stripe/purchase-currency', { body: { user_id: userId, package_id: packageId } });
    t.equal(purchase.response.status, 200, `${packageId} bought`);
    t.match(purchase.data, { status: 'success', currency_purchased: coins, new_balance: balance, message: 'Currency purchase successful' });
    if (purchase.data) bought.push(purchase.data);
  }
  t.equal(bought.length, 3);

  const key = randomUUID();
  const first = await shop.POST('/stripe/purchase-currency', {
    body: { user_id: userId, package_id: 'package_1' },
    params: { header: { 'idempotency-key': key } },
  });
  const retry = await shop.POST('/stripe/purchase-currency', {
    body: { user_id: userId, package_id: 'package_1' },
    params: { header: { 'idempotency-key': key } },
  });
  t.equal(first.data?.new_balance, 1200);
  t.same(retry.data, first.data, 'the retry with the same Idempotency-Key gets the first answer');
  t.equal(retry.response.headers.get('idempotent-replayed'), 'true');

  const balance = await shop.GET('/stripe/customer/{user_id}', { params: { path: { user_id: userId } } });
  t.equal(balance.data?.currency_balance, 1200, 'three packs and one idempotent purchase, credited once');

  const history = await shop.GET('/stripe/transactions/{user_id}', { params: { path: { user_id: userId } } });
  const transactions: Transaction[] = history.data?.transactions ?? [];
  t.same(
    transactions.map((tx) => [tx.transaction_id, tx.package_name, tx.amount_paid, tx.currency_purchased, tx.status]),
    [
      [first.data?.transaction_id, 'Starter Pack', 1000, 100, 'completed'],
      [bought[2]?.transaction_id, 'Premium Pack', 5000, 700, 'completed'],
      [bought[1]?.transaction_id, 'Popular Pack', 2500, 300, 'completed'],
      [bought[0]?.transaction_id, 'Starter Pack', 1000, 100, 'completed'],
    ],
    'four purchases, newest first',
  );

  const invalidPackage = await shop.POST('/stripe/purchase-currency', { body: { user_id: userId, package_id: 'invalid_package' } });
  t.match(invalidPackage.error, { status: 400, code: 'invalid_package', detail: 'Invalid package ID' });
  const unknown = await shop.GET('/stripe/customer/{user_id}', { params: { path: { user_id: 'invalid_user_id' } } });
  t.match(unknown.error, { status: 404, code: 'customer_not_found', detail: 'Customer not found' });
  t.equal(unknown.response.headers.get('content-type'), 'application/problem+json; charset=utf-8');
});

t.test('a declined card comes back as a typed Problem, recorded as failed', async (t) => {
  const shop = createCoinshopClient(await serve(t), apiKey);
  for (const [card, code, detail] of [
    ['pm_card_chargeDeclined', 'card_declined', 'Card was declined'],
    ['pm_card_insufficient_funds', 'insufficient_funds', 'Insufficient funds'],
  ] as const) {
    const created = await shop.POST('/stripe/create-customer', { body: { email: 'declined@example.com', name: 'Declined' } });
    const userId = created.data?.user_id ?? '';
    await shop.POST('/stripe/attach-payment-method', { body: { user_id: userId, payment_method_id: card } });

    const purchase = await shop.POST('/stripe/purchase-currency', { body: { user_id: userId, package_id: 'package_2' } });
    t.equal(purchase.data, undefined, `${card}: no data`);
    const problem: Problem | undefined = purchase.error;
    t.match(problem, { type: `urn:coinshop:problem:${code}`, status: 400, code, detail, transaction_id: UUID });
    t.equal(problem?.request_id, purchase.response.headers.get('x-request-id'));

    const history = await shop.GET('/stripe/transactions/{user_id}', { params: { path: { user_id: userId } } });
    t.match(history.data?.transactions, [{ transaction_id: problem?.transaction_id, status: 'failed', failure_code: code }]);
    const after = await shop.GET('/stripe/customer/{user_id}', { params: { path: { user_id: userId } } });
    t.equal(after.data?.currency_balance, 0, `${card}: nothing credited`);
  }
});

t.test('a request the schema refuses names each bad field in FieldError entries', async (t) => {
  const shop = createCoinshopClient(await serve(t), apiKey);
  const refused = await shop.POST('/stripe/create-customer', { body: { email: 'not-an-email', name: 'Someone' } });
  t.equal(refused.response.status, 400);
  t.match(refused.error, { code: 'validation_error', errors: [{ field: 'body/email', message: String }] });
});

t.test("a game server's notification handler, written with the SDK's verifyNotification", async (t) => {
  const secret = `whsec_${Buffer.from(randomUUID()).toString('base64')}`;
  const granted: NotificationEvent[] = [];
  const seen = new Set<string>();
  const refused: string[] = [];
  // The handler docs/notifications.md shows: verify, dedupe by webhook-id, grant, answer 2xx.
  const game = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      let event: NotificationEvent;
      try {
        event = verifyNotification(body, req.headers, secret);
      } catch (err) {
        refused.push(String(err));
        res.writeHead(400).end();
        return;
      }
      const id = String(req.headers['webhook-id']);
      if (!seen.has(id)) {
        seen.add(id);
        granted.push(event);
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => game.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => game.close(() => resolve())));
  const gameUrl = `http://127.0.0.1:${(game.address() as AddressInfo).port}/coinshop`;

  const app = await buildTestApp(t, { env: { GAME_WEBHOOK_URL: gameUrl, GAME_WEBHOOK_SECRET: secret } });
  await app.ready();
  const { user_id } = await customerWithCard(app);
  await buy(app, user_id, 'package_2');
  const deadline = Date.now() + 10_000;
  while (granted.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  t.same(refused, []);
  t.match(granted, [{ type: 'purchase.succeeded', data: { user_id, coins: 300, balance: 300, sequence: 1 } }]);

  // A forged delivery (wrong secret) is refused by the helper.
  const forged = await fetch(gameUrl, {
    method: 'POST',
    headers: { 'webhook-id': 'msg_forged', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,AAAA' },
    body: '{"type":"purchase.succeeded","timestamp":"2024-01-01T00:00:00.000Z","data":{}}',
  });
  t.equal(forged.status, 400);
  t.equal(refused.length, 1);
  t.equal(granted.length, 1, 'nothing granted for it');
});
