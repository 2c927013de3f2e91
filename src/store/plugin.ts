import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
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
  async function store(app: FastifyInstance, options: { databaseUrl: string }) {
    const db = openDatabase(options.databaseUrl);
    try {
      await migrateToLatest(db);
    } catch (err) {
      await db.destroy();
      throw err;
    }
    const store = new Store(db);
    app.decorate('store', store);
    app.addHook('onClose', () => store.close());
  },
  { name: 'store' },
);
