import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import { attachCard, buy, createCustomer, expectProblem, get, json } from './helper.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * The seed's Postman collection as a test: packages, create customer, get customer, attach the test
 * card, buy all three packs, balance 1100, history of three, invalid package, unknown user.
 * Shared by the simulated and the Stripe gateway suites; returns the customer's user_id.
 */
export async function seedFlow(t: Test, app: FastifyInstance, customerIdPattern: RegExp): Promise<string> {
  const packages = await get(app, '/stripe/packages');
  t.equal(packages.statusCode, 200);
  t.same(json(packages), {
    packages: [
      { package_id: 'package_1', name: 'Starter Pack', price_cents: 1000, price_dollars: 10, currency_amount: 100, currency: 'usd' },
      { package_id: 'package_2', name: 'Popular Pack', price_cents: 2500, price_dollars: 25, currency_amount: 300, currency: 'usd' },
      { package_id: 'package_3', name: 'Premium Pack', price_cents: 5000, price_dollars: 50, currency_amount: 700, currency: 'usd' },
    ],
  });

  const customer = await createCustomer(app, { email: 'customer@example.com', name: 'Customer Name' });
  t.match(customer, { status: 'success', message: 'Customer created successfully' });
  t.match(customer.user_id, UUID);
  t.match(customer.stripe_customer_id, customerIdPattern);
  const userId = customer.user_id;

  const info = await get(app, `/stripe/customer/${userId}`);
  t.equal(info.statusCode, 200);
  const infoBody = json(info);
  t.same(infoBody, {
    user_id: userId,
    email: 'customer@example.com',
    name: 'Customer Name',
    currency_balance: 0,
    stripe_customer_id: customer.stripe_customer_id,
    created_at: infoBody['created_at'],
  });
  t.ok(!Number.isNaN(Date.parse(String(infoBody['created_at']))), 'created_at is a timestamp');

  const attached = await attachCard(app, userId, 'pm_card_visa');
  t.equal(attached.statusCode, 200);
  t.same(json(attached), {
    status: 'success',
    message: 'Test payment method configured for customer',
    payment_method_id: 'pm_card_visa',
  });

  const bought: { transaction_id: string; coins: number; balance: number }[] = [];
  for (const [packageId, coins, balance] of [
    ['package_1', 100, 100],
    ['package_2', 300, 400],
    ['package_3', 700, 1100],
  ] as const) {
    const purchase = await buy(app, userId, packageId);
    t.equal(purchase.statusCode, 200, `${packageId} bought`);
    const body = json(purchase);
    t.same(body, {
      status: 'success',
      transaction_id: body['transaction_id'],
      currency_purchased: coins,
      new_balance: balance,
      message: 'Currency purchase successful',
    });
    t.match(body['transaction_id'], UUID);
    bought.push({ transaction_id: String(body['transaction_id']), coins, balance });
  }

  const updated = await get(app, `/stripe/customer/${userId}`);
  t.equal(json(updated)['currency_balance'], 1100, 'balance after the three packs');

  const history = await get(app, `/stripe/transactions/${userId}`);
  t.equal(history.statusCode, 200);
  const historyBody = json(history) as { user_id: string; transactions: Record<string, unknown>[] };
  t.equal(historyBody.user_id, userId);
  t.same(
    historyBody.transactions.map((tx) => [
      tx['transaction_id'],
      tx['package_name'],
      tx['amount_paid'],
      tx['currency_purchased'],
      tx['status'],
    ]),
    [
      [bought[2]?.transaction_id, 'Premium Pack', 5000, 700, 'completed'],
      [bought[1]?.transaction_id, 'Popular Pack', 2500, 300, 'completed'],
      [bought[0]?.transaction_id, 'Starter Pack', 1000, 100, 'completed'],
    ],
    'three purchases, newest first',
  );

  expectProblem(t, await buy(app, userId, 'invalid_package'), 400, 'invalid_package', 'Invalid package ID');
  expectProblem(t, await get(app, '/stripe/customer/invalid_user_id'), 404, 'customer_not_found', 'Customer not found');
  expectProblem(t, await get(app, '/stripe/transactions/invalid_user_id'), 404, 'customer_not_found', 'Customer not found');
  t.equal(json(await get(app, `/stripe/customer/${userId}`))['currency_balance'], 1100, 'refused requests changed nothing');
  return userId;
}
