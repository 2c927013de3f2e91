import pg from 'pg';
import t from 'tap';
import { openDatabase } from '../src/store/database.js';
import { connectionBudget, replicasThatFit } from '../src/store/postgres.js';
import { freshPostgresUrl } from './support/database.js';

t.test('N replicas fit when N × DATABASE_POOL_SIZE stays within max_connections less the superuser reserve', async (t) => {
  t.equal(replicasThatFit({ maxConnections: 100, superuserReserved: 3 }, 10), 9, '97 connections: 9 pools of 10');
  t.equal(replicasThatFit({ maxConnections: 100, superuserReserved: 3 }, 97), 1);
  t.equal(replicasThatFit({ maxConnections: 100, superuserReserved: 3 }, 98), 0, 'one pool alone does not fit');
  t.equal(replicasThatFit({ maxConnections: 2, superuserReserved: 3 }, 1), 0);
});

t.test("the budget is read from the server's own settings", async (t) => {
  const url = await freshPostgresUrl();
  const { db } = openDatabase(url, { poolSize: 2, sqliteSynchronous: 'FULL', onConnectionError: () => undefined });
  t.teardown(() => db.destroy());
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  t.teardown(() => client.end());
  const { rows } = await client.query<{ max: string; reserved: string }>(
    "select current_setting('max_connections') as max, current_setting('superuser_reserved_connections') as reserved",
  );
  const maxConnections = Number(rows[0]?.max);
  const superuserReserved = Number(rows[0]?.reserved);
  t.same(await connectionBudget(db, 7), {
    maxConnections,
    superuserReserved,
    replicas: Math.floor((maxConnections - superuserReserved) / 7),
  });
});
