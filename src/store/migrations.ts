import { type Kysely, type Migration, type MigrationProvider, Migrator, sql } from 'kysely';

/**
 * Versioned migrations, applied in name order at start. Never edit a released one: add the next.
 * Written in Kysely's portable schema builder so the same list serves every engine.
 */
const migrations: Record<string, Migration> = {
  '0001_customers_purchases_ledger': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('customers')
        .addColumn('user_id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('email', 'varchar(254)', (c) => c.notNull())
        .addColumn('name', 'varchar(200)', (c) => c.notNull())
        .addColumn('stripe_customer_id', 'varchar(255)', (c) => c.notNull().unique())
        .addColumn('payment_method_id', 'varchar(255)')
        .addColumn('currency_balance', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('purchases')
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('transaction_id', 'varchar(64)', (c) => c.notNull().unique())
        .addColumn('user_id', 'varchar(64)', (c) => c.notNull().references('customers.user_id'))
        .addColumn('package_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('package_name', 'varchar(100)', (c) => c.notNull())
        .addColumn('amount_cents', 'bigint', (c) => c.notNull())
        .addColumn('currency', 'varchar(3)', (c) => c.notNull())
        .addColumn('coins', 'bigint', (c) => c.notNull())
        .addColumn('status', 'varchar(32)', (c) => c.notNull())
        .addColumn('payment_intent_id', 'varchar(255)', (c) => c.unique())
        .addColumn('failure_code', 'varchar(64)')
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
        .addCheckConstraint('purchases_status', sql`status in ('pending', 'requires_action', 'succeeded', 'failed')`)
        .execute();
      await db.schema.createIndex('purchases_user_history').on('purchases').columns(['user_id', 'id']).execute();

      await db.schema
        .createTable('ledger_entries')
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('user_id', 'varchar(64)', (c) => c.notNull().references('customers.user_id'))
        .addColumn('amount', 'bigint', (c) => c.notNull())
        .addColumn('reason', 'varchar(32)', (c) => c.notNull())
        .addColumn('reference', 'varchar(255)', (c) => c.notNull())
        .addColumn('transaction_id', 'varchar(64)')
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        // A PaymentIntent can be credited once, whichever path (purchase call, webhook, reconcile) gets there first.
        .addUniqueConstraint('ledger_entries_once', ['reason', 'reference'])
        .execute();
      await db.schema.createIndex('ledger_entries_user').on('ledger_entries').columns(['user_id', 'id']).execute();
    },
  },
};

const provider: MigrationProvider = { getMigrations: async () => migrations };

/** Brings the database to the newest version; throws (and the service does not start) if one fails. */
export async function migrateToLatest<DB>(db: Kysely<DB>): Promise<void> {
  const { error, results } = await new Migrator({ db, provider }).migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    const why = error instanceof Error ? error.message : String(error ?? 'unknown error');
    throw new Error(`Database migration ${failed?.migrationName ?? ''} failed: ${why}`);
  }
}
