import t, { type Test } from 'tap';
import Stripe from 'stripe';
import { TEST_CARDS } from '../src/gateway/test-cards.js';
import { startFakeStripe, type FakeStripe, type FakeStripeOptions } from './support/fake-stripe.js';

async function setup(
  tt: Test,
  options: FakeStripeOptions & { maxNetworkRetries?: number; apiKey?: string } = {},
): Promise<{ fake: FakeStripe; stripe: Stripe }> {
  const fake = await startFakeStripe(options);
  tt.teardown(() => fake.close());
  const stripe = new Stripe(options.apiKey ?? 'sk_test_x', {
    host: '127.0.0.1',
    port: fake.port,
    protocol: 'http',
    maxNetworkRetries: options.maxNetworkRetries ?? 0,
    telemetry: false,
  });
  return { fake, stripe };
}

/** The error a promise rejects with; fails loudly if it resolves. */
async function failure(promise: Promise<unknown>): Promise<Stripe.errors.StripeError> {
  let value: unknown;
  try {
    value = await promise;
  } catch (err) {
    if (err instanceof Stripe.errors.StripeError) return err;
    throw err;
  }
  throw new Error(`expected a Stripe error, got ${JSON.stringify(value)}`);
}

const CHARGE = {
  amount: 1000,
  currency: 'usd',
  confirm: true,
  automatic_payment_methods: { enabled: true, allow_redirects: 'never' as const },
};

t.test('customers: create, retrieve, update', async (t) => {
  const { fake, stripe } = await setup(t);
  const created = await stripe.customers.create(
    { email: 'ada@example.com', name: 'Ada', metadata: { user_id: 'u_1' } },
    { idempotencyKey: 'cust-1' },
  );
  t.match(created.id, /^cus_[A-Za-z0-9]+$/);
  t.equal(created.object, 'customer');
  t.equal(created.email, 'ada@example.com');
  t.equal(created.name, 'Ada');
  t.same(created.metadata, { user_id: 'u_1' });
  t.equal(created.invoice_settings.default_payment_method, null);
  t.equal(fake.customers.get(created.id)?.email, 'ada@example.com');
  t.match(created.lastResponse.requestId, /^req_/);

  const request = fake.requests.at(-1);
  t.same(request, {
    method: 'POST',
    path: '/v1/customers',
    idempotencyKey: 'cust-1',
    body: { email: 'ada@example.com', name: 'Ada', metadata: { user_id: 'u_1' } },
  });

  const pm = fake.createPaymentMethod();
  await stripe.paymentMethods.attach(pm, { customer: created.id });
  const updated = await stripe.customers.update(created.id, {
    invoice_settings: { default_payment_method: pm },
    metadata: { plan: 'gold' },
  });
  t.equal(updated.id, created.id);
  t.equal(updated.invoice_settings.default_payment_method, pm);
  t.same(updated.metadata, { user_id: 'u_1', plan: 'gold' }, 'metadata is merged, as Stripe does');
  t.same(fake.requests.at(-1)?.body, {
    invoice_settings: { default_payment_method: pm },
    metadata: { plan: 'gold' },
  });

  const fetched = await stripe.customers.retrieve(created.id);
  t.equal(fetched.id, created.id);
  t.notOk(fetched.deleted);
  if (!fetched.deleted) t.equal(fetched.invoice_settings.default_payment_method, pm);

  const missing = await failure(stripe.customers.retrieve('cus_nope'));
  t.type(missing, Stripe.errors.StripeInvalidRequestError);
  t.match(missing, { statusCode: 404, code: 'resource_missing', message: "No such customer: 'cus_nope'" });

  const other = fake.createPaymentMethod();
  const notAttached = await failure(
    stripe.customers.update(created.id, { invoice_settings: { default_payment_method: other } }),
  );
  t.type(notAttached, Stripe.errors.StripeInvalidRequestError);
  t.equal(notAttached.param, 'invoice_settings[default_payment_method]');
  t.equal(fake.customers.get(created.id)?.invoice_settings.default_payment_method, pm, 'failed update changes nothing');

  const badEmail = await failure(stripe.customers.create({ email: 'not-an-email' }));
  t.match(badEmail, { statusCode: 400, code: 'email_invalid', param: 'email' });
});

t.test('payment methods: attach', async (t) => {
  const { fake, stripe } = await setup(t);
  const customer = await stripe.customers.create({ email: 'bo@example.com' });
  const pm = fake.createPaymentMethod();
  t.match(pm, /^pm_/);

  const attached = await stripe.paymentMethods.attach(pm, { customer: customer.id });
  t.equal(attached.id, pm);
  t.equal(attached.object, 'payment_method');
  t.equal(attached.type, 'card');
  t.equal(attached.customer, customer.id);
  t.equal(attached.card?.last4, '4242');
  t.equal(fake.paymentMethods.get(pm)?.customer, customer.id);

  const unknown = await failure(stripe.paymentMethods.attach('pm_x', { customer: customer.id }));
  t.type(unknown, Stripe.errors.StripeInvalidRequestError);
  t.match(unknown, {
    statusCode: 404,
    code: 'resource_missing',
    param: 'payment_method',
    message: "No such PaymentMethod: 'pm_x'",
  });

  const noCustomer = await failure(stripe.paymentMethods.attach(fake.createPaymentMethod(), { customer: 'cus_nope' }));
  t.type(noCustomer, Stripe.errors.StripeInvalidRequestError);
  t.match(noCustomer, { statusCode: 404, code: 'resource_missing', param: 'customer' });

  const elsewhere = await stripe.customers.create({ email: 'cy@example.com' });
  const taken = await failure(stripe.paymentMethods.attach(pm, { customer: elsewhere.id }));
  t.type(taken, Stripe.errors.StripeInvalidRequestError);
  t.equal(fake.paymentMethods.get(pm)?.customer, customer.id, 'still attached to the first customer');

  const fromToken = await stripe.paymentMethods.attach('pm_card_mastercard', { customer: customer.id });
  t.not(fromToken.id, 'pm_card_mastercard', 'attaching a test token makes a new PaymentMethod');
  t.equal(fromToken.card?.brand, 'mastercard');
  t.equal(fromToken.customer, customer.id);
});

t.test('a PaymentIntent on a good card succeeds', async (t) => {
  const { fake, stripe } = await setup(t);
  const customer = await stripe.customers.create({ email: 'di@example.com' });
  const pm = fake.createPaymentMethod();
  await stripe.paymentMethods.attach(pm, { customer: customer.id });

  const intent = await stripe.paymentIntents.create({
    ...CHARGE,
    amount: 2500,
    customer: customer.id,
    payment_method: pm,
    off_session: true,
    description: 'Popular Pack',
    metadata: { transaction_id: 'tx_1' },
  });
  t.match(intent.id, /^pi_/);
  t.equal(intent.object, 'payment_intent');
  t.equal(intent.status, 'succeeded');
  t.equal(intent.amount, 2500);
  t.equal(intent.amount_received, 2500);
  t.equal(intent.currency, 'usd');
  t.equal(intent.customer, customer.id);
  t.equal(intent.payment_method, pm);
  t.equal(intent.description, 'Popular Pack');
  t.same(intent.metadata, { transaction_id: 'tx_1' });
  t.match(intent.latest_charge, /^ch_/);
  t.equal(intent.last_payment_error, null);
  t.ok(intent.client_secret?.startsWith(`${intent.id}_secret_`));
  t.equal(fake.paymentIntents.get(intent.id)?.status, 'succeeded');
  t.same(fake.requests.at(-1)?.body, {
    amount: '2500',
    currency: 'usd',
    confirm: 'true',
    automatic_payment_methods: { enabled: 'true', allow_redirects: 'never' },
    customer: customer.id,
    payment_method: pm,
    off_session: 'true',
    description: 'Popular Pack',
    metadata: { transaction_id: 'tx_1' },
  });

  const fetched = await stripe.paymentIntents.retrieve(intent.id, { expand: ['latest_charge'] });
  t.equal(fetched.id, intent.id);
  t.equal(fetched.status, 'succeeded');
  t.same(fake.requests.at(-1), {
    method: 'GET',
    path: `/v1/payment_intents/${intent.id}`,
    idempotencyKey: undefined,
    body: { expand: ['latest_charge'] },
  });

  const missing = await failure(stripe.paymentIntents.retrieve('pi_nope'));
  t.type(missing, Stripe.errors.StripeInvalidRequestError);
  t.match(missing, { statusCode: 404, code: 'resource_missing', message: "No such payment_intent: 'pi_nope'" });

  const country = await stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_gb' });
  t.equal(country.status, 'succeeded', 'country test cards succeed');

  const unconfirmed = await stripe.paymentIntents.create({ amount: 1000, currency: 'usd', payment_method: 'pm_card_visa' });
  t.equal(unconfirmed.status, 'requires_confirmation');
  t.equal(unconfirmed.latest_charge, null);

  const noCustomer = await failure(
    stripe.paymentIntents.create({ ...CHARGE, customer: 'cus_nope', payment_method: 'pm_card_visa' }),
  );
  t.type(noCustomer, Stripe.errors.StripeInvalidRequestError);
  t.match(noCustomer, { statusCode: 400, code: 'resource_missing', param: 'customer' });
  t.equal(fake.paymentIntents.size, 3, 'rejected requests create no PaymentIntent');
});

t.test('every decline token raises a StripeCardError carrying the PaymentIntent', async (t) => {
  const { fake, stripe } = await setup(t);
  const declines = Object.entries(TEST_CARDS).filter(([, b]) => b.outcome === 'decline');
  t.ok(declines.length >= 10);
  for (const [token, behaviour] of declines) {
    if (behaviour.outcome !== 'decline') continue;
    const err = await failure(stripe.paymentIntents.create({ ...CHARGE, payment_method: token }));
    t.type(err, Stripe.errors.StripeCardError, token);
    t.equal(err.statusCode, 402, token);
    t.equal(err.code, behaviour.code, `${token} code`);
    t.equal(err.decline_code, behaviour.declineCode, `${token} decline_code`);
    t.ok(err.message, `${token} message`);
    const id = err.payment_intent?.id;
    t.match(id, /^pi_/, `${token} payment_intent`);
    t.equal(err.payment_intent?.status, 'requires_payment_method', token);
    const stored = id === undefined ? undefined : fake.paymentIntents.get(id);
    t.equal(stored?.status, 'requires_payment_method', `${token} stored`);
    t.equal(stored?.last_payment_error?.code, behaviour.code);
    t.equal(stored?.last_payment_error?.decline_code, behaviour.declineCode);
    t.equal(stored?.last_payment_error?.type, 'card_error');
  }
  const insufficient = await failure(
    stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_visa_chargeDeclinedInsufficientFunds' }),
  );
  t.equal(insufficient.message, 'Your card has insufficient funds.');
  const generic = await failure(stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_chargeDeclined' }));
  t.equal(generic.message, 'Your card was declined.');
  t.equal(fake.paymentIntents.size, declines.length + 2);

  const saved = fake.createPaymentMethod('pm_card_chargeCustomerFail');
  const savedDecline = await failure(stripe.paymentIntents.create({ ...CHARGE, payment_method: saved }));
  t.type(savedDecline, Stripe.errors.StripeCardError);
  t.equal(savedDecline.decline_code, 'generic_decline');
});

t.test("the seed's alias is not a Stripe token", async (t) => {
  const { fake, stripe } = await setup(t);
  const err = await failure(stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_insufficient_funds' }));
  t.type(err, Stripe.errors.StripeInvalidRequestError);
  t.match(err, {
    statusCode: 400,
    code: 'resource_missing',
    param: 'payment_method',
    message: "No such PaymentMethod: 'pm_card_insufficient_funds'",
  });
  const made = await failure(stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_bogus' }));
  t.match(made, { statusCode: 400, code: 'resource_missing', param: 'payment_method' });
  t.equal(fake.paymentIntents.size, 0);
});

t.test('3D Secure cards: requires_action on session, authentication_required off session', async (t) => {
  const { fake, stripe } = await setup(t);
  for (const token of ['pm_card_threeDSecure2Required', 'pm_card_authenticationRequired']) {
    const onSession = await stripe.paymentIntents.create({ ...CHARGE, payment_method: token });
    t.equal(onSession.status, 'requires_action', token);
    t.equal(onSession.next_action?.type, 'use_stripe_sdk', token);
    t.ok(onSession.client_secret, token);
    t.equal(fake.paymentIntents.get(onSession.id)?.status, 'requires_action');

    const offSession = await failure(stripe.paymentIntents.create({ ...CHARGE, payment_method: token, off_session: true }));
    t.type(offSession, Stripe.errors.StripeCardError, token);
    t.equal(offSession.code, 'authentication_required', token);
    t.equal(offSession.decline_code, 'authentication_required', token);
    t.equal(offSession.payment_intent?.status, 'requires_payment_method', token);
    t.equal(offSession.payment_intent?.last_payment_error?.code, 'authentication_required', token);
  }
});

t.test('automatic payment methods need a return_url unless redirects are disallowed', async (t) => {
  const { fake, stripe } = await setup(t);
  const err = await failure(
    stripe.paymentIntents.create({
      amount: 1000,
      currency: 'usd',
      payment_method: 'pm_card_visa',
      confirm: true,
      automatic_payment_methods: { enabled: true },
    }),
  );
  t.type(err, Stripe.errors.StripeInvalidRequestError);
  t.equal(err.param, 'return_url');
  const ok = await stripe.paymentIntents.create({
    amount: 1000,
    currency: 'usd',
    payment_method: 'pm_card_visa',
    confirm: true,
    automatic_payment_methods: { enabled: true },
    return_url: 'https://example.com/done',
  });
  t.equal(ok.status, 'succeeded');
  const small = await failure(stripe.paymentIntents.create({ ...CHARGE, amount: 10, payment_method: 'pm_card_visa' }));
  t.match(small, { statusCode: 400, code: 'amount_too_small', param: 'amount' });
  t.equal(fake.paymentIntents.size, 1);
});

t.test('idempotency: replay, parameter mismatch', async (t) => {
  const { fake, stripe } = await setup(t);
  const params = { ...CHARGE, payment_method: 'pm_card_visa', metadata: { tx: '1' } };
  const first = await stripe.paymentIntents.create(params, { idempotencyKey: 'tx-1' });
  const second = await stripe.paymentIntents.create(params, { idempotencyKey: 'tx-1' });
  t.equal(second.id, first.id);
  t.equal(second.status, 'succeeded');
  t.equal(first.lastResponse.headers['idempotent-replayed'], undefined);
  t.equal(second.lastResponse.headers['idempotent-replayed'], 'true');
  t.equal(second.lastResponse.headers['idempotency-key'], 'tx-1');
  t.equal(fake.paymentIntents.size, 1);

  // Errors are replayed too: a decline stays the same decline on the same PaymentIntent.
  const declineParams = { ...CHARGE, payment_method: 'pm_card_chargeDeclined' };
  const d1 = await failure(stripe.paymentIntents.create(declineParams, { idempotencyKey: 'tx-2' }));
  const d2 = await failure(stripe.paymentIntents.create(declineParams, { idempotencyKey: 'tx-2' }));
  t.type(d2, Stripe.errors.StripeCardError);
  t.ok(d1.payment_intent?.id);
  t.equal(d2.payment_intent?.id, d1.payment_intent?.id);
  t.equal(d2.headers?.['idempotent-replayed'], 'true');
  t.equal(fake.paymentIntents.size, 2);

  const mismatch = await failure(
    stripe.paymentIntents.create({ ...params, amount: 5000 }, { idempotencyKey: 'tx-1' }),
  );
  t.type(mismatch, Stripe.errors.StripeIdempotencyError);
  t.equal(mismatch.statusCode, 400);
  t.match(mismatch.message, /^Keys for idempotent requests can only be used with the same parameters/);
  t.equal(fake.paymentIntents.size, 2);

  // Keys are scoped to the API key.
  const otherAccount = new Stripe('sk_test_other', {
    host: '127.0.0.1',
    port: fake.port,
    protocol: 'http',
    maxNetworkRetries: 0,
    telemetry: false,
  });
  const third = await otherAccount.paymentIntents.create({ ...params, amount: 5000 }, { idempotencyKey: 'tx-1' });
  t.not(third.id, first.id);
  t.equal(fake.paymentIntents.size, 3);
});

t.test('idempotency: a second request while the first is in flight gets 409', async (t) => {
  const { fake, stripe } = await setup(t, { latencyMs: 150 });
  const params = { ...CHARGE, payment_method: 'pm_card_visa' };
  const results = await Promise.allSettled([
    stripe.paymentIntents.create(params, { idempotencyKey: 'race' }),
    stripe.paymentIntents.create(params, { idempotencyKey: 'race' }),
  ]);
  const fulfilled = results.filter((r) => r.status === 'fulfilled');
  const rejected = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  t.equal(fulfilled.length, 1);
  t.equal(rejected.length, 1);
  const conflict = rejected[0];
  t.type(conflict, Stripe.errors.StripeError);
  if (conflict instanceof Stripe.errors.StripeError) {
    t.equal(conflict.statusCode, 409);
    t.equal(conflict.code, 'idempotency_key_in_use');
    t.equal(conflict.rawType, 'invalid_request_error');
  }
  t.equal(fake.paymentIntents.size, 1);

  fake.setLatency(0);
  const replay = await stripe.paymentIntents.create(params, { idempotencyKey: 'race' });
  t.equal(replay.lastResponse.headers['idempotent-replayed'], 'true');
  t.ok(fake.paymentIntents.has(replay.id));
  t.equal(fake.paymentIntents.size, 1);
});

t.test('failNext: provider errors, and the SDK retry that then succeeds', async (t) => {
  const { fake, stripe } = await setup(t, { maxNetworkRetries: 1 });
  fake.failNext(1);
  const intent = await stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_visa' });
  t.equal(intent.status, 'succeeded');
  t.equal(fake.paymentIntents.size, 1);
  const attempts = fake.requests.filter((r) => r.path === '/v1/payment_intents');
  t.equal(attempts.length, 2, 'one failure, one retry');
  t.match(attempts[0]?.idempotencyKey, /^stripe-node-retry-/);
  t.equal(attempts[1]?.idempotencyKey, attempts[0]?.idempotencyKey, 'the retry reuses the key');

  const noRetry = new Stripe('sk_test_x', {
    host: '127.0.0.1',
    port: fake.port,
    protocol: 'http',
    maxNetworkRetries: 0,
    telemetry: false,
  });
  fake.failNext(2, 503);
  const first = await failure(noRetry.customers.create({ email: 'ed@example.com' }));
  t.type(first, Stripe.errors.StripeAPIError);
  t.equal(first.statusCode, 503);
  t.equal(first.rawType, 'api_error');
  const second = await failure(noRetry.customers.retrieve('cus_whatever'));
  t.equal(second.statusCode, 503, 'failNext counts any request');
  t.equal(fake.customers.size, 0);
  const after = await noRetry.customers.create({ email: 'ed@example.com' });
  t.match(after.id, /^cus_/);
});

t.test('authentication', async (t) => {
  const { fake, stripe } = await setup(t, { apiKey: 'sk_live_notallowed' });
  const live = await failure(stripe.customers.create({ email: 'fi@example.com' }));
  t.type(live, Stripe.errors.StripeAuthenticationError);
  t.equal(live.statusCode, 401);
  t.match(live.message, /^Invalid API Key provided: sk_live_/);

  const restricted = new Stripe('rk_test_fine', { host: '127.0.0.1', port: fake.port, protocol: 'http', telemetry: false });
  const ok = await restricted.customers.create({ email: 'fi@example.com' });
  t.match(ok.id, /^cus_/);

  const anonymous = await fetch(`${fake.url}/v1/customers`, { method: 'POST' });
  t.equal(anonymous.status, 401);
  t.match(anonymous.headers.get('request-id'), /^req_/);
  const body = (await anonymous.json()) as { error: { type: string; message: string } };
  t.equal(body.error.type, 'authentication_error');
  t.match(body.error.message, /You did not provide an API key/);
  t.equal(fake.customers.size, 1);
});

t.test('wire format: nested form bodies, unknown routes and parameters', async (t) => {
  const { fake } = await setup(t);
  const auth = { authorization: 'Bearer sk_test_x', 'content-type': 'application/x-www-form-urlencoded' };

  const form = 'email=gus%40example.com&metadata[user_id]=u%5B7%5D&metadata[note]=a%26b&expand[0]=x&expand[1]=y';
  const created = await fetch(`${fake.url}/v1/customers`, { method: 'POST', headers: auth, body: form });
  t.equal(created.status, 200);
  t.equal(created.headers.get('content-type'), 'application/json');
  t.same(fake.requests.at(-1)?.body, {
    email: 'gus@example.com',
    metadata: { user_id: 'u[7]', note: 'a&b' },
    expand: ['x', 'y'],
  });

  const unknownParam = await fetch(`${fake.url}/v1/customers`, { method: 'POST', headers: auth, body: 'emial=x' });
  t.equal(unknownParam.status, 400);
  t.same(await unknownParam.json(), {
    error: {
      type: 'invalid_request_error',
      message: 'Received unknown parameter: emial',
      code: 'parameter_unknown',
      param: 'emial',
    },
  });

  const route = await fetch(`${fake.url}/v1/charges`, { method: 'POST', headers: auth, body: '' });
  t.equal(route.status, 404);
  const routeBody = (await route.json()) as { error: { type: string; message: string } };
  t.equal(routeBody.error.type, 'invalid_request_error');
  t.match(routeBody.error.message, /^Unrecognized request URL \(POST: \/v1\/charges\)/);

  const missing = await fetch(`${fake.url}/v1/payment_intents`, { method: 'POST', headers: auth, body: 'currency=usd' });
  t.equal(missing.status, 400);
  t.match(await missing.json(), { error: { code: 'parameter_missing', param: 'amount' } });
  t.equal(fake.customers.size, 1);
  t.equal(fake.paymentIntents.size, 0);
});
