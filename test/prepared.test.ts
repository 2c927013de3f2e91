import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import t, { type Test } from 'tap';
import { openDatabase } from '../src/store/database.js';
import { migrateToLatest } from '../src/store/migrations.js';
import { runPrepared } from '../src/store/prepared.js';
import type { Database } from '../src/store/schema.js';
import { Store } from '../src/store/store.js';
import { freshDatabaseUrl, freshPostgresUrl, TEST_ENGINE } from './support/database.js';

async function openStore(t: Test) {
  const { db, engine } = openDatabase(await freshDatabaseUrl(), {
    poolSize: 2,
    sqliteSynchronous: 'FULL',
    onConnectionError: () => undefined,
  });
  t.teardown(() => db.destroy());
  await migrateToLatest(db, engine);
  return new Store(db, engine);
}

t.test('a prepared query fills its parameters per call: constants stay, arguments change, on either engine', async (t) => {
  const store = await openStore(t);
  const prefix = randomUUID().slice(0, 8);
  for (const n of [1, 2, 3]) {
    await store.insertCustomer({
      user_id: `${prefix}_${n}`,
      email: `${n}@example.com`,
      name: `P ${n}`,
      stripe_customer_id: `cus_${prefix}_${n}`,
    });
  }
  // `key` is new per run so the template is made here; the fixed '@example.com' suffix is a constant parameter.
  const key = `test:${prefix}`;
  const byId = (userId: string) =>
    runPrepared(store.db, store.engine, key, { userId }, (db, a) =>
      db.selectFrom('customers').select(['user_id', 'name']).where('user_id', '=', a.userId).where('email', 'like', '%@example.com'),
    );
  t.same((await byId(`${prefix}_2`)).rows, [{ user_id: `${prefix}_2`, name: 'P 2' }]);
  t.same((await byId(`${prefix}_3`)).rows, [{ user_id: `${prefix}_3`, name: 'P 3' }], 'the second call runs with its own argument');
  t.same((await byId('nobody')).rows, []);

  const credited = await store.postJournal({
    kind: 'purchase',
    reference: `pi_${prefix}`,
    userId: `${prefix}_1`,
    transactionId: null,
    amount: 70,
    counterAccount: 'coinshop:sales',
  });
  t.equal(credited, 70);
  const debited = await store.transaction((tx) =>
    tx.postJournal({
      kind: 'spend',
      reference: `s_${prefix}`,
      userId: `${prefix}_1`,
      transactionId: null,
      amount: -50,
      counterAccount: 'coinshop:spent',
      mustNotOverdraw: true,
    }),
  );
  t.equal(debited, 20, 'the debit statement (its own template) runs inside a transaction too');
  await t.rejects(
    store.postJournal({
      kind: 'spend',
      reference: `s2_${prefix}`,
      userId: `${prefix}_1`,
      transactionId: null,
      amount: -21,
      counterAccount: 'coinshop:spent',
      mustNotOverdraw: true,
    }),
    { name: 'InsufficientBalance' },
  );
  t.equal((await store.findCustomer(`${prefix}_1`))?.currency_balance, 20);
  t.same(await store.balanceMismatches(), [], 'the ledger entries written through templates match the balances');
  t.equal(TEST_ENGINE, store.engine);
});

t.test('a query that would bake an argument in is refused when its template is made', async (t) => {
  const store = await openStore(t);
  await t.rejects(
    runPrepared(store.db, store.engine, 'test:in-sql-text', { column: 'name' }, (db, a) =>
      db
        .selectFrom('customers')
        .select('user_id')
        .where(a.column as 'name', '=', 'x'),
    ),
    /prepared query test:in-sql-text: an argument ended up in the SQL text/,
  );
  await t.rejects(
    runPrepared(store.db, store.engine, 'test:computed', { amount: 5 }, (db, a) =>
      db.selectFrom('customers').select('user_id').where('currency_balance', '>=', -a.amount),
    ),
    /prepared query test:computed: an argument was computed on/,
  );
  await t.rejects(
    runPrepared(store.db, store.engine, 'test:unused', { userId: 'u', limit: 3 }, (db, a) =>
      db.selectFrom('customers').select('user_id').where('user_id', '=', a.userId),
    ),
    /prepared query test:unused: arguments limit are not parameters/,
  );
});

t.test('the arguments given are part of the template: other columns make another statement, an undefined one is refused', async (t) => {
  const store = await openStore(t);
  const prefix = randomUUID().slice(0, 8);
  const key = `test:shape:${prefix}`;
  const insert = (row: {
    user_id: string;
    email: string;
    name: string;
    stripe_customer_id: string;
    payment_method_id?: string | undefined;
  }) =>
    runPrepared(store.db, store.engine, key, row, (db, a) =>
      db.insertInto('customers').values({ ...a, currency_balance: 0, created_at: 'now' }),
    );
  await insert({ user_id: `${prefix}_a`, email: 'a@example.com', name: 'A', stripe_customer_id: `cus_${prefix}_a` });
  await insert({
    user_id: `${prefix}_b`,
    email: 'b@example.com',
    name: 'B',
    stripe_customer_id: `cus_${prefix}_b`,
    payment_method_id: 'pm_card_visa',
  });
  t.equal((await store.findCustomer(`${prefix}_a`))?.payment_method_id, null, 'without the column: none set');
  t.equal((await store.findCustomer(`${prefix}_b`))?.payment_method_id, 'pm_card_visa', 'with it: the second shape wrote it');
  await t.rejects(
    insert({
      user_id: `${prefix}_c`,
      email: 'c@example.com',
      name: 'C',
      stripe_customer_id: `cus_${prefix}_c`,
      payment_method_id: undefined,
    }),
    new RegExp(`prepared query ${key}: argument payment_method_id is undefined`),
  );
  t.equal(await store.findCustomer(`${prefix}_c`), undefined, 'nothing written');
});

if (TEST_ENGINE === 'postgres') {
  /** A PostgreSQL store on one connection, so what the session has prepared can be read back. */
  async function openOneConnection(t: Test, preparedStatements?: boolean) {
    const { db, engine } = openDatabase(await freshPostgresUrl(), {
      poolSize: 1,
      ...(preparedStatements === undefined ? {} : { preparedStatements }),
      sqliteSynchronous: 'FULL',
      onConnectionError: () => undefined,
    });
    t.teardown(() => db.destroy());
    await migrateToLatest(db, engine);
    const store = new Store(db, engine);
    await store.insertCustomer({ user_id: 'p1', email: 'p1@example.com', name: 'P 1', stripe_customer_id: 'cus_p1' });
    const prepared = async () =>
      (
        await sql<{
          name: string;
          statement: string;
          plans: number;
        }>`select name, statement, generic_plans + custom_plans as plans from pg_prepared_statements`.execute(db)
      ).rows;
    return { db, store, prepared };
  }

  t.test('on PostgreSQL a hot statement is prepared once per connection under its own name, then only run', async (t) => {
    const { store, prepared } = await openOneConnection(t);
    t.equal((await store.findCustomer('p1'))?.name, 'P 1');
    t.equal((await store.findCustomer('p1'))?.name, 'P 1', 'the second call runs the prepared statement');
    const statements = (await prepared()).filter((row) => /from "customers" where "user_id" = \$1/.test(row.statement));
    t.equal(statements.length, 1, 'one prepared statement for the lookup');
    t.match(statements[0], { name: /^coinshop_\d+$/, plans: 2 }, 'named by coinshop, and run twice');
    await store.transaction(async (tx) => {
      await tx.lockPurchase('no-such-purchase');
      await tx.lockPurchase('no-such-purchase');
    });
    t.match(
      (await prepared()).filter((row) => /for update$/.test(row.statement)),
      [{ name: /^coinshop_\d+$/, plans: 2 }],
      "a purchase's row lock too",
    );
    t.same(
      (await prepared()).filter((row) => !row.name.startsWith('coinshop_')),
      [],
      'other statements (migrations, this query) are not left prepared',
    );
  });

  t.test('DATABASE_PREPARED_STATEMENTS=false: nothing is prepared on the connection (for a pooler that cannot carry it)', async (t) => {
    const { store, prepared } = await openOneConnection(t, false);
    t.equal((await store.findCustomer('p1'))?.name, 'P 1');
    t.same(await prepared(), []);
  });

  t.test('a migration that adds columns leaves the prepared statements that return whole rows working', async (t) => {
    const { db, store, prepared } = await openOneConnection(t);
    const before = await store.findCustomer('p1');
    await sql`alter table customers add column nickname text`.execute(db);
    t.same(await store.findCustomer('p1'), before, 'the same row, with the same columns');
    t.match(
      (await prepared()).filter((row) => /from "customers" where "user_id" = \$1/.test(row.statement)),
      [{ name: /^coinshop_\d+$/, plans: 2 }],
      'run twice as the one statement prepared before the migration',
    );
  });

  t.test('a prepared statement whose table changed shape fails once, and its connection is replaced', async (t) => {
    const { db, store } = await openOneConnection(t);
    t.equal((await store.findCustomer('p1'))?.name, 'P 1');
    // What a migration by another replica could do to a running one.
    await sql`alter table customers alter column name type text`.execute(db);
    await t.rejects(store.findCustomer('p1'), { code: '0A000', message: /cached plan must not change result type/ });
    t.equal((await store.findCustomer('p1'))?.name, 'P 1', 'the next call runs on a new connection, prepared afresh');
  });

  const backendPid = async (db: Kysely<Database>) => (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db)).rows[0]?.pid;

  t.test(
    'a connection whose prepared statement is gone from the server is replaced after one failure, not failed on for good',
    async (t) => {
      const { db, store } = await openOneConnection(t);
      t.equal((await store.findCustomer('p1'))?.name, 'P 1');
      const before = await backendPid(db);
      // node-postgres still thinks the statement is prepared on this connection; the server has dropped it.
      await sql`deallocate all`.execute(db);
      await t.rejects(store.findCustomer('p1'), { code: '26000' });
      t.equal((await store.findCustomer('p1'))?.name, 'P 1', 'the next call works');
      t.not(await backendPid(db), before, 'on a new connection');
    },
  );

  t.test('an ordinary failure of a prepared statement (a unique violation) keeps its connection and statements', async (t) => {
    const { db, store, prepared } = await openOneConnection(t);
    const insert = (userId: string) =>
      runPrepared(store.db, store.engine, 'test:insert-customer', { userId }, (db, a) =>
        db.insertInto('customers').values({
          user_id: a.userId,
          email: 'x@example.com',
          name: 'X',
          stripe_customer_id: a.userId,
          currency_balance: 0,
          created_at: 'now',
        }),
      );
    await insert('dup');
    const before = await backendPid(db);
    await t.rejects(insert('dup'), { code: '23505' });
    t.equal(await backendPid(db), before, 'the same connection');
    await insert('dup2');
    t.match(
      (await prepared()).filter((row) =>
        row.statement.startsWith('insert into "customers" ("user_id", "email", "name", "stripe_customer_id", "currency_balance"'),
      ),
      [{ name: /^coinshop_\d+$/, plans: 3 }],
      'its statement still prepared, run three times',
    );
  });
}
