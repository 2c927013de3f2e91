import t, { type Test } from 'tap';
import Stripe from 'stripe';
import { TEST_CARDS } from '../src/gateway/test-cards.js';
import {
  startFakeStripe,
  webhookRequest,
  type FakeStripe,
  type FakeStripeOptions,
  type StripeEventObject,
  type StripeEventType,
} from './support/fake-stripe.js';

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

/** The events of one type, narrowed so `data.object` has that event's object type. */
function eventsOf<T extends StripeEventType>(fake: FakeStripe, type: T): Extract<StripeEventObject, { type: T }>[] {
  return fake.events.filter((e): e is Extract<StripeEventObject, { type: T }> => e.type === type);
}

/** The error a synchronous call throws; fails loudly if it returns. */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    if (err instanceof Error) return err;
    throw err;
  }
  throw new Error('expected an exception');
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
  const notAttached = await failure(stripe.customers.update(created.id, { invoice_settings: { default_payment_method: other } }));
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

  const noCustomer = await failure(stripe.paymentIntents.create({ ...CHARGE, customer: 'cus_nope', payment_method: 'pm_card_visa' }));
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

  const mismatch = await failure(stripe.paymentIntents.create({ ...params, amount: 5000 }, { idempotencyKey: 'tx-1' }));
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

t.test('charges: every succeeded PaymentIntent has one, retrievable through the SDK', async (t) => {
  const { fake, stripe } = await setup(t);
  const customer = await stripe.customers.create({ email: 'hu@example.com' });
  const intent = await stripe.paymentIntents.create({
    ...CHARGE,
    amount: 4200,
    customer: customer.id,
    payment_method: 'pm_card_visa',
    description: 'Big Pack',
    metadata: { transaction_id: 'tx_9' },
  });
  t.equal(intent.status, 'succeeded');
  const chargeId = typeof intent.latest_charge === 'string' ? intent.latest_charge : '';
  t.match(chargeId, /^ch_/);

  const charge = await stripe.charges.retrieve(chargeId);
  t.equal(charge.id, chargeId);
  t.equal(charge.object, 'charge');
  t.equal(charge.amount, 4200);
  t.equal(charge.amount_refunded, 0);
  t.equal(charge.refunded, false);
  t.equal(charge.disputed, false);
  t.equal(charge.status, 'succeeded');
  t.equal(charge.currency, 'usd');
  t.equal(charge.payment_intent, intent.id);
  t.equal(charge.customer, customer.id);
  t.same(charge.metadata, { transaction_id: 'tx_9' });
  t.same(fake.requests.at(-1), { method: 'GET', path: `/v1/charges/${chargeId}`, idempotencyKey: undefined, body: {} });

  const stored = fake.charges.get(chargeId);
  t.equal(stored?.payment_intent, intent.id);
  const pi = fake.paymentIntents.get(intent.id);
  t.not(stored?.metadata, pi?.metadata, 'metadata is copied, not shared');

  // No charge is stored for a decline, an unconfirmed PaymentIntent, 3-D Secure or manual capture.
  await failure(stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_chargeDeclined' }));
  await stripe.paymentIntents.create({ amount: 1000, currency: 'usd', payment_method: 'pm_card_visa' });
  await stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_threeDSecure2Required' });
  const manual = await stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_visa', capture_method: 'manual' });
  t.equal(manual.status, 'requires_capture');
  t.equal(manual.amount_capturable, 1000);
  t.equal(fake.charges.size, 1);

  const missing = await failure(stripe.charges.retrieve('ch_nope'));
  t.type(missing, Stripe.errors.StripeInvalidRequestError);
  t.match(missing, { statusCode: 404, code: 'resource_missing', message: "No such charge: 'ch_nope'" });
});

t.test('refunds: partial, the remainder, too much, already refunded', async (t) => {
  const { fake, stripe } = await setup(t);
  const intent = await stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_visa' });
  const chargeId = typeof intent.latest_charge === 'string' ? intent.latest_charge : '';

  const params = { payment_intent: intent.id, amount: 300, reason: 'requested_by_customer' as const, metadata: { r: '1' } };
  const first = await stripe.refunds.create(params, { idempotencyKey: 'refund-1' });
  t.match(first.id, /^re_/);
  t.equal(first.object, 'refund');
  t.equal(first.amount, 300);
  t.equal(first.charge, chargeId);
  t.equal(first.payment_intent, intent.id);
  t.equal(first.status, 'succeeded');
  t.equal(first.currency, 'usd');
  t.equal(first.reason, 'requested_by_customer');
  t.same(first.metadata, { r: '1' });
  t.match(fake.charges.get(chargeId), { amount_refunded: 300, refunded: false });

  const replay = await stripe.refunds.create(params, { idempotencyKey: 'refund-1' });
  t.equal(replay.id, first.id);
  t.equal(replay.lastResponse.headers['idempotent-replayed'], 'true');
  t.equal(fake.refunds.size, 1, 'a replay refunds nothing more');
  t.equal(fake.charges.get(chargeId)?.amount_refunded, 300);

  const tooLarge = await failure(stripe.refunds.create({ payment_intent: intent.id, amount: 800 }));
  t.type(tooLarge, Stripe.errors.StripeInvalidRequestError);
  t.match(tooLarge, {
    statusCode: 400,
    code: 'amount_too_large',
    param: 'amount',
    message: 'Refund amount ($8.00) is greater than unrefunded amount on charge ($7.00)',
  });

  const rest = await stripe.refunds.create({ charge: chargeId });
  t.equal(rest.amount, 700, 'the default amount is what remains');
  t.equal(rest.payment_intent, intent.id);
  t.equal(rest.reason, null);
  const charge = await stripe.charges.retrieve(chargeId);
  t.equal(charge.amount_refunded, 1000);
  t.equal(charge.refunded, true);
  t.equal((await stripe.paymentIntents.retrieve(intent.id)).status, 'succeeded', 'the PaymentIntent stays succeeded');

  const again = await failure(stripe.refunds.create({ payment_intent: intent.id, amount: 1 }));
  t.type(again, Stripe.errors.StripeInvalidRequestError);
  t.match(again, { statusCode: 400, code: 'charge_already_refunded' });

  const fetched = await stripe.refunds.retrieve(first.id);
  t.equal(fetched.amount, 300);
  t.equal(fetched.charge, chargeId);
  t.match(await failure(stripe.refunds.retrieve('re_nope')), { statusCode: 404, code: 'resource_missing' });

  // Each refund emits charge.refunded with the cumulative amount at that moment.
  const refunded = eventsOf(fake, 'charge.refunded');
  t.same(
    refunded.map((e) => [e.data.object.id, e.data.object.amount_refunded, e.data.object.refunded]),
    [
      [chargeId, 300, false],
      [chargeId, 1000, true],
    ],
  );
  t.equal(fake.refunds.size, 2);
});

t.test('refunds: what cannot be refunded, and idempotent errors', async (t) => {
  const { fake, stripe } = await setup(t);
  const unknownIntent = await failure(stripe.refunds.create({ payment_intent: 'pi_nope' }));
  t.type(unknownIntent, Stripe.errors.StripeInvalidRequestError);
  t.match(unknownIntent, {
    statusCode: 400,
    code: 'resource_missing',
    param: 'payment_intent',
    message: "No such payment_intent: 'pi_nope'",
  });
  const unknownCharge = await failure(stripe.refunds.create({ charge: 'ch_nope' }));
  t.match(unknownCharge, { statusCode: 400, code: 'resource_missing', param: 'charge', message: "No such charge: 'ch_nope'" });

  const declined = await failure(stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_chargeDeclined' }));
  const declinedId = declined.payment_intent?.id ?? '';
  const threeDs = await stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_threeDSecure2Required' });
  const unconfirmed = await stripe.paymentIntents.create({ amount: 1000, currency: 'usd' });
  for (const id of [declinedId, threeDs.id, unconfirmed.id]) {
    const err = await failure(stripe.refunds.create({ payment_intent: id }));
    t.type(err, Stripe.errors.StripeInvalidRequestError, id);
    t.equal(err.statusCode, 400, id);
    t.equal(err.rawType, 'invalid_request_error', id);
    t.equal(err.param, 'payment_intent', id);
    t.match(err.message, /does not have a successful charge to refund/, id);
  }

  const intent = await stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_visa' });
  const chargeId = typeof intent.latest_charge === 'string' ? intent.latest_charge : '';
  const neither = await failure(stripe.refunds.create({ amount: 100 }));
  t.match(neither, { statusCode: 400, code: 'parameter_missing' });
  const both = await failure(stripe.refunds.create({ payment_intent: intent.id, charge: chargeId }));
  t.match(both, { statusCode: 400, param: 'charge' });
  const zero = await failure(stripe.refunds.create({ payment_intent: intent.id, amount: 0 }));
  t.match(zero, { statusCode: 400, param: 'amount' });
  const reason = await failure(
    stripe.refunds.create({ payment_intent: intent.id, reason: 'changed_mind' as Stripe.RefundCreateParams.Reason }),
  );
  t.match(reason, { statusCode: 400, param: 'reason' });
  const unknown = await failure(
    stripe.refunds.create({ payment_intent: intent.id, refund_everything: 'yes' } as Stripe.RefundCreateParams),
  );
  t.match(unknown, { statusCode: 400, code: 'parameter_unknown', param: 'refund_everything' });

  // A business-rule refusal is kept under its idempotency key; a parameter error is not.
  const tooMuch = { payment_intent: intent.id, amount: 5000 };
  const e1 = await failure(stripe.refunds.create(tooMuch, { idempotencyKey: 'r-big' }));
  const e2 = await failure(stripe.refunds.create(tooMuch, { idempotencyKey: 'r-big' }));
  t.equal(e1.code, 'amount_too_large');
  t.equal(e2.code, 'amount_too_large');
  t.equal(e2.headers?.['idempotent-replayed'], 'true');
  const p1 = await failure(stripe.refunds.create({ amount: 100 }, { idempotencyKey: 'r-bad' }));
  const p2 = await failure(stripe.refunds.create({ amount: 100 }, { idempotencyKey: 'r-bad' }));
  t.equal(p1.code, 'parameter_missing');
  t.equal(p2.headers?.['idempotent-replayed'], undefined);

  t.equal(fake.refunds.size, 0);
  t.equal(fake.charges.get(chargeId)?.amount_refunded, 0);
  t.equal(eventsOf(fake, 'charge.refunded').length, 0);
});

t.test('3-D Secure: authenticate succeeds or fails the PaymentIntent', async (t) => {
  const { fake, stripe } = await setup(t);
  const ok = await stripe.paymentIntents.create({
    ...CHARGE,
    payment_method: 'pm_card_threeDSecure2Required',
    metadata: { transaction_id: 'tx_3ds' },
  });
  t.equal(ok.status, 'requires_action');
  const returned = fake.authenticate(ok.id, 'succeed');
  t.equal(returned.status, 'succeeded');

  const after = await stripe.paymentIntents.retrieve(ok.id);
  t.equal(after.status, 'succeeded');
  t.equal(after.amount_received, 1000);
  t.equal(after.next_action, null);
  t.equal(after.last_payment_error, null);
  const chargeId = typeof after.latest_charge === 'string' ? after.latest_charge : '';
  t.match(chargeId, /^ch_/);
  const charge = await stripe.charges.retrieve(chargeId);
  t.equal(charge.payment_intent, ok.id);
  t.same(charge.metadata, { transaction_id: 'tx_3ds' });
  const refund = await stripe.refunds.create({ payment_intent: ok.id });
  t.equal(refund.amount, 1000, 'an authenticated payment can be refunded');

  const bad = await stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_threeDSecure2Required' });
  fake.authenticate(bad.id, 'fail');
  const failed = await stripe.paymentIntents.retrieve(bad.id);
  t.equal(failed.status, 'requires_payment_method');
  t.equal(failed.next_action, null);
  t.equal(failed.latest_charge, null);
  t.equal(failed.payment_method, null);
  t.equal(failed.last_payment_error?.type, 'card_error');
  t.equal(failed.last_payment_error?.code, 'payment_intent_authentication_failure');
  t.match(failed.last_payment_error?.message, /failed authentication/);

  // A saved PaymentMethod rides along in the error, as Stripe includes it.
  const saved = fake.createPaymentMethod('pm_card_authenticationRequired');
  const savedIntent = await stripe.paymentIntents.create({ ...CHARGE, payment_method: saved });
  t.equal(fake.authenticate(savedIntent.id, 'fail').last_payment_error?.payment_method?.id, saved);

  t.match(thrown(() => fake.authenticate(ok.id, 'succeed')).message, /is succeeded, not requires_action/);
  t.match(thrown(() => fake.authenticate(bad.id, 'fail')).message, /is requires_payment_method/);
  t.match(thrown(() => fake.authenticate('pi_nope', 'succeed')).message, /no PaymentIntent pi_nope/);
  t.equal(fake.charges.size, 1);

  t.same(
    fake.events.filter((e) => e.type.startsWith('payment_intent.')).map((e) => [e.type, e.data.object.id]),
    [
      ['payment_intent.requires_action', ok.id],
      ['payment_intent.succeeded', ok.id],
      ['payment_intent.requires_action', bad.id],
      ['payment_intent.payment_failed', bad.id],
      ['payment_intent.requires_action', savedIntent.id],
      ['payment_intent.payment_failed', savedIntent.id],
    ],
  );
  const [action] = eventsOf(fake, 'payment_intent.requires_action');
  t.equal(action?.data.object.status, 'requires_action', 'the snapshot keeps the state of its moment');
  t.equal(action?.data.object.next_action?.type, 'use_stripe_sdk');
  const [authFailed] = eventsOf(fake, 'payment_intent.payment_failed');
  t.equal(authFailed?.data.object.last_payment_error?.code, 'payment_intent_authentication_failure');
});

t.test('disputes: open, refusing refunds, closed won or lost', async (t) => {
  const { fake, stripe } = await setup(t);
  const intent = await stripe.paymentIntents.create({ ...CHARGE, amount: 2000, payment_method: 'pm_card_visa' });
  const chargeId = typeof intent.latest_charge === 'string' ? intent.latest_charge : '';
  await stripe.refunds.create({ payment_intent: intent.id, amount: 500 });

  const dispute = fake.dispute(intent.id);
  t.match(dispute, {
    object: 'dispute',
    amount: 2000,
    charge: chargeId,
    payment_intent: intent.id,
    currency: 'usd',
    status: 'needs_response',
    reason: 'fraudulent',
  });
  t.match(dispute.id, /^dp_/);
  t.equal(fake.disputes.get(dispute.id), dispute);
  t.equal((await stripe.charges.retrieve(chargeId)).disputed, true);
  const viaApi = await stripe.disputes.retrieve(dispute.id);
  t.equal(viaApi.status, 'needs_response');
  t.equal(viaApi.charge, chargeId);

  const refused = await failure(stripe.refunds.create({ payment_intent: intent.id }));
  t.type(refused, Stripe.errors.StripeInvalidRequestError);
  t.match(refused, { statusCode: 400, code: 'charge_disputed' });

  t.match(thrown(() => fake.dispute(intent.id)).message, /already disputed/);
  fake.closeDispute(dispute.id, 'lost');
  t.equal(fake.disputes.get(dispute.id)?.status, 'lost');
  t.match(await failure(stripe.refunds.create({ payment_intent: intent.id })), { code: 'charge_disputed' });
  t.match(thrown(() => fake.closeDispute(dispute.id, 'won')).message, /already lost/);
  t.match(thrown(() => fake.closeDispute('dp_nope', 'won')).message, /no dispute dp_nope/);

  const second = await stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_visa' });
  const won = fake.closeDispute(fake.dispute(second.id).id, 'won');
  t.equal(won.status, 'won');
  const afterWin = await stripe.refunds.create({ payment_intent: second.id });
  t.equal(afterWin.amount, 1000, 'a won dispute no longer blocks a refund');

  const declined = await failure(stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_chargeDeclined' }));
  t.match(thrown(() => fake.dispute(declined.payment_intent?.id ?? '')).message, /has no charge to dispute/);
  t.match(thrown(() => fake.dispute('pi_nope')).message, /no PaymentIntent pi_nope/);

  const created = eventsOf(fake, 'charge.dispute.created');
  const closed = eventsOf(fake, 'charge.dispute.closed');
  t.same(
    created.map((e) => [e.data.object.id, e.data.object.status]),
    [
      [dispute.id, 'needs_response'],
      [won.id, 'needs_response'],
    ],
  );
  t.same(
    closed.map((e) => [e.data.object.id, e.data.object.status]),
    [
      [dispute.id, 'lost'],
      [won.id, 'won'],
    ],
  );
  t.equal(fake.disputes.size, 2);
});

t.test('disputes: an inquiry moves no money and closes as warning_closed; the charge may meet another dispute', async (t) => {
  const { fake, stripe } = await setup(t);
  const intent = await stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_visa' });
  const inquiry = fake.dispute(intent.id, { inquiry: true });
  t.match(inquiry, { status: 'warning_needs_response', is_charge_refundable: true });
  t.equal((await stripe.disputes.retrieve(inquiry.id)).status, 'warning_needs_response');
  t.match(thrown(() => fake.dispute(intent.id)).message, /already disputed/, 'one open dispute at a time');
  t.match(thrown(() => fake.closeDispute(inquiry.id, 'lost')).message, /an inquiry cannot close as lost/);
  const partial = await stripe.refunds.create({ payment_intent: intent.id, amount: 100 });
  t.equal(partial.amount, 100, 'an inquiry does not block a refund');
  fake.closeDispute(inquiry.id, 'warning_closed');
  t.match(thrown(() => fake.closeDispute(inquiry.id, 'warning_closed')).message, /already warning_closed/);

  const chargeback = fake.dispute(intent.id);
  t.not(chargeback.id, inquiry.id);
  t.match(chargeback, { status: 'needs_response', is_charge_refundable: false, payment_intent: intent.id });
  t.match(thrown(() => fake.closeDispute(chargeback.id, 'warning_closed')).message, /a chargeback cannot close as warning_closed/);
  t.match(await failure(stripe.refunds.create({ payment_intent: intent.id })), { code: 'charge_disputed' });
  fake.closeDispute(chargeback.id, 'lost');
  t.same(
    [...eventsOf(fake, 'charge.dispute.created'), ...eventsOf(fake, 'charge.dispute.closed')].map((e) => [
      e.type,
      e.data.object.id,
      e.data.object.status,
    ]),
    [
      ['charge.dispute.created', inquiry.id, 'warning_needs_response'],
      ['charge.dispute.created', chargeback.id, 'needs_response'],
      ['charge.dispute.closed', inquiry.id, 'warning_closed'],
      ['charge.dispute.closed', chargeback.id, 'lost'],
    ],
  );
});

t.test('events: Stripe envelopes holding snapshots, emitted once per change', async (t) => {
  const { fake, stripe } = await setup(t);
  const params = { ...CHARGE, payment_method: 'pm_card_visa', metadata: { tx: 'e1' } };
  const intent = await stripe.paymentIntents.create(params, { idempotencyKey: 'ev-1' });
  await stripe.paymentIntents.create(params, { idempotencyKey: 'ev-1' });
  const declined = await failure(
    stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_visa_chargeDeclinedInsufficientFunds' }),
  );
  const offSession = await failure(
    stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_authenticationRequired', off_session: true }),
  );
  await stripe.customers.create({ email: 'no-events@example.com' });
  await stripe.paymentIntents.create({ amount: 1000, currency: 'usd', payment_method: 'pm_card_visa' });

  t.same(
    fake.events.map((e) => e.type),
    ['charge.succeeded', 'payment_intent.succeeded', 'payment_intent.payment_failed', 'payment_intent.payment_failed'],
    'a replay, a customer and an unconfirmed PaymentIntent emit nothing',
  );
  const [chargeEvent, succeeded] = fake.events;
  t.match(chargeEvent, {
    object: 'event',
    type: 'charge.succeeded',
    livemode: false,
    api_version: '2026-10-28.endive',
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    data: { object: { object: 'charge', payment_intent: intent.id, metadata: { tx: 'e1' } } },
  });
  t.match(chargeEvent?.id, /^evt_/);
  t.ok(Math.abs((chargeEvent?.created ?? 0) - Date.now() / 1000) < 5, 'created is in Unix seconds');
  t.match(succeeded, { type: 'payment_intent.succeeded', data: { object: { id: intent.id, status: 'succeeded' } } });
  t.equal(new Set(fake.events.map((e) => e.id)).size, fake.events.length, 'ids are unique');
  const failedEvents = eventsOf(fake, 'payment_intent.payment_failed');
  t.same(
    failedEvents.map((e) => [e.data.object.id, e.data.object.last_payment_error?.decline_code]),
    [
      [declined.payment_intent?.id, 'insufficient_funds'],
      [offSession.payment_intent?.id, 'authentication_required'],
    ],
  );

  // Snapshots are deep copies: neither later changes nor the live object reach them.
  const chargeId = typeof intent.latest_charge === 'string' ? intent.latest_charge : '';
  const [chargeSucceeded] = eventsOf(fake, 'charge.succeeded');
  t.not(chargeSucceeded?.data.object, fake.charges.get(chargeId));
  await stripe.refunds.create({ payment_intent: intent.id, amount: 100 });
  fake.dispute(intent.id);
  t.equal(fake.charges.get(chargeId)?.amount_refunded, 100);
  t.equal(chargeSucceeded?.data.object.amount_refunded, 0);
  t.equal(chargeSucceeded?.data.object.disputed, false);
  t.equal(eventsOf(fake, 'charge.refunded')[0]?.data.object.disputed, false);
  const [piFailed] = failedEvents;
  t.not(piFailed?.data.object.last_payment_error, fake.paymentIntents.get(declined.payment_intent?.id ?? '')?.last_payment_error);

  // Events can be fetched back, as a handler that re-reads its event would.
  const fetched = await stripe.events.retrieve(chargeEvent?.id ?? '');
  t.equal(fetched.type, 'charge.succeeded');
  t.same(fetched.data.object, chargeSucceeded?.data.object);
  t.match(await failure(stripe.events.retrieve('evt_nope')), { statusCode: 404, code: 'resource_missing' });
});

t.test('webhookRequest: signed as Stripe signs, verified by the real SDK', async (t) => {
  const { fake, stripe } = await setup(t);
  const secret = 'whsec_test_secret';
  const intent = await stripe.paymentIntents.create({ ...CHARGE, payment_method: 'pm_card_visa' });
  const event = eventsOf(fake, 'payment_intent.succeeded')[0];
  if (!event) throw new Error('no payment_intent.succeeded event');

  const request = fake.webhookRequest(event, secret);
  t.equal(request.payload, JSON.stringify(event, null, 2));
  t.equal(request.headers['content-type'], 'application/json');
  const header = request.headers['stripe-signature'];
  t.match(header, /^t=\d+,v1=[0-9a-f]{64}$/);
  const timestamp = Number(/^t=(\d+)/.exec(header)?.[1]);
  t.ok(Math.abs(timestamp - Date.now() / 1000) < 5);
  t.equal(
    header,
    Stripe.webhooks.generateTestHeaderString({ payload: request.payload, secret, timestamp }),
    'the same header the SDK generates',
  );

  const verified = Stripe.webhooks.constructEvent(request.payload, header, secret);
  t.equal(verified.id, event.id);
  t.equal(verified.type, 'payment_intent.succeeded');
  t.same(verified, JSON.parse(request.payload));
  if (verified.type === 'payment_intent.succeeded') t.equal(verified.data.object.id, intent.id);
  t.same(webhookRequest(event, secret, { timestamp }), request, 'the export and the method agree');

  const old = webhookRequest(event, secret, { timestamp: Math.floor(Date.now() / 1000) - 600 });
  const stale = thrown(() => Stripe.webhooks.constructEvent(old.payload, old.headers['stripe-signature'], secret));
  t.type(stale, Stripe.errors.StripeSignatureVerificationError);
  t.match(stale.message, /Timestamp outside the tolerance zone/);
  t.equal(Stripe.webhooks.constructEvent(old.payload, old.headers['stripe-signature'], secret, 900).id, event.id);

  const wrongSecret = thrown(() => Stripe.webhooks.constructEvent(request.payload, header, 'whsec_other'));
  t.type(wrongSecret, Stripe.errors.StripeSignatureVerificationError);
  const tampered = thrown(() => Stripe.webhooks.constructEvent(request.payload.replace('"succeeded"', '"canceled"'), header, secret));
  t.type(tampered, Stripe.errors.StripeSignatureVerificationError);
  const compact = thrown(() => Stripe.webhooks.constructEvent(JSON.stringify(event), header, secret));
  t.type(compact, Stripe.errors.StripeSignatureVerificationError, 'the signature covers the exact bytes');
});
