/**
 * The "Kysely" arm of `npm run bench:ab -- sqlite`: src/store/sqlite.ts's `openSqlite`, but Kysely's
 * own SqliteDialect at every durability, SQLite syncing by itself: at FULL every COMMIT fsyncs the
 * WAL before it returns (on the event loop); at NORMAL the WAL is synced at SQLite's own checkpoints
 * (every 1,000 pages, run inside a commit).
 */
import { connect, openKysely, type OpenedSqlite, type SqliteOptions } from '../../src/store/sqlite.js';

export function openSqlite(path: string, options: SqliteOptions): OpenedSqlite {
  return openKysely(connect(path).sqlite, options.synchronous);
}
