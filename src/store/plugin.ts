import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter } from 'prom-client';
import { openDatabase } from './database.js';
import { migrateToLatest } from './migrations.js';
import { Store } from './store.js';

declare module 'fastify' {
  interface FastifyInstance {
    store: Store;
  }
}

/** Opens the database, migrates it to the newest version, and closes it with the app. */
export default fp(
  async function store(app: FastifyInstance, options: { databaseUrl: string; poolSize: number; sqliteSynchronous: 'FULL' | 'NORMAL' }) {
    const { db, engine, sync, checkpointer } = openDatabase(options.databaseUrl, {
      poolSize: options.poolSize,
      sqliteSynchronous: options.sqliteSynchronous,
      onConnectionError: (err) => app.log.warn({ err }, 'database connection lost; it will be reopened when needed'),
      onCheckpointError: (err) => app.log.error({ err }, 'SQLite checkpoints in the background failed; SQLite checkpoints on commit from now on'),
    });
    try {
      await migrateToLatest(db, engine);
    } catch (err) {
      await db.destroy();
      throw err;
    }
    if (sync) {
      // How many commits each fsync carries: group commit at work (commits ÷ syncs).
      const registers = [app.metrics.registry];
      new Counter({ name: 'coinshop_sqlite_commits_total', help: 'SQLite commits that wrote', registers, collect() { this.reset(); this.inc(sync.commits); } });
      new Counter({ name: 'coinshop_sqlite_syncs_total', help: 'fsyncs of the SQLite WAL, each covering every commit before it', registers, collect() { this.reset(); this.inc(sync.syncs); } });
      new Counter({
        name: 'coinshop_sqlite_commit_wait_seconds_total',
        help: 'Time writers waited for their commits to be on disk (÷ commits: the mean wait)',
        registers,
        collect() {
          this.reset();
          this.inc(sync.waitedSeconds);
        },
      });
    }
    if (checkpointer) {
      const registers = [app.metrics.registry];
      new Counter({ name: 'coinshop_sqlite_checkpoints_total', help: 'WAL checkpoints made by the background worker', registers, collect() { this.reset(); this.inc(checkpointer.checkpoints); } });
    }
    const store = new Store(db, engine);
    app.decorate('store', store);
    app.addHook('onClose', () => store.close());
  },
  { name: 'store', dependencies: ['metrics'] },
);
