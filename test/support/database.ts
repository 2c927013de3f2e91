import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import t from 'tap';
import type { Engine } from '../../src/store/engine.js';
import { TEST_PG_URL } from './services.js';

/**
 * The suite runs once per engine (test/support/run-suite.ts): TEST_DATABASE=postgres points every
 * test app at PostgreSQL, each on a schema of its own; otherwise they run on SQLite.
 */
export const TEST_ENGINE: Engine = process.env['TEST_DATABASE'] === 'postgres' ? 'postgres' : 'sqlite';

/** `url` with libpq `options` added, e.g. a search_path. */
export function withPgOptions(url: string, options: string): string {
  const parsed = new URL(url);
  const existing = parsed.searchParams.get('options');
  parsed.searchParams.set('options', existing ? `${existing} ${options}` : options);
  return parsed.toString();
}

/** `url` on another database of the same server. */
function onDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

let admin: { client: pg.Client; url: string } | undefined;
const dirs: string[] = [];

/**
 * A client on a database of this test process's own, made on first use, named after TEST_PG_URL's
 * database, and dropped when the process finishes (.ci/run drops any that a killed process left).
 * Not a schema in TEST_PG_URL's database shared with the other test processes: Kysely's migrator
 * reads the catalog of every schema in the database as an app starts, and fails ("schema … does not
 * exist") when another process drops its schemas at that moment.
 */
async function adminClient(): Promise<{ client: pg.Client; url: string }> {
  if (!admin) {
    const database = `${new URL(TEST_PG_URL).pathname.slice(1) || 'postgres'}_${randomBytes(6).toString('hex')}`;
    const server = new pg.Client({ connectionString: TEST_PG_URL });
    await server.connect();
    await server.query(`create database "${database}"`);
    const url = onDatabase(TEST_PG_URL, database);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    admin = { client, url };
    t.teardown(async () => {
      await client.end();
      await server.query(`drop database if exists "${database}" with (force)`);
      await server.end();
      admin = undefined;
    });
  }
  return admin;
}

/** A new, empty PostgreSQL schema and the DATABASE_URL that uses it. */
export async function freshPostgresUrl(): Promise<string> {
  const schema = `coinshop_test_${randomBytes(6).toString('hex')}`;
  const { client, url } = await adminClient();
  await client.query(`create schema "${schema}"`);
  // Tests check behaviour, not that a commit survives a power cut: not waiting for each commit's
  // fsync makes the PostgreSQL pass several times faster. Production keeps the server's setting.
  // A statement waiting over 30 s for a lock fails, naming it, rather than holding its test until
  // tap's timeout with nothing said (no test waits that long for a lock on purpose).
  return withPgOptions(url, `-c search_path=${schema} -c synchronous_commit=off -c lock_timeout=30s`);
}

/**
 * Drops the schema freshPostgresUrl made for `url`, once the app on it is closed (nothing for another
 * URL). Kysely's migrator reads the tables of every schema in the database as an app starts, so the
 * schemas a test file leaves behind make each later start slower: a property test building an app
 * per run was quadratic in its runs.
 */
export async function dropFreshSchema(url: string): Promise<void> {
  if (!url.startsWith('postgres')) return;
  const schema = /search_path=(coinshop_test_[0-9a-f]+)/.exec(new URL(url).searchParams.get('options') ?? '')?.[1];
  if (schema === undefined || !admin) return;
  try {
    // A session still holding a lock in the schema (an app's connection its test left open) must
    // not stall the test: the schema is then left, as before, and dropped with the database.
    await admin.client.query(`set lock_timeout = '5s'`);
    await admin.client.query(`drop schema if exists "${schema}" cascade`);
  } catch (error) {
    if ((error as { code?: unknown }).code !== '55P03') throw error;
  }
}

/**
 * A DATABASE_URL of a new, empty database for one test, on the engine this run tests. `shared`:
 * several apps will open it one after another (a restart), so SQLite gets a file, not `:memory:`.
 */
export async function freshDatabaseUrl(options: { shared?: boolean } = {}): Promise<string> {
  if (TEST_ENGINE === 'postgres') return freshPostgresUrl();
  if (!options.shared) return ':memory:';
  if (dirs.length === 0) t.teardown(() => dirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  const dir = mkdtempSync(join(tmpdir(), 'coinshop-'));
  dirs.push(dir);
  return `sqlite:${join(dir, 'nested', 'coinshop.db')}`;
}
