/**
 * The "coinshop driver" arm of `npm run bench:ab -- sqlite`: src/store/sqlite.ts's `openSqlite`, but
 * coinshop's own driver (src/store/sqlite-group-commit.ts) at every durability: at FULL no writer is
 * answered before an fdatasync of the WAL that began after its commit (group commit, in a thread);
 * at NORMAL the WAL is synced at its checkpoints (every 100 commits, in a worker thread).
 */
import { openGroupCommit } from '../../src/store/sqlite-group-commit.js';
import { connect, type OpenedSqlite, type SqliteOptions } from '../../src/store/sqlite.js';

export function openSqlite(path: string, options: SqliteOptions): OpenedSqlite {
  const { sqlite, wal } = connect(path);
  if (!wal) throw new Error(`${path}: the bench needs a file system with WAL`);
  return openGroupCommit(sqlite, path, options);
}
