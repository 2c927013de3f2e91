import { fdatasync, mkdirSync, openSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import {
  CompiledQuery,
  Kysely,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type Driver,
  type QueryResult,
} from 'kysely';
import type { Database } from './schema.js';

export interface SqliteOptions {
  /**
   * FULL: no write is acknowledged (its query's or transaction's promise resolves) until it is on
   * disk; one fsync of the WAL covers all commits made while the previous one ran (group commit),
   * off the event loop. NORMAL: commits are synced at checkpoints only (a power cut can lose the
   * last ones; a process crash cannot).
   */
  synchronous: 'FULL' | 'NORMAL';
  /** How a file is synced; fdatasync unless a test watches it. */
  syncFile?: (fd: number) => Promise<void>;
}

/** Statements kept prepared, most recent first to survive (coinshop issues a few dozen distinct ones). */
const STATEMENT_CACHE_SIZE = 256;

const fdatasyncAsync = (fd: number) =>
  new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));

/**
 * Group commit: writers say they wrote (`wrote`), then wait (`flush`) for a sync that started after
 * their write. While one sync runs, every commit made meanwhile waits for the next, which covers
 * them all, so a burst of N commits costs two syncs, not N. A failed sync is final: the kernel may
 * have dropped the pages it could not write, so no later sync can vouch for them and every later
 * flush fails too (the process must restart; PostgreSQL panics for the same reason).
 */
export class GroupSync {
  #written = 0;
  #synced = 0;
  #running: Promise<void> | undefined;
  #failed: Error | undefined;
  /** Syncs completed; with `commits`, shows how many commits each sync carried. */
  syncs = 0;
  commits = 0;

  constructor(private readonly sync: () => Promise<void>) {}

  wrote(): void {
    this.#written += 1;
    this.commits += 1;
  }

  get behind(): boolean {
    return this.#synced < this.#written || this.#failed !== undefined;
  }

  /** Resolves once everything written before the call is on disk. */
  async flush(): Promise<void> {
    const target = this.#written;
    while (this.#synced < target) {
      if (this.#failed) throw this.#failed;
      this.#running ??= this.#start();
      await this.#running;
    }
    if (this.#failed) throw this.#failed;
  }

  async #start(): Promise<void> {
    const covers = this.#written;
    try {
      await this.sync();
      this.syncs += 1;
      this.#synced = covers;
    } catch (err) {
      this.#failed = new Error(`SQLite: syncing the database to disk failed; restart the process (${String(err)})`, { cause: err });
      throw this.#failed;
    } finally {
      this.#running = undefined;
    }
  }
}

/** The one better-sqlite3 connection: statements prepared once, and told to GroupSync when a write commits. */
class Connection implements DatabaseConnection {
  readonly #statements = new Map<string, SQLite.Statement>();
  #wroteInTransaction = false;
  /** Whether the current holder of the connection committed a write (it then waits for the sync). */
  committed = false;

  constructor(
    private readonly sqlite: SQLite.Database,
    private readonly sync: GroupSync | undefined,
  ) {}

  #prepare(sql: string): SQLite.Statement {
    let statement = this.#statements.get(sql);
    if (statement) {
      // Most recently used last, so the least recently used is the first to go.
      this.#statements.delete(sql);
    } else {
      statement = this.sqlite.prepare(sql);
      if (this.#statements.size >= STATEMENT_CACHE_SIZE) this.#statements.delete(this.#statements.keys().next().value!);
    }
    this.#statements.set(sql, statement);
    return statement;
  }

  executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const statement = this.#prepare(query.sql);
    const parameters = query.parameters as unknown[];
    let result: QueryResult<R>;
    if (statement.reader) {
      result = { rows: statement.all(parameters) as R[] };
    } else {
      const { changes, lastInsertRowid } = statement.run(parameters);
      result = { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] };
    }
    if (!statement.readonly) this.#wroteInTransaction = true;
    // A write outside a transaction, or the COMMIT of one that wrote, is a commit to make durable.
    if (this.#wroteInTransaction && !this.sqlite.inTransaction) {
      this.#wroteInTransaction = false;
      this.committed = true;
      this.sync?.wrote();
    }
    return Promise.resolve(result);
  }

  rolledBack(): void {
    this.#wroteInTransaction = false;
  }

  async *streamQuery<R>(query: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    for (const row of this.sqlite.prepare(query.sql).iterate(query.parameters as unknown[])) yield { rows: [row as R] };
  }
}

/**
 * Kysely's driver for the one SQLite connection. Callers take turns in arrival order; a caller's
 * turn ends when its query or transaction does, and a caller that committed a write then waits —
 * without holding the connection — until it is on disk (FULL), so the next caller's commit joins the
 * same sync. Reads do not wait: a read may see a commit whose sync is still running (its writer has
 * not been answered yet).
 * Transactions are BEGIN IMMEDIATE: another process on the same file waits for the write lock
 * (busy_timeout) instead of failing at its first write.
 */
class SqliteDriver implements Driver {
  readonly #waiting: (() => void)[] = [];
  #busy = false;

  constructor(
    private readonly sqlite: SQLite.Database,
    private readonly connection: Connection,
    private readonly sync: GroupSync | undefined,
    private readonly onClose: () => void,
  ) {}

  async init(): Promise<void> {}

  acquireConnection(): Promise<DatabaseConnection> {
    if (!this.#busy) {
      this.#busy = true;
      return Promise.resolve(this.connection);
    }
    return new Promise((resolve) => this.#waiting.push(() => resolve(this.connection)));
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('commit'));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    this.connection.rolledBack();
    await connection.executeQuery(CompiledQuery.raw('rollback'));
  }

  async releaseConnection(): Promise<void> {
    const committed = this.connection.committed;
    this.connection.committed = false;
    const next = this.#waiting.shift();
    if (next) next();
    else this.#busy = false;
    if (committed && this.sync) await this.sync.flush();
  }

  async destroy(): Promise<void> {
    if (this.sync?.behind) await this.sync.flush().catch(() => undefined);
    this.sqlite.close();
    this.onClose();
  }
}

class CoinshopSqliteDialect implements Dialect {
  constructor(private readonly driver: SqliteDriver) {}
  createDriver(): Driver {
    return this.driver;
  }
  createQueryCompiler() {
    return new SqliteQueryCompiler();
  }
  createAdapter() {
    return new SqliteAdapter();
  }
  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
}

export interface OpenedSqlite {
  db: Kysely<Database>;
  /** Group-commit figures when FULL durability is coinshop's (a file in WAL mode); otherwise undefined. */
  sync: GroupSync | undefined;
}

/** Opens a SQLite file (or `:memory:`) in WAL mode with the durability `options.synchronous` asks for. */
export function openSqlite(path: string, options: SqliteOptions): OpenedSqlite {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const sqlite = new SQLite(path);
  const wal = sqlite.pragma('journal_mode = WAL', { simple: true }) === 'wal';
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  // FULL on a WAL file: SQLite writes each commit without syncing (NORMAL) and coinshop syncs the
  // WAL before anything is acknowledged — FULL's guarantee, one fsync per group of commits.
  // Elsewhere (`:memory:`, a file system without WAL) SQLite's own setting is used as it is.
  const ownSync = wal && options.synchronous === 'FULL';
  sqlite.pragma(options.synchronous === 'NORMAL' || ownSync ? 'synchronous = NORMAL' : 'synchronous = FULL');
  let walFile: number | undefined;
  const syncFile = options.syncFile ?? fdatasyncAsync;
  const sync = ownSync
    ? new GroupSync(() => {
        // The WAL exists once the first commit is written, which is before the first sync.
        walFile ??= openSync(`${path}-wal`, 'r');
        return syncFile(walFile);
      })
    : undefined;
  const driver = new SqliteDriver(sqlite, new Connection(sqlite, sync), sync, () => {
    if (walFile !== undefined) closeSync(walFile);
  });
  return { db: new Kysely<Database>({ dialect: new CoinshopSqliteDialect(driver) }), sync };
}
