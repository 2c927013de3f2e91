import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { checkoutFolder } from '../src/routes/checkout/index.js';
import { buildAppOnFakeStripe, buildTestApp, expectProblem, get, json } from './support/helper.js';

const API_KEY = 'ck_test_checkout_0123456789abcdef';

t.test('the checkout page, its module and stylesheet are served with a CSP that allows only this server', async (t) => {
  const app = await buildTestApp(t);
  const page = await get(app, '/checkout');
  t.equal(page.statusCode, 200);
  t.equal(page.headers['content-type'], 'text/html; charset=utf-8');
  t.match(page.body, /<h1>Buy coins<\/h1>/);
  t.match(page.body, /<script type="module" src="\/checkout\/checkout\.js"><\/script>/);
  t.notMatch(page.body, /<script>|<script type="module">|\son[a-z]+="/, 'no inline script or event handler attribute');
  t.equal(
    page.headers['content-security-policy'],
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-src 'none'; " +
      "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  );

  const script = await get(app, '/checkout/checkout.js');
  t.equal(script.statusCode, 200);
  t.equal(script.headers['content-type'], 'text/javascript; charset=utf-8');
  t.match(script.body, /async function api\(method, path/);
  const style = await get(app, '/checkout/checkout.css');
  t.equal(style.statusCode, 200);
  t.equal(style.headers['content-type'], 'text/css; charset=utf-8');
  t.match(style.body, /:focus-visible/);
});

t.test('the page learns its mode from /checkout/settings: simulated, no publishable key, open in development', async (t) => {
  const app = await buildTestApp(t);
  const settings = await get(app, '/checkout/settings');
  t.equal(settings.statusCode, 200);
  t.same(json(settings), { gateway: 'simulated', publishable_key: null, auth_required: false, dev_session: true });
  t.equal(settings.headers['cache-control'], 'no-store');
});

t.test('with a publishable key the page uses Stripe.js, and its CSP allows exactly Stripe’s script, API and frames', async (t) => {
  const { app } = await buildAppOnFakeStripe(t, { env: { STRIPE_PUBLISHABLE_KEY: 'pk_test_checkout123' } });
  t.same(json(await get(app, '/checkout/settings')), {
    gateway: 'stripe',
    publishable_key: 'pk_test_checkout123',
    auth_required: false,
    dev_session: true,
  });
  const page = await get(app, '/checkout');
  t.equal(
    page.headers['content-security-policy'],
    "default-src 'none'; script-src 'self' https://js.stripe.com https://*.js.stripe.com; style-src 'self'; img-src 'self' data:; " +
      "connect-src 'self' https://api.stripe.com; frame-src https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com; " +
      "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  );
  t.notMatch(page.headers['content-security-policy'], /unsafe-inline/);
});

t.test('with API_KEYS the page and its settings load without a key, while the API it calls still refuses one-less calls', async (t) => {
  const app = await buildTestApp(t, { env: { API_KEYS: API_KEY } });
  t.equal((await get(app, '/checkout')).statusCode, 200);
  t.equal((await get(app, '/checkout/checkout.js')).statusCode, 200);
  t.same(json(await get(app, '/checkout/settings')), {
    gateway: 'simulated',
    publishable_key: null,
    auth_required: true,
    dev_session: true,
  });
  expectProblem(t, await get(app, '/stripe/packages'), 401, 'unauthorized', 'Missing API key: send Authorization: Bearer <key>');
});

t.test('development only: POST /checkout/dev-session signs a player up and answers their client token, for them alone', async (t) => {
  const app = await buildTestApp(t, { env: { API_KEYS: API_KEY } });
  const session = await app.inject({ method: 'POST', url: '/checkout/dev-session', payload: { email: 'dev@example.com', name: 'Dev' } });
  t.equal(session.statusCode, 200);
  const { user_id: userId, token, expires_at: expiresAt } = json(session) as { user_id: string; token: string; expires_at: string };
  t.ok(Date.parse(expiresAt) > Date.now());
  const asPlayer = (url: string) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
  t.match(json(await asPlayer(`/stripe/customer/${userId}`)), { user_id: userId, email: 'dev@example.com', currency_balance: 0 });
  const other = json(
    await app.inject({
      method: 'POST',
      url: '/stripe/create-customer',
      headers: { authorization: `Bearer ${API_KEY}` },
      payload: { email: 'o@example.com', name: 'O' },
    }),
  );
  expectProblem(t, await asPlayer(`/stripe/customer/${String(other['user_id'])}`), 403, 'forbidden');
  expectProblem(
    t,
    await app.inject({ method: 'POST', url: '/checkout/dev-session', payload: { email: 'not-an-email', name: 'Dev' } }),
    400,
    'validation_error',
  );

  for (const NODE_ENV of ['test', 'production']) {
    const env = {
      NODE_ENV,
      API_KEYS: API_KEY,
      CLIENT_TOKEN_SECRETS: 'checkout-test-secret-0123456789abcdefgh',
      STRIPE_WEBHOOK_SECRET: 'whsec_checkout',
    };
    const guarded = NODE_ENV === 'production' ? (await buildAppOnFakeStripe(t, { env })).app : await buildTestApp(t, { env });
    const refused = await guarded.inject({
      method: 'POST',
      url: '/checkout/dev-session',
      headers: { authorization: `Bearer ${API_KEY}` },
      payload: { email: 'dev@example.com', name: 'Dev' },
    });
    expectProblem(t, refused, 404, 'not_found', 'No route POST /checkout/dev-session');
    t.equal(json(await get(guarded, '/checkout/settings'))['dev_session'], false, `${NODE_ENV}: the page is told there is none`);
  }
});

t.test('anything else under /checkout is a 404 problem document', async (t) => {
  const app = await buildTestApp(t);
  expectProblem(t, await get(app, '/checkout/../src/config.ts'), 404, 'not_found');
  expectProblem(t, await get(app, '/checkout/index.html'), 404, 'not_found', 'No route GET /checkout/index.html');
  expectProblem(t, await app.inject({ method: 'POST', url: '/checkout', payload: {} }), 404, 'not_found', 'No route POST /checkout');
  expectProblem(t, await app.inject({ method: 'POST', url: '/checkout/settings', payload: {} }), 404, 'not_found');
});

t.test('the checkout routes are not in the OpenAPI document', async (t) => {
  const app = await buildTestApp(t);
  const paths = Object.keys(json(await get(app, '/openapi.json'))['paths'] as object);
  t.same(
    paths.filter((p) => p.startsWith('/checkout')),
    [],
  );
  t.ok(paths.includes('/stripe/packages'));
});

t.test('the page files are found from the source tree, and a missing folder is a clear error', async (t) => {
  t.match(checkoutFolder(), /public[\\/]checkout$/);
  const empty = mkdtempSync(join(tmpdir(), 'coinshop-no-page-'));
  t.teardown(() => rmSync(empty, { recursive: true, force: true }));
  t.throws(() => checkoutFolder(empty), { message: /The checkout page's files \(public[\\/]checkout\/\) are missing above/ });
});
