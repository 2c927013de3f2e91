import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { buy, customerWithCard, get, json } from './support/helper.js';

t.test('a restart loses nothing: customers, cards, balances and history live in the database file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coinshop-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = loadConfig({ DATABASE_URL: `sqlite:${join(dir, 'nested', 'coinshop.db')}` });

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

t.test('a DATABASE_URL naming PostgreSQL is refused with a line that names the variable', async (t) => {
  const config = loadConfig({ DATABASE_URL: 'postgres://localhost/coinshop' });
  await t.rejects(buildApp({ config }), { name: 'ConfigError', variable: 'DATABASE_URL' });
});
