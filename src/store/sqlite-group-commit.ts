/**
 * coinshop's own Kysely driver for SQLite at FULL durability on a WAL file: group commit (one
 * fdatasync of the WAL, in a thread of its own, covers every commit made before it; no writer is
 * answered before its commit is on disk), checkpoints in a worker thread, statements prepared once.
 * Measured at 4–8× the purchases/s of Kysely's SqliteDialect with SQLite's own FULL
 * (docs/benchmarks.md, Decisions measured); src/store/sqlite.ts uses it there and nowhere else.
 * It depends on better-sqlite3 and Kysely only; test/sqlite-durability.test.ts tests it.
 */
import { closeSync, fdatasync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
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
   * disk; one fsync of the WAL covers every commit made before it (group commit; see GroupSync).
   * NORMAL: commits are synced at checkpoints only (a power cut can lose the last ones; a process
   * crash cannot).
   */
  synchronous: 'FULL' | 'NORMAL';
  /**
   * How the WAL is synced when a test watches it: then one sync at a time in the thread pool, through
   * this. Otherwise a SyncThread syncs it.
   */
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

const fdatasyncAsync = (fd: number) => new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));

/**
 * The sync thread: `fdatasync`s the file when asked. shared[0]: commits the main thread asked to
 * have synced (raised, with a wake-up, at the first commit of an event-loop turn and at its end);
 * shared[4]: commits written (raised at every commit, no wake-up), which a sync covers as far as it
 * has got when the sync starts; shared[1]: commits synced; shared[2]: 1 while the main thread has
 * writers waiting (then each sync is also posted, to wake its event loop); shared[3]: syncs made. A
 * negative shared[0] stops the thread. A failed sync is posted and ends the thread.
 */
const SYNC_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { fdatasyncSync } = require('node:fs');
const shared = new BigInt64Array(workerData.shared);
let synced = Atomics.load(shared, 1);
for (;;) {
  const asked = Atomics.load(shared, 0);
  if (asked < 0n) break;
  if (asked <= synced) {
    Atomics.wait(shared, 0, asked);
    continue;
  }
  const covers = Atomics.load(shared, 4);
  try {
    fdatasyncSync(workerData.fd);
  } catch (err) {
    parentPort.postMessage({ error: err.message });
    break;
  }
  synced = covers;
  Atomics.store(shared, 1, synced);
  Atomics.add(shared, 3, 1n);
  if (Atomics.load(shared, 2) === 1n) parentPort.postMessage(null);
}
`;

/**
 * A thread that syncs a file without the event loop: asked through shared memory (Atomics), it
 * syncs at once, and whether a sync is done is read from shared memory. A sync asked at a turn's
 * first commit is usually done by the turn's end, so its writers go on without waiting for the loop
 * to come round again, and the loop never waits for the disk.
 */
export class SyncThread {
  readonly #shared = new BigInt64Array(new SharedArrayBuffer(5 * 8));
  readonly #worker: Worker;
  readonly #exited: Promise<void>;

  /**
   * `onProgress`: a sync finished while writers wait; or the thread stopped, because a sync failed
   * (`failed`: the disk) or because it died (`died`: the thread, not the disk).
   */
  constructor(fd: number, onProgress: (stopped?: { failed: Error } | { died: Error }) => void) {
    this.#worker = new Worker(SYNC_WORKER, { eval: true, workerData: { fd, shared: this.#shared.buffer }, execArgv: [] });
    let stopped = false;
    const stop = (why: { failed: Error } | { died: Error }) => {
      if (stopped) return;
      stopped = true;
      onProgress(why);
    };
    this.#worker.on('message', (message: { error: string } | null) =>
      message ? stop({ failed: new Error(message.error) }) : onProgress(),
    );
    this.#worker.on('error', (err) => stop({ died: err }));
    this.#exited = new Promise((resolve) =>
      this.#worker.once('exit', (code) => {
        if (Atomics.load(this.#shared, 0) >= 0n) stop({ died: new Error(`the sync thread exited (${code})`) });
        resolve();
      }),
    );
    // After the listeners (adding a 'message' listener holds the process again): the thread keeps
    // the process alive only while writers wait (see `waiting`).
    this.#worker.unref();
  }

  /** Commits written so far (the next sync covers them). */
  written(commits: number): void {
    Atomics.store(this.#shared, 4, BigInt(commits));
  }

  /** Asks for a sync of every commit written so far: wakes the thread if it sleeps. */
  ask(): void {
    Atomics.store(this.#shared, 0, Atomics.load(this.#shared, 4));
    Atomics.notify(this.#shared, 0);
  }

  get synced(): number {
    return Number(Atomics.load(this.#shared, 1));
  }

  get syncs(): number {
    return Number(Atomics.load(this.#shared, 3));
  }

  /** Whether writers wait (so each sync is also posted, to wake the event loop). */
  set waiting(waiting: boolean) {
    Atomics.store(this.#shared, 2, waiting ? 1n : 0n);
    // While writers wait for its message the process is kept alive, as a sync in the thread pool
    // would keep it (a CLI with nothing else to do must not end before its commit is synced).
    if (waiting) this.#keepAlive ??= setInterval(() => undefined, 60_000);
    else if (this.#keepAlive) {
      clearInterval(this.#keepAlive);
      this.#keepAlive = undefined;
    }
  }
  #keepAlive: NodeJS.Timeout | undefined;

  /** For tests: the thread dies as a crash would end it. */
  kill(): Promise<number> {
    return this.#worker.terminate();
  }

  async close(): Promise<void> {
    this.waiting = false;
    Atomics.store(this.#shared, 0, -1n);
    Atomics.notify(this.#shared, 0);
    // Held until it has exited, or a process with nothing else to do would end first.
    this.#worker.ref();
    await this.#exited;
  }
}

/**
 * Group commit: writers say they wrote (`wrote`), then wait (`flush`) for a sync that started after
 * their write. A failed sync is final: the kernel may have dropped the pages it could not write, so
 * no later sync can vouch for them and every later flush fails too (the process must restart;
 * PostgreSQL panics for the same reason).
 *
 * With a SyncThread (`thread`), the first commit of an event-loop turn asks the thread for a sync
 * at once, covering every commit written by the time it starts; at the end of the turn the writers
 * whose commits it covers go on in that same turn (the sync, a fraction of a millisecond, is usually
 * done by then), and for the others one more sync is asked, whose message wakes them: at most two
 * syncs a turn, and the loop never waits for the disk. Should the thread die (not a failed sync:
 * that is final), syncs go to the thread pool.
 *
 * In the thread pool (`later`; also where tests watch syncs), one sync runs at a time; every commit
 * made meanwhile waits for the next, which covers them all, so a burst of N commits costs two syncs.
 */
export class GroupSync {
  #written = 0;
  #synced = 0;
  #running: Promise<void> | undefined;
  #failed: Error | undefined;
  #makeThread: ((onProgress: ConstructorParameters<typeof SyncThread>[1]) => SyncThread) | undefined;
  #thread: SyncThread | undefined;
  /** Writers waiting for the sync thread, oldest (lowest target) first. */
  #waiters: { target: number; resolve: () => void; reject: (err: Error) => void }[] = [];
  #turnEndScheduled = false;
  /** Syncs made by the thread pool, and by sync threads no longer running. */
  #syncsBefore = 0;
  commits = 0;
  /** Time writers spent waiting for their commit to be on disk, in seconds, over all commits. */
  waitedSeconds = 0;

  /** `thread`: makes the SyncThread, at the first commit (the file to sync exists by then). */
  constructor(
    private readonly later: () => Promise<void>,
    thread?: (onProgress: ConstructorParameters<typeof SyncThread>[1]) => SyncThread,
  ) {
    this.#makeThread = thread;
  }

  /** Syncs completed; with `commits`, shows how many commits each sync carried. */
  get syncs(): number {
    return this.#syncsBefore + (this.#thread?.syncs ?? 0);
  }

  /** The sync thread, while there is one. */
  get thread(): SyncThread | undefined {
    return this.#thread;
  }

  wrote(): void {
    this.#written += 1;
    this.commits += 1;
    const makeThread = this.#makeThread;
    if (makeThread) {
      this.#makeThread = undefined;
      try {
        this.#thread = makeThread((stopped) => (stopped ? this.#threadStopped(stopped) : this.#wakeWriters()));
      } catch {
        // No thread (out of file descriptors, say): the commit is made, so it must not fail here;
        // its sync goes to the thread pool, whose failure (if it is the disk) its flush reports.
      }
    }
    const thread = this.#thread;
    if (!thread) return;
    thread.written(this.#written);
    // The turn's first commit starts a sync at once; the rest of the turn's wait for its end.
    if (!this.#turnEndScheduled) {
      this.#turnEndScheduled = true;
      thread.ask();
      setImmediate(() => this.#turnEnded());
    }
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
        if (this.#thread) await this.#waitForThread(this.#thread, target);
        else await (this.#running ??= this.#syncInPool());
      }
      if (this.#failed) throw this.#failed;
    } finally {
      this.waitedSeconds += (performance.now() - since) / 1000;
    }
  }

  #waitForThread(thread: SyncThread, target: number): Promise<void> {
    const waiting = new Promise<void>((resolve, reject) => {
      this.#waiters.push({ target, resolve, reject });
      thread.waiting = true;
    });
    // Outside a turn that committed (its end asks for the sync), ask now; and the sync may be done.
    if (!this.#turnEndScheduled) thread.ask();
    this.#wakeWriters();
    return waiting;
  }

  /**
   * At the end of a turn that committed: its writers whose commits are synced go on now; for the
   * others one more sync is asked, covering every commit of the turn, and its message wakes them.
   */
  #turnEnded(): void {
    this.#turnEndScheduled = false;
    this.#wakeWriters();
    if (this.#waiters.length > 0) this.#thread?.ask();
  }

  /** Lets go every writer whose commits the thread's syncs cover. */
  #wakeWriters(): void {
    const thread = this.#thread;
    if (!thread) return;
    for (;;) {
      this.#synced = Math.max(this.#synced, thread.synced);
      while (this.#waiters.length > 0 && this.#waiters[0]!.target <= this.#synced) this.#waiters.shift()!.resolve();
      thread.waiting = this.#waiters.length > 0;
      // A sync that finished after the read above but before the flag was set posts nothing: look again.
      if (this.#waiters.length === 0 || thread.synced <= this.#synced) return;
    }
  }

  #threadStopped(stopped: { failed: Error } | { died: Error }): void {
    this.#wakeWriters();
    this.#retireThread();
    const waiters = this.#waiters.splice(0);
    if ('failed' in stopped) {
      const failed = this.#diskFailed(stopped.failed);
      for (const waiter of waiters) waiter.reject(failed);
    } else {
      // The thread is gone, not the disk: the writers still waiting (and all later ones) sync through the thread pool.
      for (const waiter of waiters) waiter.resolve();
    }
  }

  #retireThread(): void {
    const thread = this.#thread;
    if (thread) thread.waiting = false;
    this.#syncsBefore += thread?.syncs ?? 0;
    this.#thread = undefined;
    this.#makeThread = undefined;
  }

  /** A failed sync: from now on every flush fails with this (the first failure's) error. */
  #diskFailed(cause: unknown): Error {
    this.#failed ??= new Error(`SQLite: syncing the database to disk failed; restart the process (${String(cause)})`, { cause });
    return this.#failed;
  }

  async #syncInPool(): Promise<void> {
    const covers = this.#written;
    try {
      await this.later();
      this.#syncsBefore += 1;
      this.#synced = Math.max(this.#synced, covers);
    } catch (err) {
      throw this.#diskFailed(err);
    } finally {
      this.#running = undefined;
    }
  }

  /**
   * Stops the sync thread. Writers still waiting for it are covered by its last syncs or go on to
   * the thread pool (the caller flushes once more before closing the file).
   */
  async close(): Promise<void> {
    this.#makeThread = undefined;
    const thread = this.#thread;
    if (!thread) return;
    await thread.close();
    this.#wakeWriters();
    this.#retireThread();
    for (const waiter of this.#waiters.splice(0)) waiter.resolve();
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
    parentPort.postMessage({ error: err.message });
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
        if (!this.#stopped) worker.unref();
        if (outcome.error !== undefined) reject(new Error(`SQLite checkpoint failed: ${outcome.error}`));
        else resolve();
      };
      // While a checkpoint runs the process stays alive: the connection may be held until it answers.
      worker.ref();
      worker.postMessage('checkpoint');
    });
  }

  #start(): Worker {
    const worker = new Worker(CHECKPOINT_WORKER, { eval: true, workerData: { module: sqliteModule, path: this.path }, execArgv: [] });
    worker.on('message', (outcome: { done?: unknown; error?: string }) => this.#reply?.(outcome));
    worker.on('error', (err) => this.#reply?.({ error: String(err) }));
    worker.on('exit', (code) => {
      if (this.#worker === worker && !this.#stopped) this.#stop(new Error(`SQLite checkpoint worker exited (${code})`));
      this.#reply?.({ error: `worker exited (${code})` });
    });
    // After the listeners: adding a 'message' listener holds the process again.
    worker.unref();
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
    for (const row of this.sqlite.prepare(query.sql).iterate(query.parameters)) yield { rows: [row as R] };
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
    await this.sync?.close();
    // What the thread did not sync (commits made as it stopped), the thread pool does, before the file closes.
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

/**
 * coinshop's driver over `sqlite`, a connection to the file at `path` already in WAL mode. At FULL,
 * SQLite writes each commit without syncing (NORMAL) and coinshop syncs the WAL before anything is
 * acknowledged — FULL's guarantee, one fsync per group of commits (GroupSync). At NORMAL commits are
 * synced at checkpoints only. Either way checkpoints run in a worker thread (Checkpointer).
 */
export function openGroupCommit(sqlite: SQLite.Database, path: string, options: SqliteOptions): OpenedSqlite {
  const ownSync = options.synchronous === 'FULL';
  sqlite.pragma('synchronous = NORMAL');
  let walFile: number | undefined;
  // The WAL exists once the first commit is written, which is before the first sync.
  const walFd = () => (walFile ??= openSync(`${path}-wal`, 'r'));
  const syncFile = options.syncFile;
  const sync = ownSync
    ? syncFile
      ? new GroupSync(() => syncFile(walFd()))
      : new GroupSync(
          () => fdatasyncAsync(walFd()),
          (onProgress) => new SyncThread(walFd(), onProgress),
        )
    : undefined;
  const connection = new Connection(sqlite, sync);
  const driver = new SqliteDriver(sqlite, connection, sync, () => {
    if (walFile !== undefined) closeSync(walFile);
  });
  const autoCheckpoint = sqlite.pragma('wal_autocheckpoint', { simple: true });
  sqlite.pragma('wal_autocheckpoint = 0');
  const checkpointer = new Checkpointer(
    path,
    options.checkpointEvery ?? CHECKPOINT_EVERY_COMMITS,
    (fn) => driver.exclusive(fn),
    (err) => {
      sqlite.pragma(`wal_autocheckpoint = ${Number(autoCheckpoint)}`);
      options.onCheckpointError?.(err);
    },
  );
  connection.checkpointer = checkpointer;
  return { db: new Kysely<Database>({ dialect: new CoinshopSqliteDialect(driver) }), sync, checkpointer };
}
