import t from 'tap';
import { buildApp } from '../src/app.js';
import { freshDatabaseUrl } from './support/database.js';
import { buy, customerWithCard, testConfig } from './support/helper.js';
import { exitCode, spawnProject } from './support/process.js';

async function runReconcile(databaseUrl: string) {
  const run = spawnProject('src/cli/reconcile.ts', ['--older-than-seconds', '0'], { DATABASE_URL: databaseUrl });
  const code = await exitCode(run.child);
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

t.test('npm run reconcile prints its report and fails on a balance that is not its ledger', async (t) => {
  const databaseUrl = await freshDatabaseUrl({ shared: true });
  const app = await buildApp({ config: await testConfig({ DATABASE_URL: databaseUrl }) });
  const { user_id } = await customerWithCard(app);
  await buy(app, user_id, 'package_1');
  await app.close();

  const clean = await runReconcile(databaseUrl);
  t.equal(clean.code, 0, clean.stderr);
  t.match(JSON.parse(clean.stdout), { checked: 0, mismatches: [], unbalancedJournals: [] });

  // Someone edits a balance by hand: reconciliation must notice.
  const tampered = await buildApp({ config: await testConfig({ DATABASE_URL: databaseUrl }) });
  await tampered.store.db.updateTable('customers').set({ currency_balance: 5000 }).where('user_id', '=', user_id).execute();
  await tampered.close();
  const dirty = await runReconcile(databaseUrl);
  t.equal(dirty.code, 1);
  t.same((JSON.parse(dirty.stdout) as { mismatches: unknown }).mismatches, [{ user_id, balance: 5000, ledger: 100 }]);
});
