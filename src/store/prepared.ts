import { CompiledQuery, type Compilable, type Kysely, type QueryResult } from 'kysely';
import type { Engine } from './engine.js';
import type { Database } from './schema.js';

/** Where a compiled statement's parameter comes from: a call's argument, or a value fixed in the query. */
type Slot = { arg: string } | { value: unknown };

interface Template {
  compiled: CompiledQuery;
  slots: Slot[];
}

const MARK = '\u0000coinshop-arg:';
const templates = new Map<string, Template>();

/**
 * PostgreSQL's names for the templates' SQL. With a name, node-postgres has a connection parse and
 * plan the statement once and afterwards only bind and run it (see PreparingPool in postgres.ts); a
 * hot statement's SQL never changes, so each gets one name for the life of the process.
 */
const statementNames = new Map<string, string>();
export const preparedStatementName = (sql: string): string | undefined => statementNames.get(sql);

function nameStatement(engine: Engine, sql: string): void {
  if (engine === 'postgres' && !statementNames.has(sql)) statementNames.set(sql, `coinshop_${statementNames.size + 1}`);
}

/**
 * Statements nobody reads the answer of (an insert whose row is known already, a key's answer): on
 * PostgreSQL, inside a transaction, they are held and sent with the next statement (postgres.ts), so
 * they cost no round trip of their own. Their failure still fails the transaction, at its next
 * statement or its COMMIT.
 */
const writeBehind = new Set<string>();
export const isWriteBehind = (sql: string): boolean => writeBehind.has(sql);

export interface StatementOptions {
  /** Nobody reads the answer (see isWriteBehind). */
  writeBehind?: boolean;
}

/**
 * Runs a fixed SQL text with positional parameters ($1, $2, …): the PostgreSQL statements that do a
 * state transition in one statement (CTEs with RETURNING), which Kysely's builder cannot express.
 * Named as a prepared statement like runPrepared's.
 */
export function runStatement<R>(
  db: Kysely<Database>,
  engine: Engine,
  sql: string,
  parameters: unknown[],
  options: StatementOptions = {},
): Promise<QueryResult<R>> {
  nameStatement(engine, sql);
  if (options.writeBehind === true) writeBehind.add(sql);
  return db.executeQuery<R>(CompiledQuery.raw(sql, parameters));
}

/**
 * Runs a query that is built and compiled once per engine and `key`, not on every call: the hot
 * statements of a purchase are the same SQL every time, and building and compiling them through
 * Kysely cost more than SQLite spends running them. The first call builds the query with a marker
 * in place of each argument and learns which parameter is which; later calls only fill the
 * parameters. `build` must use each argument as a value only (never to decide the query's shape):
 * what else varies the SQL belongs in `key`. The arguments' names are part of the template's key, so
 * an object with other columns gets a template of its own. An argument found in the SQL text, or not
 * found at all, is refused when the template is made; an undefined one on every call.
 */
export async function runPrepared<A extends Record<string, unknown>, R>(
  db: Kysely<Database>,
  engine: Engine,
  key: string,
  args: A,
  build: (db: Kysely<Database>, args: A) => Compilable<R>,
  options: StatementOptions = {},
): Promise<QueryResult<R>> {
  const names = Object.keys(args);
  const cacheKey = `${engine}:${key}:${names.join(',')}`;
  let template = templates.get(cacheKey);
  if (!template) {
    template = makeTemplate(db, key, names, build);
    templates.set(cacheKey, template);
    nameStatement(engine, template.compiled.sql);
    if (options.writeBehind === true) writeBehind.add(template.compiled.sql);
  }
  const { compiled, slots } = template;
  const parameters = slots.map((slot) => {
    if (!('arg' in slot)) return slot.value;
    const value = args[slot.arg];
    // A template was made with a value here; undefined (say, an optional column left out) is no value.
    if (value === undefined) throw new Error(`prepared query ${key}: argument ${slot.arg} is undefined`);
    return value;
  });
  return db.executeQuery<R>({ query: compiled.query, queryId: compiled.queryId, sql: compiled.sql, parameters });
}

function makeTemplate<A extends Record<string, unknown>, R>(
  db: Kysely<Database>,
  key: string,
  names: string[],
  build: (db: Kysely<Database>, args: A) => Compilable<R>,
): Template {
  // Markers stand in for the arguments only while the query is compiled; they never reach the database.
  const marked = Object.fromEntries(names.map((name) => [name, MARK + name])) as unknown as A;
  const compiled = build(db, marked).compile();
  if (compiled.sql.includes(MARK)) throw new Error(`prepared query ${key}: an argument ended up in the SQL text`);
  const slots: Slot[] = compiled.parameters.map((p) =>
    typeof p === 'string' && p.startsWith(MARK) ? { arg: p.slice(MARK.length) } : { value: p },
  );
  // Arithmetic on a marker (say `-amount`) makes NaN, a value no real call means: compute it outside `build`.
  if (slots.some((slot) => 'value' in slot && Number.isNaN(slot.value)))
    throw new Error(`prepared query ${key}: an argument was computed on`);
  const unused = names.filter((name) => !slots.some((slot) => 'arg' in slot && slot.arg === name));
  if (unused.length > 0) throw new Error(`prepared query ${key}: arguments ${unused.join(', ')} are not parameters`);
  return { compiled, slots };
}
