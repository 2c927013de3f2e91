import t from 'tap';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { isDatabaseUnavailable } from '../src/store/postgres.js';
import { freshDatabaseUrl, TEST_ENGINE } from './support/database.js';
import { buy, customerWithCard, get, json, testConfig } from './support/helper.js';

t.test(`a restart loses nothing: customers, cards, balances and history live in the database (${TEST_ENGINE})`, async (t) => {
  const config = await testConfig({ DATABASE_URL: await freshDatabaseUrl({ shared: true }), DATABASE_POOL_SIZE: '2' });

  const first = await buildApp({ config });
  const { user_id } = await customerWithCard(first, 'pm_card_visa');
  t.equal((await buy(first, user_id, 'package_1')).statusCode, 200);
  t.equal((await buy(first, user_id, 'package_3')).statusCode, 200);
  const before = json(await get(first, `/stripe/customer/${user_id}`));
  const historyBefore = json(await get(first, `/stripe/transactions/${user_id}`));
  await first.close();

  const second = await buildApp({ config });
  t.teardown(() => second.close());
  t.same(json(await get(second, `/stripe/customer/${user_id}`)), before, 'the customer and balance are back');
  t.same(json(await get(second, `/stripe/transactions/${user_id}`)), historyBefore, 'the history is back');
  t.equal(before['currency_balance'], 800);

  const after = await buy(second, user_id, 'package_2');
  t.equal(after.statusCode, 200, 'the saved card still works after the restart');
  t.equal(json(after)['new_balance'], 1100);
});

t.test('a PostgreSQL DATABASE_URL that cannot be reached stops the start with a line that says so', async (t) => {
  // Port 1 on loopback: nothing listens there, so the connection is refused at once.
  const config = loadConfig({ DATABASE_URL: 'postgres://coinshop@127.0.0.1:1/coinshop' });
  await t.rejects(buildApp({ config }), { message: /^Database migration failed: .*ECONNREFUSED/ });
});

t.test('which database errors mean "unreachable, retry later" (503) and which do not', async (t) => {
  const coded = (code: string, message = 'x') => Object.assign(new Error(message), { code });
  const unreachable = [
    coded('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'),
    new AggregateError([coded('ECONNREFUSED'), coded('ECONNREFUSED')], ''),
    coded('57P01', 'terminating connection due to administrator command'),
    coded('57P03', 'the database system is starting up'),
    coded('08006', 'connection failure'),
    coded('53300', 'sorry, too many clients already'),
    new Error('Connection terminated unexpectedly'),
    new Error('timeout exceeded when trying to connect'),
  ];
  for (const error of unreachable) t.ok(isDatabaseUnavailable(error), `${error.message || String((error as { code?: string }).code)}: 503`);
  const others = [
    coded('23505', 'duplicate key value violates unique constraint'),
    coded('SQLITE_BUSY'),
    new Error('boom'),
    'not an error',
    undefined,
  ];
  for (const error of others) t.notOk(isDatabaseUnavailable(error), `${String(error instanceof Error ? error.message : error)}: not 503`);
});
