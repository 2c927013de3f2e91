import type { Kysely } from 'kysely';
import { openPostgres } from './postgres.js';

/** Whether an error says the database cannot be reached (the error handler answers 503). */
export { isDatabaseUnavailable } from './postgres.js';
import { openSqlite, type Checkpointer, type GroupSync, type SqliteOptions } from './sqlite.js';
import type { Engine } from './engine.js';
import type { Database } from './schema.js';

export type { Engine } from './engine.js';

export interface OpenedDatabase {
  db: Kysely<Database>;
  engine: Engine;
  /** SQLite with coinshop's group commit: its commit and sync counts. */
  sync?: GroupSync | undefined;
  /** SQLite file: the checkpoints made off the event loop. */
  checkpointer?: Checkpointer | undefined;
}

export interface DatabaseOptions {
  /** PostgreSQL: connections kept open at most. */
  poolSize: number;
  /** PostgreSQL: run the hot statements as named prepared statements (default); false for a pooler that cannot carry them. */
  preparedStatements?: boolean;
  /** SQLite: FULL has every commit on disk before it is acknowledged; NORMAL syncs at checkpoints only (see SQLITE_SYNCHRONOUS). */
  sqliteSynchronous: SqliteOptions['synchronous'];
  /** SQLite: how the WAL is synced (tests watch it); fdatasync by default. */
  syncFile?: SqliteOptions['syncFile'];
  /** Told about a connection that broke while idle (the pool drops it and opens a new one when needed). */
  onConnectionError: (err: Error) => void;
  /** SQLite: told when background checkpoints failed and SQLite's own took over. */
  onCheckpointError?: SqliteOptions['onCheckpointError'];
  /** SQLite: commits between checkpoints (tests ask for fewer). */
  checkpointEvery?: SqliteOptions['checkpointEvery'];
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
    : {
        engine: 'sqlite',
        ...openSqlite(sqlitePath(databaseUrl), {
          synchronous: options.sqliteSynchronous,
          syncFile: options.syncFile,
          onCheckpointError: options.onCheckpointError,
          checkpointEvery: options.checkpointEvery,
        }),
      };
}
