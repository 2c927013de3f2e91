import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import t from 'tap';
import type { Engine } from '../../src/store/database.js';
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

let admin: pg.Client | undefined;
const schemas: string[] = [];
const dirs: string[] = [];

async function adminClient(): Promise<pg.Client> {
  if (!admin) {
    admin = new pg.Client({ connectionString: TEST_PG_URL });
    await admin.connect();
    // Dropped when this test file's process finishes; CI drops the whole database after the run.
    t.teardown(async () => {
      for (const schema of schemas.splice(0)) await admin?.query(`drop schema if exists "${schema}" cascade`);
      await admin?.end();
      admin = undefined;
    });
  }
  return admin;
}

/** A new, empty PostgreSQL schema and the DATABASE_URL that uses it. */
export async function freshPostgresUrl(): Promise<string> {
  const schema = `coinshop_test_${randomBytes(6).toString('hex')}`;
  await (await adminClient()).query(`create schema "${schema}"`);
  schemas.push(schema);
  // Tests check behaviour, not that a commit survives a power cut: not waiting for each commit's
  // fsync makes the PostgreSQL pass several times faster. Production keeps the server's setting.
  return withPgOptions(TEST_PG_URL, `-c search_path=${schema} -c synchronous_commit=off`);
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
