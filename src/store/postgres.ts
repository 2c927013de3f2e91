import {
  Kysely,
  PostgresDialect,
  sql,
  type PostgresCursor,
  type PostgresPool,
  type PostgresPoolClient,
  type PostgresQueryResult,
} from 'kysely';
import type { Socket } from 'node:net';
import pg from 'pg';
import { isWriteBehind, preparedStatementName } from './prepared.js';
import type { Database } from './schema.js';

/**
 * Counts of coins and cents are bigint columns. node-postgres hands int8 and numeric (what sum()
 * returns) back as strings to be safe; every figure coinshop stores is far inside 2^53, so they
 * come back as numbers — and one that is not fails loudly instead of being rounded.
 */
function exactNumber(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new RangeError(`database returned ${text}, which is not a safe integer`);
  return value;
}
const INT8 = 20;
const NUMERIC = 1700;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary'): unknown =>
    oid === INT8 || oid === NUMERIC ? exactNumber : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** What opening PostgreSQL takes (DatabaseOptions' PostgreSQL part). */
export interface PostgresOptions {
  poolSize: number;
  preparedStatements?: boolean | undefined;
  onConnectionError: (err: Error) => void;
}

export function openPostgres(url: string, options: PostgresOptions): Kysely<Database> {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize,
    types,
    // A request waiting for a connection while the database is down fails fast (503), not after a minute.
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    application_name: 'coinshop',
    // Statements issued before the answers to earlier ones arrive go out at once, on one connection:
    // a transaction's BEGIN and its write-behind statements travel with the statement after them.
    pipeline: true,
  });
  // A connection that breaks (a database restart, a failover) must never take the process down:
  // the pool drops it, and the next query opens a new one.
  pool.on('error', options.onConnectionError);
  pool.on('connect', (client) => client.on('error', options.onConnectionError));
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool: new PreparingPool(pool, options.preparedStatements !== false) }) });
}

/**
 * The pool Kysely is given: node-postgres's, whose connections run the hot statements (runPrepared's)
 * as named prepared statements — PostgreSQL then parses and plans each once per connection instead of
 * at every call, a third of its CPU per purchase — unless `prepare` is off (a pooler in transaction
 * mode). Either way a transaction's statements are batched (see PreparingClient).
 */
class PreparingPool implements PostgresPool {
  /** One wrapper per connection, so Kysely sees the same client each time it is checked out. */
  readonly #clients = new WeakMap<pg.PoolClient, PreparingClient>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly prepare: boolean,
  ) {}

  async connect(): Promise<PostgresPoolClient> {
    const client = await this.pool.connect();
    let wrapped = this.#clients.get(client);
    if (wrapped === undefined) {
      wrapped = new PreparingClient(client, this.prepare);
      this.#clients.set(client, wrapped);
    }
    return wrapped;
  }

  end(): Promise<void> {
    return this.pool.end();
  }
}

/**
 * SQLSTATEs a named statement can fail with in ordinary use, which say nothing about the statement
 * itself: bad data (22), a constraint (23), an aborted transaction (25), a serialization failure or
 * deadlock (40), a lock not available (55P03), a cancelled query (57014).
 */
const ORDINARY_FAILURE = /^(22|23|25|40)...$|^55P03$|^57014$/;

/** What a statement held back answers at once: nothing is read from it. */
const HELD: PostgresQueryResult<never> = { command: 'UPDATE', rowCount: 0, rows: [] };

const BEGIN = /^(begin|start transaction)\b/i;
const COMMIT = /^commit$/i;
const ROLLBACK = /^rollback$/i;

/**
 * One connection, as Kysely sees it. Besides naming the hot statements, it saves round trips inside
 * a transaction: a BEGIN, and a write-behind statement (one whose answer nobody reads: ledger entries,
 * a notification, a key's answer; see runStatement), are held and sent together with the next
 * statement whose answer is awaited, or with the COMMIT. The connection pipelines (node-postgres's
 * pipeline mode), so the batch goes out in one flight and its answers come back in one. A held
 * statement that fails aborts the transaction: the statement after it fails (with "current
 * transaction is aborted"), and the held one's own error is what the caller gets; a COMMIT after it
 * would only roll back, so it is refused with that error too.
 */
class PreparingClient implements PostgresPoolClient {
  /**
   * A named statement failed for a reason other than an ordinary one: most likely the statement no
   * longer fits its table (a migration by another replica changed the type of a column it returns,
   * "cached plan must not change result type", or of one it compares a parameter with, "operator does
   * not exist"), or node-postgres thinks it prepared a statement the server does not have. Either way
   * node-postgres would go on sending it on this connection, failing every time, so the connection
   * is closed on release rather than reused; the pool opens a fresh one, which prepares afresh.
   */
  #stale = false;
  /** Statements held back until the next one whose answer is awaited. */
  #held: pg.QueryConfig[] = [];
  /** The outcomes of held statements sent in this transaction, settled or not. */
  #sent: Promise<unknown>[] = [];
  #inTransaction = false;
  /** Part of the current transaction went out: a ROLLBACK must follow it. */
  #begun = false;

  constructor(
    private readonly client: pg.PoolClient,
    private readonly prepare: boolean,
  ) {}

  query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(
    statement: string | PostgresCursor<R>,
    parameters: ReadonlyArray<unknown> = [],
  ): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    // Cursors (Kysely's streaming) are not configured; one would go through unchanged.
    if (typeof statement !== 'string') return this.client.query(statement as PostgresCursor<R> & pg.Submittable);
    const config = this.#config(statement, parameters);
    if (BEGIN.test(statement)) {
      this.#inTransaction = true;
      this.#held.push(config);
      return Promise.resolve(HELD);
    }
    if (this.#inTransaction && isWriteBehind(statement)) {
      this.#held.push(config);
      return Promise.resolve(HELD);
    }
    if (ROLLBACK.test(statement)) return this.#rollback<R>(config);
    if (COMMIT.test(statement)) return this.#commit<R>(config);
    return this.#awaited<R>(config);
  }

  #config(text: string, parameters: ReadonlyArray<unknown>): pg.QueryConfig {
    const name = this.prepare ? preparedStatementName(text) : undefined;
    return name === undefined ? { text, values: [...parameters] } : { name, text, values: [...parameters] };
  }

  /** Sends the held statements, then this one; what they answer is kept for the COMMIT. */
  #send<R>(config: pg.QueryConfig): Promise<PostgresQueryResult<R>> {
    if (this.#held.length === 0) return this.#run<R>(config);
    this.#begun = true;
    // node-postgres writes each statement as it is issued (pipeline mode); corked, the batch leaves in one write.
    const stream = (this.client as unknown as { connection?: { stream?: Partial<Pick<Socket, 'cork' | 'uncork'>> } }).connection?.stream;
    stream?.cork?.();
    try {
      for (const held of this.#held.splice(0)) {
        const outcome = this.#run(held);
        // Read at the COMMIT (or by the statement after it); until then a failure is not unhandled.
        outcome.catch(() => undefined);
        this.#sent.push(outcome);
      }
      return this.#run<R>(config);
    } finally {
      stream?.uncork?.();
    }
  }

  async #awaited<R>(config: pg.QueryConfig): Promise<PostgresQueryResult<R>> {
    try {
      return await this.#send<R>(config);
    } catch (error) {
      throw (await this.#heldFailure()) ?? error;
    }
  }

  async #commit<R>(config: pg.QueryConfig): Promise<PostgresQueryResult<R>> {
    this.#inTransaction = false;
    this.#begun = false;
    let result: PostgresQueryResult<R>;
    try {
      result = await this.#send<R>(config);
    } catch (error) {
      throw (await this.#heldFailure()) ?? error;
    }
    const failure = await this.#heldFailure();
    if (failure !== undefined) throw failure;
    return result;
  }

  async #rollback<R>(config: pg.QueryConfig): Promise<PostgresQueryResult<R>> {
    this.#inTransaction = false;
    const begun = this.#begun;
    this.#begun = false;
    this.#held = [];
    this.#sent = [];
    // Nothing of the transaction reached the server: there is nothing to roll back.
    if (!begun) return HELD;
    return this.#run<R>(config);
  }

  /** The first error of a held statement sent in this transaction (the transaction is then over). */
  async #heldFailure(): Promise<Error | undefined> {
    const outcomes = await Promise.allSettled(this.#sent);
    this.#sent = [];
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') return outcome.reason instanceof Error ? outcome.reason : new Error(String(outcome.reason));
    }
    return undefined;
  }

  async #run<R>(config: pg.QueryConfig): Promise<PostgresQueryResult<R>> {
    try {
      const { command, rowCount, rows } = await this.client.query<R & pg.QueryResultRow>(config);
      return { command: command as PostgresQueryResult<R>['command'], rowCount: rowCount ?? 0, rows };
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (config.name !== undefined && (typeof code !== 'string' || !ORDINARY_FAILURE.test(code))) this.#stale = true;
      throw error;
    }
  }

  release(destroy?: boolean): void {
    // A connection given back mid-transaction (it broke) starts the next one clean.
    this.#held = [];
    this.#sent = [];
    this.#inTransaction = false;
    this.#begun = false;
    this.client.release(destroy === true || this.#stale);
  }
}

/** SQLSTATE classes and socket errors that mean "the database cannot be reached right now". */
const UNAVAILABLE_SQLSTATE = /^(08|57P0[1-3]|53300)/;
const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN']);
const UNAVAILABLE_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection refused/i;

/**
 * Whether an error means the database is unreachable (down, restarting, out of connections) rather
 * than that the request was wrong: callers answer 503 and the client retries later.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_ERRNO.has(code))) return true;
  if (error instanceof AggregateError && error.errors.some(isDatabaseUnavailable)) return true;
  return UNAVAILABLE_MESSAGE.test(error.message);
}

/** What a PostgreSQL server allows: its max_connections, less those only superusers may take. */
export interface ConnectionBudget {
  maxConnections: number;
  superuserReserved: number;
  /** Replicas whose full pools fit together (with nothing else connected). */
  replicas: number;
}

/**
 * How many replicas of `poolSize` connections each fit a server: N × DATABASE_POOL_SIZE must stay
 * within max_connections − superuser_reserved_connections (less what other clients keep), or the
 * replica that opens one too many gets "too many clients" (answered 503) at the busiest moment.
 */
export function replicasThatFit(server: { maxConnections: number; superuserReserved: number }, poolSize: number): number {
  return Math.floor(Math.max(0, server.maxConnections - server.superuserReserved) / poolSize);
}

/** Reads the server's connection limits (see replicasThatFit). */
export async function connectionBudget(db: Kysely<Database>, poolSize: number): Promise<ConnectionBudget> {
  const { rows } = await sql<{
    max_connections: string;
    reserved: string;
  }>`select current_setting('max_connections') as max_connections, current_setting('superuser_reserved_connections') as reserved`.execute(
    db,
  );
  const server = { maxConnections: Number(rows[0]?.max_connections), superuserReserved: Number(rows[0]?.reserved) };
  return { ...server, replicas: replicasThatFit(server, poolSize) };
}
