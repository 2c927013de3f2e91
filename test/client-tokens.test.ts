import { readFileSync } from 'node:fs';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { SignJWT } from 'jose';
import t, { type Test } from 'tap';
import { parse } from 'yaml';
import { ClientTokens, keyIdOf, PLAYER_OPERATIONS, SPEND_OPERATION } from '../src/client-tokens.js';
import { loadConfig } from '../src/config.js';
import { buildApp } from '../src/app.js';
import { buildTestApp, expectProblem, json, storeCounts, testConfig } from './support/helper.js';
import { projectFile } from './support/project.js';

const KEY = 'ck_live_0123456789abcdefghijklmnop';
const SECRET = 'client-token-secret-new-0123456789abcdefgh';
const OLD_SECRET = 'client-token-secret-old-0123456789abcdefgh';
const RETIRED_SECRET = 'client-token-secret-retired-0123456789abcd';
const bearer = (credential: string) => ({ authorization: `Bearer ${credential}` });

type Method = 'GET' | 'POST';
interface Call {
  method: Method;
  url: string;
  payload?: object;
  headers?: Record<string, string>;
}

/** What a player owns, and the ids the player operations take. */
interface Player {
  userId: string;
  transactionId: string;
  paymentIntentId: string;
}

/** Every player operation, aimed at `target`. */
const playerCalls = (target: Player): Record<string, Call> => ({
  getCustomer: { method: 'GET', url: `/stripe/customer/${target.userId}` },
  attachPaymentMethod: {
    method: 'POST',
    url: '/stripe/attach-payment-method',
    payload: { user_id: target.userId, payment_method_id: 'pm_card_mastercard' },
  },
  purchaseCurrency: {
    method: 'POST',
    url: '/stripe/purchase-currency',
    payload: { user_id: target.userId, package_id: 'package_1' },
    headers: { 'idempotency-key': `buy-${target.userId}` },
  },
  listTransactions: { method: 'GET', url: `/stripe/transactions/${target.userId}` },
  getPurchase: { method: 'GET', url: `/stripe/purchases/${target.transactionId}` },
  spendCurrency: {
    method: 'POST',
    url: '/stripe/spend-currency',
    payload: { user_id: target.userId, amount: 1, item_id: 'sword' },
    headers: { 'idempotency-key': `spend-${target.userId}` },
  },
  simulateAuthentication: {
    method: 'POST',
    url: `/simulator/payment-intents/${target.paymentIntentId}/authenticate`,
    payload: { outcome: 'succeed' },
  },
  listPackages: { method: 'GET', url: '/stripe/packages' },
});

const send = (app: FastifyInstance, call: Call, credential?: string) =>
  app.inject({
    method: call.method,
    url: call.url,
    headers: { ...call.headers, ...(credential === undefined ? {} : bearer(credential)) },
    ...(call.payload ? { payload: call.payload } : {}),
  });

const operator = (app: FastifyInstance, method: Method, url: string, payload?: object) =>
  app.inject({ method, url, headers: bearer(KEY), ...(payload ? { payload } : {}) });

/** A player with one completed purchase and one waiting for 3-D Secure (made with the API key). */
async function player(t: Test, app: FastifyInstance, name: string): Promise<Player> {
  const created = json(await operator(app, 'POST', '/stripe/create-customer', { email: `${name}@example.com`, name }));
  const userId = String(created['user_id']);
  t.equal(
    (await operator(app, 'POST', '/stripe/attach-payment-method', { user_id: userId, payment_method_id: 'pm_card_visa' })).statusCode,
    200,
  );
  const bought = json(await operator(app, 'POST', '/stripe/purchase-currency', { user_id: userId, package_id: 'package_2' }));
  t.equal(
    (await operator(app, 'POST', '/stripe/attach-payment-method', { user_id: userId, payment_method_id: 'pm_card_threeDSecure2Required' }))
      .statusCode,
    200,
  );
  const waiting = json(await operator(app, 'POST', '/stripe/purchase-currency', { user_id: userId, package_id: 'package_1' }));
  t.equal(waiting['code'], 'authentication_required');
  return { userId, transactionId: String(bought['transaction_id']), paymentIntentId: String(waiting['payment_intent_id']) };
}

async function mint(app: FastifyInstance, userId: string): Promise<string> {
  const response = await operator(app, 'POST', '/stripe/client-tokens', { user_id: userId });
  if (response.statusCode !== 200) throw new Error(`mint: ${response.statusCode} ${response.body}`);
  return String(json(response)['token']);
}

/** Everything a refused request must leave as it was: row counts, and each player as the API key sees them. */
async function snapshot(app: FastifyInstance, players: Player[]) {
  const views = [];
  for (const p of players) {
    views.push({
      customer: await app.store.findCustomer(p.userId),
      history: json(await operator(app, 'GET', `/stripe/transactions/${p.userId}`)),
      ledger: json(await operator(app, 'GET', `/stripe/ledger/${p.userId}`)),
    });
  }
  return { ...(await storeCounts(app)), views };
}

const tokenEnv = { API_KEYS: KEY, CLIENT_TOKEN_SECRETS: `${SECRET},${OLD_SECRET}`, CLIENT_TOKENS_MAY_SPEND: 'true' };

const document = parse(readFileSync(projectFile('openapi.yaml'), 'utf8')) as {
  paths: Record<string, Record<string, { security?: Record<string, string[]>[]; operationId: string }>>;
};
const operations = Object.entries(document.paths).flatMap(([path, item]) =>
  Object.entries(item).map(([method, op]) => ({
    method: method.toUpperCase() as Method,
    path,
    operationId: op.operationId,
    security: op.security,
  })),
);

t.test('openapi.yaml: the player operations take an API key or a client token, every other guarded one an API key only', async (t) => {
  const player = operations.filter((op) => op.security?.some((s) => 'clientToken' in s)).map((op) => op.operationId);
  t.same(player.sort(), [...PLAYER_OPERATIONS, SPEND_OPERATION].sort());
  for (const op of operations.filter((o) => player.includes(o.operationId)))
    t.same(op.security, [{ apiKey: [] }, { clientToken: [] }], op.operationId);
  t.ok(
    operations.some((op) => op.operationId === 'createClientToken' && op.security === undefined),
    'minting needs the API key (the global default)',
  );
});

t.test("a token for player A on player B's data: 403 forbidden for every player operation, and nothing changes", async (t) => {
  const app = await buildTestApp(t, { env: tokenEnv });
  const a = await player(t, app, 'alice');
  const b = await player(t, app, 'bob');
  const tokenA = await mint(app, a.userId);
  const before = await snapshot(app, [a, b]);
  for (const [operationId, call] of Object.entries(playerCalls(b))) {
    if (operationId === 'listPackages') continue; // names no player
    const response = await send(app, call, tokenA);
    t.equal(response.statusCode, 403, operationId);
    expectProblem(t, response, 403, 'forbidden', 'This client token is for another player');
  }
  t.same(await snapshot(app, [a, b]), before, "B's balance, card, history and ledger, and every table, are as they were");

  // The same calls aimed at A's own data work with A's token.
  for (const [operationId, call] of Object.entries(playerCalls(a))) {
    const response = await send(app, call, tokenA);
    t.equal(response.statusCode, 200, `${operationId} on the token's own player: ${response.body.slice(0, 200)}`);
  }
});

t.test('expired, tampered, forged, wrong-audience and rotated-out tokens: 401 on every player operation, nothing changes', async (t) => {
  const app = await buildTestApp(t, { env: tokenEnv });
  const a = await player(t, app, 'alice');
  const good = await mint(app, a.userId);
  const [header, payload, signature] = good.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
  const b = await player(t, app, 'bob');
  const flip = (s: string, at: number) => s.slice(0, at) + (s[at] === 'A' ? 'B' : 'A') + s.slice(at + 1);
  const now = Math.floor(Date.now() / 1000);
  const signed = (secret: string, edit: (jwt: SignJWT) => SignJWT, kid = keyIdOf(secret)) =>
    edit(
      new SignJWT({ scope: String(claims['scope']) })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid })
        .setSubject(a.userId)
        .setIssuer('coinshop')
        .setAudience('coinshop')
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .setJti('test-jti'),
    ).sign(new TextEncoder().encode(secret));
  const bad: Record<string, string> = {
    'expired (minted two hours ago)': (await new ClientTokens([SECRET], 900, true).mint(a.userId, Date.now() - 2 * 3600_000)).token,
    'expired (past exp, signed with jose)': await signed(SECRET, (jwt) => jwt.setIssuedAt(now - 120).setExpirationTime(now - 60)),
    'payload changed to another player, signature kept': `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: b.userId })).toString('base64url')}.${signature}`,
    'a character of the payload flipped': `${header}.${flip(payload, 10)}.${signature}`,
    'a character of the signature flipped': `${header}.${payload}.${flip(signature, 5)}`,
    'signed with a secret never listed, claiming a listed key id': await signed(
      'an-attacker-secret-0123456789abcdefghij',
      (jwt) => jwt,
      keyIdOf(SECRET),
    ),
    'signed with a rotated-out secret': (await new ClientTokens([RETIRED_SECRET], 900, true).mint(a.userId)).token,
    'wrong audience': await signed(SECRET, (jwt) => jwt.setAudience('another-service')),
    'wrong issuer': await signed(SECRET, (jwt) => jwt.setIssuer('someone-else')),
    'a lifetime of ten years (exp − iat past CLIENT_TOKEN_TTL_SECONDS)': await signed(SECRET, (jwt) =>
      jwt.setExpirationTime(now + 10 * 365 * 86_400),
    ),
    'issued an hour in the future': await signed(SECRET, (jwt) => jwt.setIssuedAt(now + 3600).setExpirationTime(now + 3600 + 600)),
    'coinshop among other audiences': await signed(SECRET, (jwt) => jwt.setAudience(['coinshop', 'another-service'])),
    'no expiry': await new SignJWT({ scope: String(claims['scope']) })
      .setProtectedHeader({ alg: 'HS256', kid: keyIdOf(SECRET) })
      .setSubject(a.userId)
      .setIssuer('coinshop')
      .setAudience('coinshop')
      .setIssuedAt(now)
      .setJti('x')
      .sign(new TextEncoder().encode(SECRET)),
    'alg none': `${Buffer.from(JSON.stringify({ alg: 'none', kid: keyIdOf(SECRET) })).toString('base64url')}.${payload}.`,
  };
  const before = await snapshot(app, [a, b]);
  for (const [what, token] of Object.entries(bad)) {
    for (const [operationId, call] of Object.entries(playerCalls(a))) {
      const response = await send(app, call, token);
      t.equal(response.statusCode, 401, `${what}: ${operationId}`);
      expectProblem(t, response, 401, 'unauthorized');
      t.equal(response.headers['www-authenticate'], 'Bearer realm="coinshop"');
    }
  }
  t.same(await snapshot(app, [a, b]), before, 'no refused request changed anything');
  t.equal((await send(app, playerCalls(a)['getCustomer'] as Call, good)).statusCode, 200, 'the untouched token still works');
});

t.test('rotation: a token signed with a still-listed old secret works; once the secret is removed it is refused', async (t) => {
  const rotating = await buildTestApp(t, { env: { ...tokenEnv, CLIENT_TOKEN_SECRETS: `${SECRET},${OLD_SECRET}` } });
  const a = await player(t, rotating, 'alice');
  const oldToken = (await new ClientTokens([OLD_SECRET], 900, false).mint(a.userId)).token;
  const newToken = await mint(rotating, a.userId);
  t.equal(
    (await rotating.inject({ method: 'GET', url: `/stripe/customer/${a.userId}`, headers: bearer(oldToken) })).statusCode,
    200,
    'old secret, still listed',
  );
  t.equal((await rotating.inject({ method: 'GET', url: `/stripe/customer/${a.userId}`, headers: bearer(newToken) })).statusCode, 200);
  t.same(
    JSON.parse(Buffer.from(newToken.split('.')[0] ?? '', 'base64url').toString('utf8')),
    { alg: 'HS256', typ: 'JWT', kid: keyIdOf(SECRET) },
    'the first secret signs',
  );

  // The same database, the old secret removed: its tokens stop working, the new one's keep working.
  const rotated = await buildTestApp(t, { env: { ...tokenEnv, CLIENT_TOKEN_SECRETS: SECRET } });
  await rotated.store.transaction(async (tx) => {
    const customer = await rotating.store.findCustomer(a.userId);
    if (!customer) throw new Error('missing customer');
    await tx.insertCustomer({
      user_id: customer.user_id,
      email: customer.email,
      name: customer.name,
      stripe_customer_id: customer.stripe_customer_id,
    });
  });
  expectProblem(
    t,
    await rotated.inject({ method: 'GET', url: `/stripe/customer/${a.userId}`, headers: bearer(oldToken) }),
    401,
    'unauthorized',
    'Invalid client token: not signed with a current key',
  );
  t.equal((await rotated.inject({ method: 'GET', url: `/stripe/customer/${a.userId}`, headers: bearer(newToken) })).statusCode, 200);
});

t.test('every operator-only operation refuses a client token with 403, and nothing changes', async (t) => {
  const app = await buildTestApp(t, { env: tokenEnv });
  const a = await player(t, app, 'alice');
  const token = await mint(app, a.userId);
  const operatorOnly = operations.filter((op) => op.security === undefined);
  t.same(operatorOnly.map((op) => op.operationId).sort(), [
    'createClientToken',
    'createCustomer',
    'getMetrics',
    'getNotification',
    'listLedgerEntries',
    'listNotifications',
    'redeliverNotification',
    'refundPurchase',
    'simulateCheckout',
    'simulateDispute',
    'simulateDisputeClosed',
  ]);
  const before = await snapshot(app, [a]);
  for (const op of operatorOnly) {
    const url = op.path
      .replace('{user_id}', a.userId)
      .replace('{transaction_id}', a.transactionId)
      .replace('{payment_intent_id}', a.paymentIntentId)
      .replace('{dispute_id}', 'dp_sim_1')
      .replace('{session_id}', 'cs_sim_1');
    const payload =
      op.method === 'POST'
        ? { user_id: a.userId, email: 'x@example.com', name: 'X', outcome: op.operationId === 'simulateCheckout' ? 'expire' : 'won' }
        : undefined;
    const response = await app.inject({
      method: op.method,
      url,
      headers: { ...bearer(token), 'idempotency-key': 'k1' },
      ...(payload ? { payload } : {}),
    });
    t.equal(response.statusCode, 403, op.operationId);
    expectProblem(t, response, 403, 'forbidden', 'A client token cannot call this operation: it needs an API key');
  }
  t.same(await snapshot(app, [a]), before);
  t.equal((await operator(app, 'GET', '/metrics')).statusCode, 200, 'the API key still can');
});

t.test('the happy path with a client token alone: card, purchase, balance, history, one purchase, 3-D Secure, spending', async (t) => {
  const app = await buildTestApp(t, { env: { API_KEYS: KEY, CLIENT_TOKEN_SECRETS: SECRET } });
  const created = json(await operator(app, 'POST', '/stripe/create-customer', { email: 'p@example.com', name: 'P' }));
  const userId = String(created['user_id']);
  const minted = json(await operator(app, 'POST', '/stripe/client-tokens', { user_id: userId }));
  const token = String(minted['token']);
  const expiresAt = Date.parse(String(minted['expires_at']));
  t.ok(Math.abs(expiresAt - (Date.now() + 900_000)) < 5_000, 'expires in CLIENT_TOKEN_TTL_SECONDS (900 s by default)');
  const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  t.match(claims, { sub: userId, aud: 'coinshop', iss: 'coinshop', jti: /^[0-9a-f-]{36}$/, scope: PLAYER_OPERATIONS.join(' ') });
  t.equal(Number(claims['exp']) - Number(claims['iat']), 900);

  const as = (method: Method, url: string, payload?: object, headers: Record<string, string> = {}) =>
    app.inject({ method, url, headers: { ...bearer(token), ...headers }, ...(payload ? { payload } : {}) });
  t.equal((await as('GET', '/stripe/packages')).statusCode, 200);
  t.equal((await as('POST', '/stripe/attach-payment-method', { user_id: userId, payment_method_id: 'pm_card_visa' })).statusCode, 200);
  const bought = await as(
    'POST',
    '/stripe/purchase-currency',
    { user_id: userId, package_id: 'package_2' },
    { 'idempotency-key': 'buy-1' },
  );
  t.equal(bought.statusCode, 200);
  const replay = await as(
    'POST',
    '/stripe/purchase-currency',
    { user_id: userId, package_id: 'package_2' },
    { 'idempotency-key': 'buy-1' },
  );
  t.equal(replay.headers['idempotent-replayed'], 'true', 'a retry with the same key replays');
  const keyRow = await app.store.db.selectFrom('idempotency_keys').selectAll().where('key', '=', 'buy-1').executeTakeFirstOrThrow();
  t.equal(keyRow.scope, `player:${userId}`, "the token's Idempotency-Keys are scoped to its player");
  const viaKey = await operator(app, 'POST', '/stripe/purchase-currency', { user_id: userId, package_id: 'package_2' });
  t.equal(viaKey.headers['idempotent-replayed'], undefined);

  t.equal(json(await as('GET', `/stripe/customer/${userId}`))['currency_balance'], 600);
  const history = json(await as('GET', `/stripe/transactions/${userId}`));
  t.equal((history['transactions'] as unknown[]).length, 2);
  const one = json(await as('GET', `/stripe/purchases/${String(json(bought)['transaction_id'])}`));
  t.match(one, { status: 'completed', currency_purchased: 300 });

  t.equal(
    (await as('POST', '/stripe/attach-payment-method', { user_id: userId, payment_method_id: 'pm_card_threeDSecure2Required' })).statusCode,
    200,
  );
  const waiting = json(await as('POST', '/stripe/purchase-currency', { user_id: userId, package_id: 'package_1' }));
  t.equal(waiting['code'], 'authentication_required');
  const authenticated = await as('POST', `/simulator/payment-intents/${String(waiting['payment_intent_id'])}/authenticate`, {
    outcome: 'succeed',
  });
  t.equal(authenticated.statusCode, 200, 'the simulated customer confirms their own 3-D Secure');
  t.equal(json(await as('GET', `/stripe/customer/${userId}`))['currency_balance'], 700);

  // CLIENT_TOKENS_MAY_SPEND is off by default: only the backend spends.
  expectProblem(
    t,
    await as('POST', '/stripe/spend-currency', { user_id: userId, amount: 5, item_id: 'sword' }),
    403,
    'forbidden',
    'Client tokens may not spend coins on this server (CLIENT_TOKENS_MAY_SPEND is off): spend through your backend with its API key',
  );
  t.equal(json(await as('GET', `/stripe/customer/${userId}`))['currency_balance'], 700, 'nothing was spent');
  t.equal((await operator(app, 'POST', '/stripe/spend-currency', { user_id: userId, amount: 5, item_id: 'sword' })).statusCode, 200);

  const spending = await buildTestApp(t, { env: { ...tokenEnv } });
  const p = await player(t, spending, 'spender');
  const spendToken = await mint(spending, p.userId);
  const spent = await spending.inject({
    method: 'POST',
    url: '/stripe/spend-currency',
    headers: bearer(spendToken),
    payload: { user_id: p.userId, amount: 50, item_id: 'shield' },
  });
  t.equal(spent.statusCode, 200, 'with CLIENT_TOKENS_MAY_SPEND=true a token spends');
  t.equal(json(spent)['new_balance'], 250);
});

t.test('minting: API key only, the player must exist, the body is checked', async (t) => {
  const app = await buildTestApp(t, { env: tokenEnv });
  expectProblem(
    t,
    await operator(app, 'POST', '/stripe/client-tokens', { user_id: 'nobody' }),
    404,
    'customer_not_found',
    'Customer not found',
  );
  expectProblem(t, await operator(app, 'POST', '/stripe/client-tokens', {}), 400, 'validation_error');
  expectProblem(t, await operator(app, 'POST', '/stripe/client-tokens', { user_id: 'x', scope: 'everything' }), 400, 'validation_error');
  expectProblem(t, await app.inject({ method: 'POST', url: '/stripe/client-tokens', payload: { user_id: 'x' } }), 401, 'unauthorized');
});

t.test("the rate limit counts a token's player (all its tokens together), not the IP", async (t) => {
  // The API key's own budget (5) covers its two sign-ups and three mints.
  const app = await buildTestApp(t, { env: { ...tokenEnv, RATE_LIMIT_PER_MINUTE: '5' } });
  const ids = [];
  for (const email of ['a@example.com', 'b@example.com'])
    ids.push(String(json(await operator(app, 'POST', '/stripe/create-customer', { email, name: 'N' }))['user_id']));
  const [a, b] = ids as [string, string];
  const first = await mint(app, a);
  const second = await mint(app, a);
  const forB = await mint(app, b);
  const call = (token: string) => app.inject({ method: 'GET', url: '/stripe/packages', headers: bearer(token) }).then((r) => r.statusCode);
  t.same([await call(first), await call(second), await call(first), await call(second), await call(first)], [200, 200, 200, 200, 200]);
  t.equal(await call(second), 429, "A's second token shares A's budget");
  t.equal(await call(forB), 200, 'B has a budget of its own');
});

t.test('an open development server (no API_KEYS) still holds a client token to its player', async (t) => {
  const app = await buildTestApp(t, { env: { CLIENT_TOKEN_SECRETS: SECRET } });
  const create = async (email: string) =>
    String(json(await app.inject({ method: 'POST', url: '/stripe/create-customer', payload: { email, name: 'N' } }))['user_id']);
  const a = await create('a@example.com');
  const b = await create('b@example.com');
  const token = String(json(await app.inject({ method: 'POST', url: '/stripe/client-tokens', payload: { user_id: a } }))['token']);
  const read = (id: string, headers: Record<string, string>): Promise<LightMyRequestResponse> =>
    app.inject({ method: 'GET', url: `/stripe/customer/${id}`, headers });
  t.equal((await read(b, {})).statusCode, 200, 'no credential: open, as before');
  t.equal((await read(a, bearer(token))).statusCode, 200);
  expectProblem(t, await read(b, bearer(token)), 403, 'forbidden');
  expectProblem(t, await read(a, bearer(`${token}x`)), 401, 'unauthorized');
});

t.test('configuration: secrets are validated and never echoed; production requires them', async (t) => {
  t.throws(() => loadConfig({ CLIENT_TOKEN_SECRETS: 'too-short-secret' }), {
    variable: 'CLIENT_TOKEN_SECRETS',
    message:
      'Invalid configuration: CLIENT_TOKEN_SECRETS must be a comma-separated list of secrets, each 32 to 512 printable ASCII characters without spaces or commas',
  });
  t.throws(() => loadConfig({ CLIENT_TOKEN_SECRETS: `${SECRET},short` }), { name: 'ConfigError', variable: 'CLIENT_TOKEN_SECRETS' });
  t.throws(() => loadConfig({ CLIENT_TOKEN_TTL_SECONDS: '5' }), {
    message: /CLIENT_TOKEN_TTL_SECONDS must be an integer number of seconds from 30 to 86400/,
  });
  t.throws(() => loadConfig({ CLIENT_TOKENS_MAY_SPEND: 'maybe' }), { message: /CLIENT_TOKENS_MAY_SPEND must be true or false/ });
  const config = loadConfig({ CLIENT_TOKEN_SECRETS: `${SECRET},${OLD_SECRET}` });
  t.equal(config.CLIENT_TOKEN_TTL_SECONDS, 900);
  t.equal(config.CLIENT_TOKENS_MAY_SPEND, false);
  t.throws(
    () => loadConfig({ NODE_ENV: 'production', API_KEYS: KEY, STRIPE_SECRET_KEY: 'sk_live_abc', STRIPE_WEBHOOK_SECRET: 'whsec_abc' }),
    {
      variable: 'CLIENT_TOKEN_SECRETS',
      message: /^Invalid configuration: CLIENT_TOKEN_SECRETS is required when NODE_ENV=production \(.+\)$/,
    },
  );
});

t.test('without CLIENT_TOKEN_SECRETS (development) each process signs with its own random secret, and says so', async (t) => {
  const start = async (env: Record<string, string>) => {
    const lines: string[] = [];
    const app = await buildApp({
      config: await testConfig(env),
      logger: { level: 'warn', stream: { write: (line: string) => void lines.push(line) } },
    });
    t.teardown(() => app.close());
    await app.ready();
    return { app, warned: lines.some((line) => line.includes('No CLIENT_TOKEN_SECRETS')) };
  };
  const one = await start({ API_KEYS: KEY });
  const two = await start({ API_KEYS: KEY });
  t.ok(one.warned, 'a warning that tokens do not survive restarts and replicas need a shared secret');
  t.notOk((await start({ API_KEYS: KEY, CLIENT_TOKEN_SECRETS: SECRET })).warned, 'no warning with secrets set');
  const userId = String(json(await operator(one.app, 'POST', '/stripe/create-customer', { email: 'r@example.com', name: 'R' }))['user_id']);
  const token = await mint(one.app, userId);
  t.equal((await one.app.inject({ method: 'GET', url: '/stripe/packages', headers: bearer(token) })).statusCode, 200);
  expectProblem(
    t,
    await two.app.inject({ method: 'GET', url: '/stripe/packages', headers: bearer(token) }),
    401,
    'unauthorized',
    'Invalid client token: not signed with a current key',
  );
});

t.test(
  'verification holds a token to what minting gives: a lifetime within the TTL, issued now (a minute of clock skew), for coinshop alone',
  async (t) => {
    const tokens = new ClientTokens([SECRET], 900, false);
    const now = Math.floor(Date.now() / 1000);
    const sign = (edit: (jwt: SignJWT) => SignJWT) =>
      edit(
        new SignJWT({ scope: 'getCustomer' })
          .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: keyIdOf(SECRET) })
          .setSubject('3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70')
          .setIssuer('coinshop')
          .setAudience('coinshop')
          .setIssuedAt(now)
          .setExpirationTime(now + 900)
          .setJti('jti'),
      ).sign(new TextEncoder().encode(SECRET));
    t.match(await tokens.verify(await sign((jwt) => jwt)), { ok: true }, 'a token as minted');
    t.match(
      await tokens.verify(await sign((jwt) => jwt.setIssuedAt(now + 30).setExpirationTime(now + 930))),
      { ok: true },
      'issued 30 s ahead: clock skew',
    );
    t.same(await tokens.verify(await sign((jwt) => jwt.setExpirationTime(now + 901))), {
      ok: false,
      detail: 'Invalid client token: lives longer than 900 seconds',
    });
    t.same(await tokens.verify(await sign((jwt) => jwt.setExpirationTime(now + 10 * 365 * 86_400))), {
      ok: false,
      detail: 'Invalid client token: lives longer than 900 seconds',
    });
    t.same(await tokens.verify(await sign((jwt) => jwt.setIssuedAt(now + 3600).setExpirationTime(now + 4000))), {
      ok: false,
      detail: 'Invalid client token: iat claim rejected',
    });
    t.same(await tokens.verify(await sign((jwt) => jwt.setAudience(['coinshop', 'another-service']))), {
      ok: false,
      detail: 'Invalid client token: aud claim rejected',
    });
  },
);
