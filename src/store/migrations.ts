import { type ColumnDefinitionBuilder, type Kysely, type Migration, type MigrationProvider, Migrator, sql } from 'kysely';
import type { Engine } from './engine.js';

/**
 * Versioned migrations, applied in name order at start. Never edit a released one: add the next.
 * Written in Kysely's portable schema builder so the same list serves every engine; the one thing
 * engines spell differently, a generated row id, is `rowId` (SQLite's rowid alias must be exactly
 * `integer primary key`; PostgreSQL gets a 64-bit identity column).
 */
const migrations = (engine: Engine): Record<string, Migration> => {
  const rowIdType = engine === 'postgres' ? 'bigint' : 'integer';
  const rowId = (c: ColumnDefinitionBuilder) =>
    engine === 'postgres' ? c.primaryKey().generatedByDefaultAsIdentity() : c.primaryKey().autoIncrement();
  return {
    '0001_initial': {
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
          .addColumn('id', rowIdType, rowId)
          .addColumn('transaction_id', 'varchar(64)', (c) => c.notNull().unique())
          .addColumn('user_id', 'varchar(64)', (c) => c.notNull().references('customers.user_id'))
          .addColumn('package_id', 'varchar(64)', (c) => c.notNull())
          .addColumn('package_name', 'varchar(100)', (c) => c.notNull())
          .addColumn('amount_cents', 'bigint', (c) => c.notNull())
          .addColumn('currency', 'varchar(3)', (c) => c.notNull())
          .addColumn('coins', 'bigint', (c) => c.notNull())
          .addColumn('payment_method_id', 'varchar(255)', (c) => c.notNull())
          .addColumn('status', 'varchar(32)', (c) => c.notNull())
          .addColumn('payment_intent_id', 'varchar(255)', (c) => c.unique())
          .addColumn('failure_code', 'varchar(64)')
          .addColumn('refunded_cents', 'bigint', (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
          .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
          .addCheckConstraint(
            'purchases_status',
            sql`status in ('pending', 'requires_action', 'failed', 'succeeded', 'partially_refunded', 'refunded', 'disputed', 'dispute_won', 'dispute_lost')`,
          )
          .execute();
        await db.schema.createIndex('purchases_user_history').on('purchases').columns(['user_id', 'id']).execute();
        await db.schema.createIndex('purchases_unfinished').on('purchases').columns(['status', 'created_at']).execute();

        await db.schema
          .createTable('ledger_journals')
          .addColumn('id', rowIdType, rowId)
          .addColumn('kind', 'varchar(32)', (c) => c.notNull())
          .addColumn('reference', 'varchar(255)', (c) => c.notNull())
          .addColumn('user_id', 'varchar(64)', (c) => c.notNull().references('customers.user_id'))
          .addColumn('transaction_id', 'varchar(64)')
          .addColumn('memo', 'varchar(200)')
          .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
          // Coins move once per cause: one credit per PaymentIntent, one clawback per refund state, …
          .addUniqueConstraint('ledger_journals_once', ['kind', 'reference'])
          .execute();
        await db.schema.createIndex('ledger_journals_transaction').on('ledger_journals').column('transaction_id').execute();

        await db.schema
          .createTable('ledger_entries')
          .addColumn('id', rowIdType, rowId)
          .addColumn('journal_id', rowIdType, (c) => c.notNull().references('ledger_journals.id'))
          .addColumn('account', 'varchar(100)', (c) => c.notNull())
          .addColumn('amount', 'bigint', (c) => c.notNull())
          .addColumn('balance_after', 'bigint')
          .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('ledger_entries_account').on('ledger_entries').columns(['account', 'id']).execute();

        await db.schema
          .createTable('idempotency_keys')
          .addColumn('scope', 'varchar(100)', (c) => c.notNull())
          .addColumn('key', 'varchar(255)', (c) => c.notNull())
          .addColumn('request_hash', 'varchar(64)', (c) => c.notNull())
          .addColumn('resource_id', 'varchar(64)', (c) => c.notNull())
          .addColumn('state', 'varchar(16)', (c) => c.notNull())
          .addColumn('locked_at', 'varchar(32)')
          .addColumn('response_status', 'integer')
          .addColumn('response_type', 'varchar(100)')
          .addColumn('response_body', 'text')
          .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
          .addPrimaryKeyConstraint('idempotency_keys_pk', ['scope', 'key'])
          .execute();
        await db.schema.createIndex('idempotency_keys_age').on('idempotency_keys').column('created_at').execute();

        await db.schema
          .createTable('webhook_events')
          .addColumn('event_id', 'varchar(255)', (c) => c.primaryKey())
          .addColumn('type', 'varchar(100)', (c) => c.notNull())
          .addColumn('received_at', 'varchar(32)', (c) => c.notNull())
          .execute();
      },
    },
    '0002_refunds': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('refunds')
          .addColumn('id', rowIdType, rowId)
          .addColumn('refund_key', 'varchar(64)', (c) => c.unique())
          .addColumn('transaction_id', 'varchar(64)', (c) => c.notNull().references('purchases.transaction_id'))
          .addColumn('requested_cents', 'bigint')
          .addColumn('stripe_refund_id', 'varchar(255)', (c) => c.unique())
          .addColumn('amount_cents', 'bigint')
          .addColumn('status', 'varchar(16)', (c) => c.notNull())
          .addColumn('failure_reason', 'varchar(64)')
          .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
          .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
          .addCheckConstraint(
            'refunds_status',
            sql`status in ('requested', 'rejected', 'pending', 'requires_action', 'succeeded', 'failed', 'canceled')`,
          )
          .execute();
        await db.schema.createIndex('refunds_purchase').on('refunds').column('transaction_id').execute();
        await db.schema.createIndex('refunds_unfinished').on('refunds').columns(['status', 'created_at']).execute();
        // Until now refunded_cents was the largest amount_refunded Stripe reported: that is what it was.
        await db.schema
          .alterTable('purchases')
          .addColumn('stripe_refunded_cents', 'bigint', (c) => c.notNull().defaultTo(0))
          .execute();
        await sql`update purchases set stripe_refunded_cents = refunded_cents`.execute(db);
      },
    },
    // Each dispute object on its own (a charge can meet several). Independent of 0002.
    '0003_disputes': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('disputes')
          .addColumn('dispute_id', 'varchar(255)', (c) => c.primaryKey())
          .addColumn('transaction_id', 'varchar(64)', (c) => c.notNull().references('purchases.transaction_id'))
          .addColumn('status', 'varchar(32)', (c) => c.notNull())
          .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
          .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
          .addCheckConstraint(
            'disputes_status',
            sql`status in ('warning_needs_response', 'warning_under_review', 'warning_closed', 'needs_response', 'under_review', 'won', 'lost')`,
          )
          .execute();
        await db.schema.createIndex('disputes_transaction').on('disputes').column('transaction_id').execute();
        // Disputes settled before this table existed: their journals name them, their purchase's
        // status tells where they stood (an open or won inquiry was then taken for a chargeback).
        await sql`
          insert into disputes (dispute_id, transaction_id, status, created_at, updated_at)
          select distinct j.reference, p.transaction_id,
            case p.status when 'disputed' then 'needs_response' when 'dispute_won' then 'won' else 'lost' end,
            p.updated_at, p.updated_at
          from purchases p
          join ledger_journals j on j.transaction_id = p.transaction_id and j.kind in ('dispute', 'dispute_reversal')
          where p.status in ('disputed', 'dispute_won', 'dispute_lost')
        `.execute(db);
      },
    },
    '0004_notifications': {
      async up(db: Kysely<unknown>) {
        // Each player's notifications are numbered 1, 2, 3… (user_seq) from this counter, taken in the
        // transaction that writes the notification (the player's row is locked until it commits).
        await db.schema
          .alterTable('customers')
          .addColumn('notification_seq', 'bigint', (c) => c.notNull().defaultTo(0))
          .execute();
        await db.schema
          .createTable('notifications')
          .addColumn('seq', rowIdType, rowId)
          .addColumn('id', 'varchar(40)', (c) => c.notNull().unique())
          .addColumn('type', 'varchar(64)', (c) => c.notNull())
          .addColumn('user_id', 'varchar(64)', (c) => c.notNull().references('customers.user_id'))
          .addColumn('user_seq', 'bigint', (c) => c.notNull())
          .addColumn('data', 'text', (c) => c.notNull())
          .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
          .addColumn('status', 'varchar(16)', (c) => c.notNull())
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('last_attempt_at', 'varchar(32)')
          .addColumn('last_error', 'varchar(500)')
          .addColumn('next_attempt_at', 'varchar(32)', (c) => c.notNull())
          // When the current series of attempts began (creation, or an operator's redelivery): the
          // retry schedule and its 3-day limit count from here.
          .addColumn('retry_from', 'varchar(32)', (c) => c.notNull())
          // A replica sending it holds it until then; a lease that ran out (the process died) is taken over.
          .addColumn('lease_until', 'varchar(32)')
          .addColumn('delivered_at', 'varchar(32)')
          .addUniqueConstraint('notifications_user_seq', ['user_id', 'user_seq'])
          .addCheckConstraint('notifications_status', sql`status in ('pending', 'delivered', 'failed')`)
          .execute();
        await db.schema.createIndex('notifications_due').on('notifications').columns(['status', 'next_attempt_at']).execute();
        await db.schema.createIndex('notifications_type').on('notifications').columns(['type', 'seq']).execute();
      },
    },
    // A purchase paid on Stripe Checkout remembers its Checkout Session (a card purchase has none).
    '0005_checkout_sessions': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('purchases').addColumn('checkout_session_id', 'varchar(255)').execute();
        await db.schema.createIndex('purchases_checkout_session').unique().on('purchases').column('checkout_session_id').execute();
      },
    },
  };
};

/**
 * Brings the database to the newest version; throws (and the service does not start) if one fails,
 * or if the database cannot be reached.
 * Safe when several replicas start at once: on PostgreSQL Kysely's Migrator holds an advisory lock
 * while it migrates, so one replica runs the migrations and the others wait, then find nothing to do.
 */
export async function migrateToLatest<DB>(db: Kysely<DB>, engine: Engine): Promise<void> {
  const provider: MigrationProvider = { getMigrations: async () => migrations(engine) };
  let outcome: Awaited<ReturnType<Migrator['migrateToLatest']>>;
  try {
    // Kysely's bookkeeping tables go in the schema coinshop's tables go in (the first on the
    // search_path). Left unset, Kysely would take another schema's bookkeeping for ours.
    const schema =
      engine === 'postgres' ? (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0]?.schema : undefined;
    outcome = await new Migrator({ db, provider, ...(schema ? { migrationTableSchema: schema } : {}) }).migrateToLatest();
  } catch (err) {
    outcome = { error: err };
  }
  const failed = outcome.results?.find((r) => r.status === 'Error');
  if (outcome.error || failed) {
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- whatever was thrown, as String() shows it
    const why = outcome.error instanceof Error ? outcome.error.message : String(outcome.error ?? 'unknown error');
    throw new Error(`Database migration ${failed ? `${failed.migrationName} ` : ''}failed: ${why}`);
  }
}
