/**
 * The "kysely" arm of `npm run bench:ab -- sqlite`: the same `openSqlite` as src/store/sqlite.ts, but
 * Kysely's own SqliteDialect over better-sqlite3, with SQLite's own durability: at FULL every COMMIT
 * fsyncs the WAL before it returns (on the event loop); at NORMAL the WAL is synced at SQLite's own
 * checkpoints (every 1,000 pages, run inside a commit).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import type { Database } from '../../src/store/schema.js';
import type { OpenedSqlite, SqliteOptions } from '../../src/store/sqlite.js';

export function openSqlite(path: string, options: SqliteOptions): OpenedSqlite {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const sqlite = new SQLite(path);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma(`synchronous = ${options.synchronous}`);
  return { db: new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) }), sync: undefined, checkpointer: undefined };
}
