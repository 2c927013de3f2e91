import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import type { PaymentsGateway } from '../../src/gateway/types.js';
import { checkContract } from './contract.js';
import { dropFreshSchema, freshDatabaseUrl } from './database.js';
import { startFakeStripe } from './fake-stripe.js';

export interface TestAppOptions {
  env?: Record<string, string>;
  gateway?: PaymentsGateway;
}

/**
 * The configuration of a test app on a new, empty database of the engine under test (SQLite in
 * memory, or a PostgreSQL schema of its own) and the simulated gateway, unless `env` says otherwise.
 */
export async function testConfig(env: Record<string, string> = {}) {
  return loadConfig({
    DATABASE_URL: await freshDatabaseUrl(),
    // Tap runs test files side by side; each app keeps few PostgreSQL connections.
    DATABASE_POOL_SIZE: '4',
    // The rate limit and load shedding are tested on their own; elsewhere a burst of requests, or a
    // busy machine stalling the event loop (a second without a sample counts as overloaded), must
    // not trip them.
    RATE_LIMIT_PER_MINUTE: '1000000',
    MAX_EVENT_LOOP_DELAY_MS: '0',
    ...env,
  });
}

/**
 * A coinshop app on a new, empty database (see testConfig), closed when the test ends. Every answer
 * its `inject` returns is held to openapi.yaml (test/support/contract.ts): an undocumented status,
 * content type or body shape fails the test, listed when it ends.
 */
export async function buildTestApp(t: Test, options: TestAppOptions = {}): Promise<FastifyInstance> {
  const config = await testConfig(options.env);
  const app = await buildApp({ config, ...(options.gateway ? { gateway: options.gateway } : {}) });
  const violations = checkContract(app);
  t.teardown(async () => {
    await app.close();
    await dropFreshSchema(config.DATABASE_URL);
    if (violations.length > 0) throw new Error(`Answers not as openapi.yaml documents them:\n${[...new Set(violations)].join('\n')}`);
  });
  return app;
}

/**
 * A coinshop app whose StripeGateway (the real stripe SDK, no retries) talks to a local
 * Stripe-compatible server with `latencyMs` added; both closed when the test ends.
 */
export async function buildAppOnFakeStripe(t: Test, options: { env?: Record<string, string>; latencyMs?: number } = {}) {
  const stripe = await startFakeStripe({ latencyMs: options.latencyMs ?? 0 });
  t.teardown(() => stripe.close());
  const app = await buildTestApp(t, {
    env: { STRIPE_SECRET_KEY: 'sk_test_coinshop', STRIPE_API_BASE: stripe.url, STRIPE_MAX_NETWORK_RETRIES: '0', ...options.env },
  });
  return { app, stripe };
}

export type Json = Record<string, unknown>;

/** JSON with sorted keys: two documents that say the same thing compare equal. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const object = value as Json;
    return `{${Object.keys(object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(object[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'undefined';
}

export function json(response: LightMyRequestResponse): Json {
  return response.json<Json>();
}

export const post = (app: FastifyInstance, url: string, payload: object) => app.inject({ method: 'POST', url, payload });
export const get = (app: FastifyInstance, url: string) => app.inject({ method: 'GET', url });

/** The seed's user story, one step a function. */
export async function createCustomer(app: FastifyInstance, body = { email: 'player@example.com', name: 'Player One' }) {
  const response = await post(app, '/stripe/create-customer', body);
  if (response.statusCode !== 200) throw new Error(`createCustomer: ${response.statusCode} ${response.body}`);
  return json(response) as { user_id: string; stripe_customer_id: string };
}

export const attachCard = (app: FastifyInstance, userId: string, paymentMethodId: string) =>
  post(app, '/stripe/attach-payment-method', { user_id: userId, payment_method_id: paymentMethodId });

export const buy = (app: FastifyInstance, userId: string, packageId: string) =>
  post(app, '/stripe/purchase-currency', { user_id: userId, package_id: packageId });

/** A customer with the given card saved, ready to buy. */
export async function customerWithCard(app: FastifyInstance, paymentMethodId = 'pm_card_visa') {
  const customer = await createCustomer(app);
  const attached = await attachCard(app, customer.user_id, paymentMethodId);
  if (attached.statusCode !== 200) throw new Error(`attachCard: ${attached.statusCode} ${attached.body}`);
  return customer;
}

/** What a problem document must look like for the given status, code and detail. */
export function expectProblem(t: Test, response: LightMyRequestResponse, status: number, code: string, detail?: string) {
  t.equal(response.statusCode, status, `status ${status}`);
  t.match(response.headers['content-type'], /^application\/problem\+json/);
  const body = json(response);
  t.equal(body['code'], code);
  t.equal(body['status'], status);
  t.equal(body['type'], `urn:coinshop:problem:${code}`);
  t.equal(body['request_id'], response.headers['x-request-id']);
  if (detail !== undefined) t.equal(body['detail'], detail);
  return body;
}

/** Row counts of the tables a refused request must leave alone. */
export async function storeCounts(app: FastifyInstance) {
  const count = async (table: 'customers' | 'purchases' | 'ledger_entries' | 'idempotency_keys' | 'webhook_events') =>
    Number(
      (
        await app.store.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  return {
    customers: await count('customers'),
    purchases: await count('purchases'),
    ledger: await count('ledger_entries'),
    keys: await count('idempotency_keys'),
    events: await count('webhook_events'),
  };
}
