import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { CompiledQuery, Kysely, SqliteDialect, SqliteDriver, type DatabaseConnection, type Driver, type SqliteDialectConfig } from 'kysely';
import { openGroupCommit, type OpenedSqlite, type SqliteOptions } from './sqlite-group-commit.js';
import type { Database } from './schema.js';

export type { OpenedSqlite, SqliteOptions } from './sqlite-group-commit.js';
export type { Checkpointer, GroupSync } from './sqlite-group-commit.js';

/**
 * Kysely's SQLite driver, but transactions are BEGIN IMMEDIATE: another process on the same file
 * waits for the write lock (busy_timeout) instead of failing at its first write.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config);
  }
}

/** A connection to `path` (or `:memory:`) in WAL mode where the file system allows it, and whether it is. */
export function connect(path: string): { sqlite: SQLite.Database; wal: boolean } {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const sqlite = new SQLite(path);
  const wal = sqlite.pragma('journal_mode = WAL', { simple: true }) === 'wal';
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  return { sqlite, wal };
}

/**
 * Opens a SQLite file (or `:memory:`) with the durability `options.synchronous` asks for. FULL on a
 * WAL file goes through coinshop's group-commit driver (sqlite-group-commit.ts), measured at several
 * times the purchases/s of SQLite's own FULL; everywhere else (NORMAL, where that driver measured
 * only ×1.1; `:memory:`; a file system without WAL) Kysely's SqliteDialect, with SQLite's own
 * syncing and checkpoints (docs/benchmarks.md, Decisions measured).
 */
export function openSqlite(path: string, options: SqliteOptions): OpenedSqlite {
  const { sqlite, wal } = connect(path);
  return wal && options.synchronous === 'FULL' ? openGroupCommit(sqlite, path, options) : openKysely(sqlite, options.synchronous);
}

/** Kysely's SqliteDialect over `sqlite`, SQLite syncing as `synchronous` says. */
export function openKysely(sqlite: SQLite.Database, synchronous: SqliteOptions['synchronous']): OpenedSqlite {
  sqlite.pragma(`synchronous = ${synchronous}`);
  return {
    db: new Kysely<Database>({ dialect: new ImmediateSqliteDialect({ database: sqlite }) }),
    sync: undefined,
    checkpointer: undefined,
  };
}
