import { readFileSync } from 'node:fs';
import { Agent, get as httpGet } from 'node:http';
import type { AddressInfo } from 'node:net';
import helmet from '@fastify/helmet';
import Fastify from 'fastify';
import t from 'tap';
import { parse } from 'yaml';
import { loadConfig } from '../src/config.js';
import { helmetOptions, overloaded } from '../src/plugins/protection.js';
import { buildTestApp, expectProblem, json, storeCounts } from './support/helper.js';
import { projectFile } from './support/project.js';

const KEY = 'ck_live_0123456789abcdefghijklmnop';
const OLD_KEY = 'ck_live_retiring_0123456789abcdefghij';
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

type Operation = { method: string; path: string; security: unknown };
const document = parse(readFileSync(projectFile('openapi.yaml'), 'utf8')) as {
  paths: Record<string, Record<string, { security?: unknown; operationId: string }>>;
};
const operations: Operation[] = Object.entries(document.paths).flatMap(([path, item]) =>
  Object.entries(item).map(([method, op]) => ({ method: method.toUpperCase(), path, security: op.security })),
);

t.test('every operation that needs a key refuses no key and a wrong key with 401, and changes nothing', async (t) => {
  const app = await buildTestApp(t, { env: { API_KEYS: KEY } });
  const created = await app.inject({
    method: 'POST',
    url: '/stripe/create-customer',
    headers: bearer(KEY),
    payload: { email: 'a@example.com', name: 'A' },
  });
  const userId = String(json(created)['user_id']);
  const guarded = operations.filter((op) => !(Array.isArray(op.security) && op.security.length === 0));
  t.ok(guarded.length >= 14, `${guarded.length} guarded operations`);
  const before = await storeCounts(app);
  for (const op of guarded) {
    const url = op.path.replace('{user_id}', userId).replace(/\{[a-z_]+\}/g, 'x1');
    const payload =
      op.method === 'POST'
        ? {
            user_id: userId,
            package_id: 'package_1',
            email: 'b@example.com',
            name: 'B',
            payment_method_id: 'pm_card_visa',
            amount: 1,
            item_id: 'x',
          }
        : undefined;
    for (const headers of [{}, bearer('wrong-key-0123456789abcdefghijkl'), { authorization: `Basic ${KEY}` }]) {
      const response = await app.inject({ method: op.method as 'GET' | 'POST', url, headers, ...(payload ? { payload } : {}) });
      expectProblem(t, response, 401, 'unauthorized');
      t.equal(response.headers['www-authenticate'], 'Bearer realm="coinshop"', `${op.method} ${op.path}`);
    }
  }
  t.same(await storeCounts(app), before, 'no refused request changed the store');

  for (const op of operations.filter((o) => Array.isArray(o.security) && o.security.length === 0)) {
    t.not((await app.inject({ method: op.method as 'GET' | 'POST', url: op.path })).statusCode, 401, `${op.path} is public`);
  }
  t.equal((await app.inject({ method: 'GET', url: '/docs/' })).statusCode, 200, 'the docs are public');
});

t.test('several keys at once, so they can be rotated; each is its own Idempotency-Key scope', async (t) => {
  const app = await buildTestApp(t, { env: { API_KEYS: `${KEY},${OLD_KEY}` } });
  for (const key of [KEY, OLD_KEY]) {
    t.equal((await app.inject({ method: 'GET', url: '/stripe/packages', headers: bearer(key) })).statusCode, 200);
  }
  const signup = (key: string) =>
    app.inject({
      method: 'POST',
      url: '/stripe/create-customer',
      headers: { ...bearer(key), 'idempotency-key': 'same' },
      payload: { email: 'a@example.com', name: 'A' },
    });
  const a = json(await signup(KEY));
  const b = json(await signup(OLD_KEY));
  t.not(a['user_id'], b['user_id'], 'the same key string from two callers is two requests');
  t.equal((await signup(KEY)).headers['idempotent-replayed'], 'true');
});

t.test('on one keep-alive connection every request is judged by its own key: a key that passed vouches for nothing else', async (t) => {
  const app = await buildTestApp(t, { env: { API_KEYS: `${KEY},${OLD_KEY}` } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const get = (path: string, authorization?: string) =>
    new Promise<{ status: number; reused: boolean; body: string }>((resolve, reject) => {
      const request = httpGet({ host: '127.0.0.1', port, path, agent, headers: authorization ? { authorization } : {} }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, reused: request.reusedSocket, body }));
      });
      request.on('error', reject);
    });
  const player = json(
    await app.inject({
      method: 'POST',
      url: '/stripe/create-customer',
      headers: bearer(KEY),
      payload: { email: 'p@example.com', name: 'P' },
    }),
  )['user_id'];
  const token = json(
    await app.inject({ method: 'POST', url: '/stripe/client-tokens', headers: bearer(KEY), payload: { user_id: player } }),
  )['token'];
  const steps: [string | undefined, string, number][] = [
    [`Bearer ${KEY}`, '/stripe/packages', 200],
    [`Bearer ${KEY}x`, '/stripe/packages', 401],
    [undefined, '/stripe/packages', 401],
    [`Bearer ${KEY}`, '/stripe/packages', 200],
    [`Bearer ${OLD_KEY}`, '/stripe/packages', 200],
    [`Bearer ${String(token)}`, '/stripe/packages', 200],
    [`Bearer ${String(token)}`, '/stripe/transactions/player-2', 403],
    [`Bearer ${KEY}`, '/stripe/transactions/player-2', 404],
    [`bearer   ${KEY}`, '/stripe/packages', 200],
  ];
  for (const [index, [authorization, path, status]] of steps.entries()) {
    const answer = await get(path, authorization);
    t.equal(answer.status, status, `${authorization ?? 'no key'} on ${path}: ${answer.body}`);
    if (index > 0) t.ok(answer.reused, 'the same connection');
  }
});

t.test('production refuses to start without what it needs, naming it', async (t) => {
  const complete = {
    NODE_ENV: 'production',
    API_KEYS: KEY,
    STRIPE_SECRET_KEY: 'sk_live_abc',
    STRIPE_WEBHOOK_SECRET: 'whsec_abc',
    CLIENT_TOKEN_SECRETS: 'client-token-secret-0123456789abcdef',
  };
  t.equal(loadConfig(complete).NODE_ENV, 'production');
  for (const missing of ['API_KEYS', 'STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET', 'CLIENT_TOKEN_SECRETS'] as const) {
    const env: Record<string, string> = { ...complete };
    delete env[missing];
    t.throws(() => loadConfig(env), {
      name: 'ConfigError',
      variable: missing,
      message: new RegExp(`^Invalid configuration: ${missing} is required when NODE_ENV=production`),
    });
  }
});

t.test('rate limits per key, and per IP without one: 429 with Retry-After', async (t) => {
  const app = await buildTestApp(t, { env: { API_KEYS: `${KEY},${OLD_KEY}`, RATE_LIMIT_PER_MINUTE: '3' } });
  const call = (headers: Record<string, string>) => app.inject({ method: 'GET', url: '/stripe/packages', headers });
  for (let i = 0; i < 3; i++) t.equal((await call(bearer(KEY))).statusCode, 200);
  const limited = await call(bearer(KEY));
  expectProblem(t, limited, 429, 'rate_limited');
  t.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After says when');
  t.equal((await call(bearer(OLD_KEY))).statusCode, 200, 'another key has its own budget');
  for (let i = 0; i < 3; i++) await call(bearer('guessing-0123456789abcdefghijklmn'));
  expectProblem(t, await call(bearer('guessing-another-0123456789abcdefgh')), 429, 'rate_limited');
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200, 'health checks are never limited');
});

t.test('behind a load balancer (TRUST_PROXY), the per-IP limit counts each client, not the balancer', async (t) => {
  const call = (app: Awaited<ReturnType<typeof buildTestApp>>, client: string) =>
    app
      .inject({ method: 'GET', url: '/stripe/packages', remoteAddress: '10.0.0.2', headers: { 'x-forwarded-for': client } })
      .then((r) => r.statusCode);
  const trusting = await buildTestApp(t, { env: { RATE_LIMIT_PER_MINUTE: '2', TRUST_PROXY: '1' } });
  t.same([await call(trusting, '203.0.113.1'), await call(trusting, '203.0.113.1'), await call(trusting, '203.0.113.1')], [200, 200, 429]);
  t.equal(await call(trusting, '203.0.113.2'), 200, 'another client behind the same balancer has its own budget');
  // Without TRUST_PROXY, X-Forwarded-For is the caller's own claim: it changes nothing.
  const direct = await buildTestApp(t, { env: { RATE_LIMIT_PER_MINUTE: '2' } });
  t.same([await call(direct, '203.0.113.1'), await call(direct, '203.0.113.2'), await call(direct, '203.0.113.3')], [200, 200, 429]);
});

t.test('security headers, CORS for the configured origins only', async (t) => {
  const app = await buildTestApp(t, { env: { CORS_ORIGINS: 'https://shop.example.com' } });
  const response = await app.inject({ method: 'GET', url: '/stripe/packages', headers: { origin: 'https://shop.example.com' } });
  t.equal(response.headers['access-control-allow-origin'], 'https://shop.example.com');
  t.equal(response.headers['x-content-type-options'], 'nosniff');
  t.equal(
    response.headers['content-security-policy'],
    "default-src 'none';frame-ancestors 'none'",
    'a JSON answer may load nothing and be framed nowhere',
  );
  t.ok(response.headers['strict-transport-security']);
  const other = await app.inject({ method: 'GET', url: '/stripe/packages', headers: { origin: 'https://evil.example.com' } });
  t.notOk(other.headers['access-control-allow-origin']);
  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/stripe/purchase-currency',
    headers: {
      origin: 'https://shop.example.com',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization,content-type,idempotency-key',
    },
  });
  t.equal(preflight.statusCode, 204);
  t.match(preflight.headers['access-control-allow-headers'], /idempotency-key/);
  const docs = await app.inject({ method: 'GET', url: '/docs/' });
  t.notMatch(docs.headers['content-security-policy'] ?? '', /default-src 'none'/, 'Swagger UI gets a policy it can work under');
});

t.test('without CORS_ORIGINS no origin is allowed, and a preflight is not answered as one', async (t) => {
  const app = await buildTestApp(t);
  const response = await app.inject({ method: 'GET', url: '/stripe/packages', headers: { origin: 'https://shop.example.com' } });
  t.equal(response.statusCode, 200);
  t.same(
    Object.keys(response.headers).filter((name) => name.startsWith('access-control-')),
    [],
  );
  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/stripe/purchase-currency',
    headers: { origin: 'https://shop.example.com', 'access-control-request-method': 'POST' },
  });
  t.equal(preflight.statusCode, 404);
  t.same(
    Object.keys(preflight.headers).filter((name) => name.startsWith('access-control-')),
    [],
  );
});

t.test('a second with no event-loop sample (a stall that is over) does not shed; a measured lag does', async (t) => {
  t.notOk(overloaded('eventLoopDelay', Infinity), 'no sample: the loop was stuck, and is running again');
  t.ok(overloaded('eventLoopDelay', 1500), 'a measured delay over the limit sheds');
  t.ok(overloaded('heapUsedBytes', 1e9), 'other readings shed as configured');
});

t.test("every API answer carries the headers for a JSON API; web pages (docs, checkout) carry helmet's", async (t) => {
  // OWASP's REST Security Cheat Sheet: a JSON answer is not cached, sniffed, framed or read across origins.
  const api = {
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none';frame-ancestors 'none'",
    'cross-origin-resource-policy': 'same-origin',
    'strict-transport-security': 'max-age=31536000; includeSubDomains',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
  };
  // What @fastify/helmet itself sends with coinshop's options, on a bare app: what a web page gets.
  const reference = Fastify();
  t.teardown(() => reference.close());
  await reference.register(helmet, helmetOptions);
  reference.get('/', async () => ({}));
  const helmetHeaders = (await reference.inject('/')).headers;
  const pageNames = Object.keys(helmetHeaders).filter(
    (name) => !['content-type', 'content-length', 'date', 'connection', 'keep-alive'].includes(name),
  );
  t.ok(pageNames.length >= 10, `helmet sets ${pageNames.join(', ')}`);
  const pageOnly = pageNames.filter((name) => !(name in api));
  t.ok(pageOnly.includes('referrer-policy') && pageOnly.includes('cross-origin-opener-policy'), `only pages get ${pageOnly.join(', ')}`);

  const app = await buildTestApp(t, { env: { API_KEYS: KEY } });
  const answers = {
    // (GET /stripe/packages, the same for everyone, may be kept a minute: its own test, below.)
    ok: await app.inject({
      method: 'POST',
      url: '/stripe/create-customer',
      headers: bearer(KEY),
      payload: { email: 'h@example.com', name: 'H' },
    }),
    unauthorized: await app.inject({ method: 'GET', url: '/stripe/packages' }),
    notFound: await app.inject({ method: 'GET', url: '/nowhere', headers: bearer(KEY) }),
    invalid: await app.inject({ method: 'POST', url: '/stripe/create-customer', headers: bearer(KEY), payload: {} }),
    malformed: await app.inject({ method: 'GET', url: '/stripe/customer/%E0%A4%A', headers: bearer(KEY) }),
    health: await app.inject({ method: 'GET', url: '/health' }),
    spec: await app.inject({ method: 'GET', url: '/openapi.json' }),
  };
  t.equal(answers.malformed.statusCode, 400, 'a URL that does not decode is refused before routing');
  t.match(json(answers.malformed), { code: 'bad_request', detail: /^Malformed request/ });
  for (const [what, response] of Object.entries(answers)) {
    t.same(Object.fromEntries(Object.keys(api).map((name) => [name, response.headers[name]])), api, what);
    t.same(
      pageOnly.filter((name) => response.headers[name] !== undefined),
      [],
      `${what}: no header that only a web page acts on`,
    );
  }

  const pages = {
    docs: await app.inject({ method: 'GET', url: '/docs/' }),
    checkout: await app.inject({ method: 'GET', url: '/checkout' }),
  };
  for (const [what, page] of Object.entries(pages)) {
    t.equal(page.statusCode, 200, what);
    t.match(page.headers['content-type'], /^text\/html/, what);
    for (const name of pageNames.filter((name) => name !== 'content-security-policy'))
      t.equal(page.headers[name], helmetHeaders[name], `${what}: ${name}`);
    t.match(page.headers['content-security-policy'], /script-src 'self'/, `${what}: a policy of its own, that lets the page run`);
    t.match(page.headers['content-security-policy'], /frame-ancestors 'none'/, `${what}: framed nowhere`);
    t.equal(page.headers['x-frame-options'], 'DENY', `${what}: X-Frame-Options agrees with frame-ancestors 'none' (not SAMEORIGIN)`);
  }
});

t.test('under pressure the service sheds load with 503 and Retry-After', async (t) => {
  const app = await buildTestApp(t, { env: { MAX_EVENT_LOOP_DELAY_MS: '10' } });
  await app.ready();
  // Stall the event loop over and over, as CPU-bound work would, for longer than one sample (1 s).
  for (let i = 0; i < 15; i++) {
    const until = Date.now() + 100;
    while (Date.now() < until) {
      // busy
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  const shed = await app.inject({ method: 'GET', url: '/stripe/packages' });
  expectProblem(t, shed, 503, 'service_unavailable');
  t.equal(shed.headers['retry-after'], '5');
});

t.test('health, readiness', async (t) => {
  const app = await buildTestApp(t, { env: { API_KEYS: KEY } });
  t.same(json(await app.inject({ method: 'GET', url: '/health' })), { status: 'ok' });
  t.same(json(await app.inject({ method: 'GET', url: '/ready' })), { status: 'ready', database: 'ok', payments: 'simulated' });
  await app.store.db.destroy();
  expectProblem(
    t,
    await app.inject({ method: 'GET', url: '/ready' }),
    503,
    'service_unavailable',
    'The database is not reachable right now; retry in a few seconds',
  );
});

t.test('/metrics counts purchases by outcome, webhook events by type, replays', async (t) => {
  const app = await buildTestApp(t, { env: { API_KEYS: KEY } });
  const post = (url: string, payload: object, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url, headers: { ...bearer(KEY), ...headers }, payload });
  const good = json(await post('/stripe/create-customer', { email: 'a@example.com', name: 'A' }));
  const bad = json(await post('/stripe/create-customer', { email: 'b@example.com', name: 'B' }));
  await post('/stripe/attach-payment-method', { user_id: good['user_id'], payment_method_id: 'pm_card_visa' });
  await post('/stripe/attach-payment-method', { user_id: bad['user_id'], payment_method_id: 'pm_card_chargeDeclined' });
  await post('/stripe/purchase-currency', { user_id: good['user_id'], package_id: 'package_1' }, { 'idempotency-key': 'k' });
  await post('/stripe/purchase-currency', { user_id: good['user_id'], package_id: 'package_1' }, { 'idempotency-key': 'k' });
  await post('/stripe/purchase-currency', { user_id: bad['user_id'], package_id: 'package_1' });
  const unauthorized = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(unauthorized.statusCode, 401);
  const metrics = await app.inject({ method: 'GET', url: '/metrics', headers: bearer(KEY) });
  t.equal(metrics.statusCode, 200);
  t.match(metrics.headers['content-type'], /^text\/plain/);
  t.match(metrics.body, /coinshop_purchases_total\{outcome="succeeded"\} 1\n/);
  t.match(metrics.body, /coinshop_purchases_total\{outcome="card_declined"\} 1\n/);
  t.match(metrics.body, /coinshop_webhook_events_total\{type="payment_intent.succeeded",outcome="processed"\} 1\n/);
  t.match(metrics.body, /coinshop_webhook_events_total\{type="payment_intent.payment_failed",outcome="processed"\} 1\n/);
  t.match(metrics.body, /coinshop_idempotent_replays_total 1\n/);
  t.match(
    metrics.body,
    /coinshop_http_request_duration_seconds_bucket\{le="[0-9.]+",method="POST",route="\/stripe\/purchase-currency",status_code="200"\}/,
  );
  t.match(metrics.body, /coinshop_ledger_mismatches_found_total 0\n/);
});

t.test('the simulator exists only in development on the simulated gateway: elsewhere its routes are not registered at all', async (t) => {
  const { buildAppOnFakeStripe } = await import('./support/helper.js');
  const secrets = {
    API_KEYS: KEY,
    CLIENT_TOKEN_SECRETS: 'simulator-test-secret-0123456789abcdefgh',
    STRIPE_WEBHOOK_SECRET: 'whsec_simulator',
  };
  const apps = {
    'production (Stripe)': (await buildAppOnFakeStripe(t, { env: { NODE_ENV: 'production', ...secrets } })).app,
    'development on Stripe': (await buildAppOnFakeStripe(t, { env: secrets })).app,
    'test mode (simulated)': await buildTestApp(t, { env: { NODE_ENV: 'test', ...secrets } }),
  };
  const routes = [
    '/simulator/payment-intents/pi_sim_1/authenticate',
    '/simulator/payment-intents/pi_sim_1/dispute',
    '/simulator/disputes/dp_sim_1/close',
  ];
  for (const [name, app] of Object.entries(apps)) {
    for (const url of routes) {
      t.notOk(
        app.hasRoute({ method: 'POST', url: url.replace(/pi_sim_1/, ':payment_intent_id').replace(/dp_sim_1/, ':dispute_id') }),
        `${name}: ${url} is not registered`,
      );
      const response = await app.inject({ method: 'POST', url, headers: bearer(KEY), payload: { outcome: 'succeed' } });
      expectProblem(t, response, 404, 'not_found', `No route POST ${url}`);
    }
  }
  const development = await buildTestApp(t);
  t.ok(
    development.hasRoute({ method: 'POST', url: '/simulator/payment-intents/:payment_intent_id/authenticate' }),
    'development on the simulated gateway has it',
  );
});

t.test('the simulator answers 404 for a PaymentIntent or dispute it never made (not 409)', async (t) => {
  const app = await buildTestApp(t);
  expectProblem(
    t,
    await app.inject({ method: 'POST', url: '/simulator/payment-intents/pi_sim_nope/authenticate', payload: { outcome: 'succeed' } }),
    404,
    'not_found',
    "No such PaymentIntent: 'pi_sim_nope'",
  );
  expectProblem(
    t,
    await app.inject({ method: 'POST', url: '/simulator/payment-intents/pi_sim_nope/dispute', payload: {} }),
    404,
    'not_found',
    "No such PaymentIntent: 'pi_sim_nope'",
  );
  expectProblem(
    t,
    await app.inject({ method: 'POST', url: '/simulator/disputes/dp_sim_nope/close', payload: { outcome: 'won' } }),
    404,
    'not_found',
    "No such dispute: 'dp_sim_nope'",
  );
});

t.test(
  'GET /stripe/packages has an ETag and answers If-None-Match with 304, cached privately for a minute; player data stays no-store',
  async (t) => {
    const app = await buildTestApp(t);
    const first = await app.inject({ method: 'GET', url: '/stripe/packages' });
    t.equal(first.statusCode, 200);
    const etag = String(first.headers['etag']);
    t.match(etag, /^"[0-9a-f]{16}"$/, 'a strong ETag of the catalog');
    t.equal(first.headers['cache-control'], 'private, max-age=60');
    const again = (ifNoneMatch: string) =>
      app.inject({ method: 'GET', url: '/stripe/packages', headers: { 'if-none-match': ifNoneMatch } });
    for (const current of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const response = await again(current);
      t.equal(response.statusCode, 304, `If-None-Match: ${current}`);
      t.equal(response.body, '', 'no body');
      t.equal(response.headers['etag'], etag);
      t.equal(response.headers['cache-control'], 'private, max-age=60');
    }
    const changed = await again('"0123456789abcdef"');
    t.equal(changed.statusCode, 200, 'another tag gets the catalog');
    t.equal(changed.body, first.body);
    const other = await buildTestApp(t);
    t.equal(
      (await other.inject({ method: 'GET', url: '/stripe/packages' })).headers['etag'],
      etag,
      'every replica with the same catalog gives the same tag',
    );

    const { createCustomer } = await import('./support/helper.js');
    const { user_id } = await createCustomer(app);
    for (const url of [`/stripe/customer/${user_id}`, `/stripe/transactions/${user_id}`, `/stripe/ledger/${user_id}`]) {
      const response = await app.inject({ method: 'GET', url });
      t.equal(response.headers['cache-control'], 'no-store', `${url}: never stored`);
      t.notOk(response.headers['etag'], `${url}: no ETag`);
    }
  },
);
