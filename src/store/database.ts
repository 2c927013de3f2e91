import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { ConfigError } from '../config.js';
import type { Database } from './schema.js';

/** The SQLite file (or `:memory:`) a DATABASE_URL names. */
export function sqlitePath(databaseUrl: string): string {
  if (/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError(
      'DATABASE_URL',
      'Invalid configuration: DATABASE_URL is a PostgreSQL URL, and this version stores data in SQLite only ' +
        '(use a file path, sqlite:PATH or :memory:)',
    );
  }
  return databaseUrl.replace(/^(sqlite|file):(\/\/)?/, '');
}

/** Opens the database a DATABASE_URL names, creating the SQLite file and its folder if needed. */
export function openDatabase(databaseUrl: string): Kysely<Database> {
  const path = sqlitePath(databaseUrl);
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const sqlite = new SQLite(path);
  sqlite.pragma('journal_mode = WAL');
  // Money: a committed credit survives a power cut, not only a process crash.
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
}
