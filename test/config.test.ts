import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadCatalog } from '../src/catalog.js';
import { OPERATIONS_DOC, withConfigTable } from '../src/cli/config-table.js';
import { ConfigError, ConfigSchema, loadConfig } from '../src/config.js';
import { buildTestApp, customerWithCard, buy, expectProblem, get, json } from './support/helper.js';
import { inSource } from './support/project.js';

t.test('defaults serve a laptop: port 8000, a SQLite file under ./data, the simulated gateway', async (t) => {
  const config = loadConfig({});
  t.match(config, { PORT: 8000, HOST: '127.0.0.1', DATABASE_URL: './data/coinshop.db', LOG_LEVEL: 'info', NODE_ENV: 'development' });
  t.equal(config.STRIPE_SECRET_KEY, undefined);
  t.equal(loadConfig({ PORT: ' 9001 ', STRIPE_API_BASE: '' }).PORT, 9001, 'values are trimmed, empty means unset');
});

t.test('a bad value is refused with one line naming the variable', async (t) => {
  const cases: [Record<string, string>, string, RegExp][] = [
    [{ PORT: 'eighty' }, 'PORT', /^Invalid configuration: PORT must be an integer from 0 to 65535 \(got "eighty"\)$/],
    [{ PORT: '70000' }, 'PORT', /PORT must be an integer from 0 to 65535/],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL', /LOG_LEVEL must be one of fatal/],
    [{ NODE_ENV: 'prod' }, 'NODE_ENV', /NODE_ENV must be one of development, production, test/],
    [{ STRIPE_API_BASE: 'localhost:12111' }, 'STRIPE_API_BASE', /STRIPE_API_BASE must be a base URL/],
    [{ STRIPE_TIMEOUT_MS: '5' }, 'STRIPE_TIMEOUT_MS', /STRIPE_TIMEOUT_MS must be an integer number of milliseconds/],
    [{ DATABASE_POOL_SIZE: '0' }, 'DATABASE_POOL_SIZE', /DATABASE_POOL_SIZE must be an integer from 1 to 1000 \(got 0\)$/],
    [
      { REDIS_URL: 'localhost:6379' },
      'REDIS_URL',
      /^Invalid configuration: REDIS_URL must be a Redis URL such as redis:\/\/127\.0\.0\.1:6379$/,
    ],
    [
      { TRUST_PROXY: 'yes' },
      'TRUST_PROXY',
      /TRUST_PROXY must be a number of proxy hops \(such as 1\) or comma-separated proxy addresses or CIDRs \(got "yes"\)/,
    ],
    [{ TRUST_PROXY: '1,2' }, 'TRUST_PROXY', /TRUST_PROXY must be a number of proxy hops/],
    [
      { MAX_EVENT_LOOP_DELAY_MS: '5' },
      'MAX_EVENT_LOOP_DELAY_MS',
      /MAX_EVENT_LOOP_DELAY_MS must be 0 \(off\) or an integer number of milliseconds from 10 to 60000/,
    ],
    [
      { DATABASE_URL: 'postgres://coinshop:hunter2@db/coinshop', DATABASE_POOL_SIZE: 'many' },
      'DATABASE_POOL_SIZE',
      /DATABASE_POOL_SIZE must be/,
    ],
    [
      { DATABASE_PREPARED_STATEMENTS: 'maybe' },
      'DATABASE_PREPARED_STATEMENTS',
      /DATABASE_PREPARED_STATEMENTS must be true or false \(got "maybe"\)$/,
    ],
    [
      { HEAP_GROWTH_PERCENT: '50' },
      'HEAP_GROWTH_PERCENT',
      /^Invalid configuration: HEAP_GROWTH_PERCENT is not read; give node --heap-growing-percent=N instead \(docs\/operations\.md, Memory\)$/,
    ],
    [
      { SQLITE_SYNCHRONOUS: 'OFF' },
      'SQLITE_SYNCHRONOUS',
      /^Invalid configuration: SQLITE_SYNCHRONOUS must be FULL \(every commit survives a power cut\) or NORMAL \(faster; a power cut can lose the last commits\) \(got "OFF"\)$/,
    ],
  ];
  for (const [env, variable, message] of cases) {
    t.throws(() => loadConfig(env), { name: 'ConfigError', variable, message }, JSON.stringify(env));
  }
  const secret = 'pk_live_not_a_secret_key_but_private_anyway';
  try {
    loadConfig({ STRIPE_SECRET_KEY: secret });
    t.fail('a publishable key is not a secret key');
  } catch (err) {
    t.ok(err instanceof ConfigError);
    t.match((err as Error).message, /^Invalid configuration: STRIPE_SECRET_KEY must be a Stripe secret key/);
    t.notMatch((err as Error).message, secret, 'the value of a secret is never echoed');
  }
});

t.test('STRIPE_PUBLISHABLE_KEY goes with a secret key of the same mode', async (t) => {
  t.equal(loadConfig({ STRIPE_SECRET_KEY: 'sk_test_abc', STRIPE_PUBLISHABLE_KEY: 'pk_test_abc' }).STRIPE_PUBLISHABLE_KEY, 'pk_test_abc');
  t.equal(loadConfig({ STRIPE_SECRET_KEY: 'rk_live_abc', STRIPE_PUBLISHABLE_KEY: 'pk_live_abc' }).STRIPE_PUBLISHABLE_KEY, 'pk_live_abc');
  const cases: [Record<string, string>, string][] = [
    [
      { STRIPE_PUBLISHABLE_KEY: 'sk_test_abc' },
      'Invalid configuration: STRIPE_PUBLISHABLE_KEY must be a Stripe publishable key (pk_test_… or pk_live_…) (got "sk_test_abc")',
    ],
    [
      { STRIPE_PUBLISHABLE_KEY: 'pk_test_abc' },
      'Invalid configuration: STRIPE_PUBLISHABLE_KEY needs STRIPE_SECRET_KEY (the simulated gateway cannot charge cards made by Stripe.js)',
    ],
    [
      { STRIPE_SECRET_KEY: 'sk_live_abc', STRIPE_PUBLISHABLE_KEY: 'pk_test_abc' },
      'Invalid configuration: STRIPE_PUBLISHABLE_KEY is a test key but STRIPE_SECRET_KEY is a live key',
    ],
  ];
  for (const [env, message] of cases) {
    t.throws(() => loadConfig(env), { name: 'ConfigError', variable: 'STRIPE_PUBLISHABLE_KEY', message }, JSON.stringify(env));
  }
});

t.test('SQLite has every commit on disk before it is acknowledged unless SQLITE_SYNCHRONOUS=NORMAL is chosen', async (t) => {
  t.equal(loadConfig({}).SQLITE_SYNCHRONOUS, 'FULL', 'the durable setting is the default');
  const dir = mkdtempSync(join(tmpdir(), 'coinshop-synchronous-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { buildApp } = await import('../src/app.js');
  const synced = /^coinshop_sqlite_syncs_total (\d+)$/m;
  for (const setting of [undefined, 'FULL', 'NORMAL'] as const) {
    const env: Record<string, string> = {
      DATABASE_URL: join(dir, `${setting ?? 'default'}.db`),
      ...(setting ? { SQLITE_SYNCHRONOUS: setting } : {}),
    };
    const app = await buildApp({ config: loadConfig(env) });
    const created = await app.inject({ method: 'POST', url: '/stripe/create-customer', payload: { email: 'a@example.com', name: 'A' } });
    t.equal(created.statusCode, 200);
    const metrics = (await app.inject('/metrics')).body;
    if (setting === 'NORMAL') t.notMatch(metrics, synced, 'NORMAL: SQLite syncs at checkpoints only, coinshop does not');
    else
      t.ok(
        Number(synced.exec(metrics)?.[1]) >= 1,
        `SQLITE_SYNCHRONOUS=${setting ?? '(unset)'}: the write was synced before it was answered`,
      );
    await app.close();
  }
});

t.test('STRIPE_API_BASE without a key is a mistake, not a silent simulation', async (t) => {
  const config = loadConfig({ DATABASE_URL: ':memory:', STRIPE_API_BASE: 'http://127.0.0.1:12111' });
  const { buildApp } = await import('../src/app.js');
  await t.rejects(buildApp({ config }), { name: 'ConfigError', variable: 'STRIPE_API_BASE' });
});

t.test('CATALOG_FILE replaces the seed packs, and a bad file stops the start', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coinshop-catalog-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, content: string) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };
  const good = file(
    'good.json',
    JSON.stringify({
      packages: [
        { package_id: 'gems_small', name: 'Pouch of Gems', price_cents: 199, currency_amount: 20, currency: 'eur' },
        { package_id: 'gems_big', name: 'Chest of Gems', price_cents: 1999, currency_amount: 250 },
      ],
    }),
  );
  const app = await buildTestApp(t, { env: { CATALOG_FILE: good } });
  const packages = JSON.stringify({
    packages: [
      { package_id: 'gems_small', name: 'Pouch of Gems', price_cents: 199, price_dollars: 1.99, currency_amount: 20, currency: 'eur' },
      { package_id: 'gems_big', name: 'Chest of Gems', price_cents: 1999, price_dollars: 19.99, currency_amount: 250, currency: 'usd' },
    ],
  });
  // The answer is serialised once and then sent as the same bytes: the second request checks that.
  for (const time of ['first', 'second']) {
    const answer = await get(app, '/stripe/packages');
    t.equal(answer.statusCode, 200);
    t.equal(answer.headers['content-type'], 'application/json; charset=utf-8', `${time}: content type`);
    t.equal(answer.body, packages, `${time}: the exact body`);
  }
  const { user_id } = await customerWithCard(app);
  expectProblem(t, await buy(app, user_id, 'package_1'), 400, 'invalid_package', 'Invalid package ID');
  const bought = await buy(app, user_id, 'gems_small');
  t.equal(json(bought)['new_balance'], 20);
  t.match(json(await get(app, `/stripe/transactions/${user_id}`))['transactions'], [
    { package_id: 'gems_small', amount_paid: 199, currency: 'eur', currency_purchased: 20, status: 'completed' },
  ]);

  const bad: [string, string, RegExp][] = [
    ['missing.json', '', /cannot be read/],
    ['syntax.json', '{"packages": [', /not valid JSON/],
    ['empty.json', '{"packages": []}', /\/packages expected array length to be greater or equal to 1/],
    ['cheap.json', '{"packages":[{"package_id":"p","name":"P","price_cents":10,"currency_amount":1}]}', /price_cents/],
    [
      'dup.json',
      '{"packages":[{"package_id":"p","name":"P","price_cents":100,"currency_amount":1},{"package_id":"p","name":"Q","price_cents":200,"currency_amount":2}]}',
      /duplicate package_id "p"/,
    ],
    ['extra.json', '{"packages":[{"package_id":"p","name":"P","price_cents":100,"currency_amount":1,"bonus":5}]}', /packages\/0/],
  ];
  for (const [name, content, why] of bad) {
    const path = name === 'missing.json' ? join(dir, name) : file(name, content);
    t.throws(() => loadCatalog(path), { name: 'ConfigError', variable: 'CATALOG_FILE', message: why }, name);
  }
});

t.test('docs/operations.md has the configuration table of the schema (run `npm run docs:config` after changing it)', async (t) => {
  const committed = readFileSync(inSource(OPERATIONS_DOC), 'utf8');
  t.equal(withConfigTable(committed), committed);
  for (const name of Object.keys(ConfigSchema.properties)) t.match(committed, `| \`${name}\` |`, `${name} has a row`);
});
