import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter } from 'prom-client';
import { openDatabase } from './database.js';
import { connectionBudget } from './postgres.js';
import { migrateToLatest } from './migrations.js';
import { Store } from './store.js';

declare module 'fastify' {
  interface FastifyInstance {
    store: Store;
  }
}

/** Opens the database, migrates it to the newest version, and closes it with the app. */
export default fp(
  async function store(
    app: FastifyInstance,
    options: { databaseUrl: string; poolSize: number; preparedStatements: boolean; sqliteSynchronous: 'FULL' | 'NORMAL' },
  ) {
    const { db, engine, sync, checkpointer } = openDatabase(options.databaseUrl, {
      poolSize: options.poolSize,
      preparedStatements: options.preparedStatements,
      sqliteSynchronous: options.sqliteSynchronous,
      onConnectionError: (err) => app.log.warn({ err }, 'database connection lost; it will be reopened when needed'),
      onCheckpointError: (err) =>
        app.log.error({ err }, 'SQLite checkpoints in the background failed; SQLite checkpoints on commit from now on'),
    });
    try {
      await migrateToLatest(db, engine);
    } catch (err) {
      await db.destroy();
      throw err;
    }
    if (engine === 'postgres') {
      // Every replica may open DATABASE_POOL_SIZE connections: say how many such replicas the server takes.
      const budget = await connectionBudget(db, options.poolSize);
      const said = { poolSize: options.poolSize, ...budget };
      if (budget.replicas < 1)
        app.log.warn(said, 'DATABASE_POOL_SIZE is more than PostgreSQL max_connections allows (less its superuser reserve)');
      else app.log.info(said, `PostgreSQL takes ${budget.replicas} replicas of DATABASE_POOL_SIZE connections each`);
    }
    // Counts the driver keeps itself, read at each scrape.
    const counted = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers: [app.metrics.registry],
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    if (sync) {
      // How many commits each fsync carries (commits ÷ syncs) and how long writers waited for it.
      counted('coinshop_sqlite_commits_total', 'SQLite commits that wrote', () => sync.commits);
      counted('coinshop_sqlite_syncs_total', 'fsyncs of the SQLite WAL, each covering every commit before it', () => sync.syncs);
      counted(
        'coinshop_sqlite_commit_wait_seconds_total',
        'Time writers waited for their commits to be on disk (÷ commits: the mean wait)',
        () => sync.waitedSeconds,
      );
    }
    if (checkpointer)
      counted('coinshop_sqlite_checkpoints_total', 'WAL checkpoints made by the background worker', () => checkpointer.checkpoints);
    const store = new Store(db, engine);
    app.decorate('store', store);
    app.addHook('onClose', () => store.close());
  },
  { name: 'store', dependencies: ['metrics'] },
);
