import { fdatasync, mkdirSync, openSync, closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
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
  /** Commits between two checkpoints of the WAL (CHECKPOINT_EVERY_COMMITS unless a test asks for fewer). */
  checkpointEvery?: number;
  /** Told when checkpoints in the background failed and SQLite's own (on the event loop) took over. */
  onCheckpointError?: (err: Error) => void;
}

/**
 * A purchase's commits write 10–15 pages each to the WAL: 100 commits keep it to a few MB between
 * checkpoints, near SQLite's own default (1,000 pages).
 */
export const CHECKPOINT_EVERY_COMMITS = 100;

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
  /** Time writers spent waiting for their commit to be on disk, in seconds, over all commits. */
  waitedSeconds = 0;

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
    const since = performance.now();
    try {
      while (this.#synced < target) {
        if (this.#failed) throw this.#failed;
        this.#running ??= this.#start();
        await this.#running;
      }
      if (this.#failed) throw this.#failed;
    } finally {
      this.waitedSeconds += (performance.now() - since) / 1000;
    }
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

/**
 * The worker thread's side of Checkpointer: its own connection to the file, one PASSIVE checkpoint
 * per message. With synchronous=NORMAL a checkpoint syncs the WAL before copying it and the database
 * file after, so the WAL is reused only once its pages are safely in the database file.
 */
const CHECKPOINT_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const SQLite = require(workerData.module);
const db = new SQLite(workerData.path);
db.pragma('synchronous = NORMAL');
parentPort.on('message', (message) => {
  if (message === 'close') {
    db.close();
    parentPort.close();
    return;
  }
  try {
    parentPort.postMessage({ done: db.pragma('wal_checkpoint(PASSIVE)')[0] });
  } catch (err) {
    parentPort.postMessage({ error: String(err) });
  }
});
`;

const sqliteModule = createRequire(import.meta.url).resolve('better-sqlite3');

/**
 * Checkpoints off the event loop. SQLite's own checkpoint runs inside the commit that crosses its
 * threshold: copying the WAL into the database file and an fsync, on the event loop, several
 * milliseconds every few hundred commits. Instead the connection's auto-checkpoint is off and,
 * every `every` commits, a worker thread checkpoints on a connection of its own: first while
 * commits go on (the bulk of the copying and the fsync), then once more with this process's
 * connection held for the moment it takes to copy what was written meanwhile, so the WAL is fully
 * copied and the next commit starts it over from the beginning (it does not grow). Should the
 * worker fail, SQLite's own checkpoints are switched back on.
 */
export class Checkpointer {
  #worker: Worker | undefined;
  #reply: ((outcome: { done?: unknown; error?: string }) => void) | undefined;
  #running: Promise<void> | undefined;
  #commits = 0;
  #stopped = false;
  /** Checkpoints completed. */
  checkpoints = 0;

  constructor(
    private readonly path: string,
    private readonly every: number,
    /** Runs `fn` while no query or transaction of this process holds the connection. */
    private readonly exclusive: (fn: () => Promise<void>) => Promise<void>,
    /** Switches SQLite's own checkpoints back on, once the worker cannot do them. */
    private readonly fallBack: (err: Error) => void,
  ) {}

  committed(): void {
    // Started with the first write, so it is ready by the first checkpoint.
    if (!this.#stopped) this.#worker ??= this.#start();
    this.#commits += 1;
    if (this.#commits < this.every || this.#running || this.#stopped) return;
    this.#commits = 0;
    this.#running = this.#checkpoint().finally(() => (this.#running = undefined));
  }

  async #checkpoint(): Promise<void> {
    try {
      await this.#ask();
      await this.exclusive(() => this.#ask());
      this.checkpoints += 1;
    } catch (err) {
      this.#stop(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #ask(): Promise<void> {
    const worker = (this.#worker ??= this.#start());
    return new Promise((resolve, reject) => {
      this.#reply = (outcome) => {
        this.#reply = undefined;
        if (outcome.error !== undefined) reject(new Error(`SQLite checkpoint failed: ${outcome.error}`));
        else resolve();
      };
      worker.postMessage('checkpoint');
    });
  }

  #start(): Worker {
    const worker = new Worker(CHECKPOINT_WORKER, { eval: true, workerData: { module: sqliteModule, path: this.path }, execArgv: [] });
    worker.unref();
    worker.on('message', (outcome: { done?: unknown; error?: string }) => this.#reply?.(outcome));
    worker.on('error', (err) => this.#reply?.({ error: String(err) }));
    worker.on('exit', (code) => {
      if (this.#worker === worker && !this.#stopped) this.#stop(new Error(`SQLite checkpoint worker exited (${code})`));
      this.#reply?.({ error: `worker exited (${code})` });
    });
    return worker;
  }

  #stop(err: Error): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.fallBack(err);
    void this.#worker?.terminate();
  }

  /** Settles once no checkpoint is under way. */
  get idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  /** Waits for a checkpoint under way and closes the worker's connection. */
  async close(): Promise<void> {
    await this.idle;
    const worker = this.#worker;
    if (!worker || this.#stopped) return;
    this.#stopped = true;
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    // Unreferenced, the worker would not keep the process alive until it has closed its connection.
    worker.ref();
    worker.postMessage('close');
    await exited;
  }

  /** For tests: the worker, to see it fail. */
  get worker(): Worker | undefined {
    return this.#worker;
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

  /** Counts commits toward the next checkpoint, when coinshop makes them. */
  checkpointer: Checkpointer | undefined;

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
      this.checkpointer?.committed();
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
    this.#handOn();
    if (committed && this.sync) await this.sync.flush();
  }

  #handOn(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#busy = false;
  }

  /** Runs `fn` holding the connection (in turn, like any caller), without using it. */
  async exclusive(fn: () => Promise<void>): Promise<void> {
    await this.acquireConnection();
    try {
      await fn();
    } finally {
      this.#handOn();
    }
  }

  async destroy(): Promise<void> {
    await this.connection.checkpointer?.close();
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
  /** Checkpoints in a worker thread, for a file in WAL mode; otherwise undefined. */
  checkpointer: Checkpointer | undefined;
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
  const connection = new Connection(sqlite, sync);
  const driver = new SqliteDriver(sqlite, connection, sync, () => {
    if (walFile !== undefined) closeSync(walFile);
  });
  let checkpointer: Checkpointer | undefined;
  if (wal) {
    const autoCheckpoint = sqlite.pragma('wal_autocheckpoint', { simple: true });
    sqlite.pragma('wal_autocheckpoint = 0');
    checkpointer = new Checkpointer(path, options.checkpointEvery ?? CHECKPOINT_EVERY_COMMITS, (fn) => driver.exclusive(fn), (err) => {
      sqlite.pragma(`wal_autocheckpoint = ${Number(autoCheckpoint)}`);
      options.onCheckpointError?.(err);
    });
    connection.checkpointer = checkpointer;
  }
  return { db: new Kysely<Database>({ dialect: new CoinshopSqliteDialect(driver) }), sync, checkpointer };
}
