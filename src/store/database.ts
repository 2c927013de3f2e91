import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { openPostgres } from './postgres.js';
import type { Database } from './schema.js';

export type Engine = 'sqlite' | 'postgres';

export interface OpenedDatabase {
  db: Kysely<Database>;
  engine: Engine;
}

export interface DatabaseOptions {
  /** PostgreSQL: connections kept open at most. */
  poolSize: number;
  /** SQLite: FULL syncs every commit to disk; NORMAL only at checkpoints (see SQLITE_SYNCHRONOUS). */
  sqliteSynchronous: 'FULL' | 'NORMAL';
  /** Told about a connection that broke while idle (the pool drops it and opens a new one when needed). */
  onConnectionError: (err: Error) => void;
}

const POSTGRES_URL = /^postgres(ql)?:\/\//;

export const engineOf = (databaseUrl: string): Engine => (POSTGRES_URL.test(databaseUrl) ? 'postgres' : 'sqlite');

/** The SQLite file (or `:memory:`) a DATABASE_URL names. */
export function sqlitePath(databaseUrl: string): string {
  return databaseUrl.replace(/^(sqlite|file):(\/\/)?/, '');
}

/** Opens the database a DATABASE_URL names: PostgreSQL for `postgres://…`, otherwise a SQLite file. */
export function openDatabase(databaseUrl: string, options: DatabaseOptions): OpenedDatabase {
  return engineOf(databaseUrl) === 'postgres'
    ? { engine: 'postgres', db: openPostgres(databaseUrl, options) }
    : { engine: 'sqlite', db: openSqlite(sqlitePath(databaseUrl), options.sqliteSynchronous) };
}

function openSqlite(path: string, synchronous: DatabaseOptions['sqliteSynchronous']): Kysely<Database> {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const sqlite = new SQLite(path);
  sqlite.pragma('journal_mode = WAL');
  // Money: by default a committed credit survives a power cut, not only a process crash. NORMAL
  // (opt-in) keeps the crash guarantee but not the power-cut one; it does not fsync each commit.
  sqlite.pragma(synchronous === 'NORMAL' ? 'synchronous = NORMAL' : 'synchronous = FULL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
}
