import { closeSync, fdatasync, fstatSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { sql, type Kysely } from 'kysely';
import t, { type Test } from 'tap';
import { GroupSync, SyncThread, type OpenedSqlite } from '../src/store/sqlite-group-commit.js';
import { openSqlite } from '../src/store/sqlite.js';
import { exitCode, spawnProject } from './support/process.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** Resolves once `condition` holds, checked every 5 ms; fails after 10 s. */
async function waitUntil(condition: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 10_000; !condition(); await new Promise((resolve) => setTimeout(resolve, 5))) {
    if (Date.now() > deadline) throw new Error(`still not so after 10 s: ${condition.toString()}`);
  }
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'coinshop-sqlite-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

type Db = Kysely<{ t: { id: number } }>;
const asTestDb = (opened: OpenedSqlite) => opened.db as unknown as Db;

t.test(
  'group commit: a flush waits for a sync begun after its write; one sync serves every write made while the last one ran',
  async (t) => {
    const started: (() => void)[] = [];
    const sync = new GroupSync(() => new Promise<void>((resolve) => started.push(resolve)));
    await sync.flush();
    t.equal(started.length, 0, 'nothing written: nothing to sync');

    sync.wrote();
    let firstDone = false;
    const first = sync.flush().then(() => (firstDone = true));
    await tick();
    t.equal(started.length, 1, 'the first write starts a sync');
    sync.wrote();
    sync.wrote();
    sync.wrote();
    let laterDone = false;
    const later = Promise.all([sync.flush(), sync.flush(), sync.flush()]).then(() => (laterDone = true));
    await tick();
    t.equal(started.length, 1, 'writes made during a sync do not start their own');

    await new Promise((resolve) => setTimeout(resolve, 20));
    started[0]!();
    await first;
    t.ok(firstDone);
    // Four writers have each waited at least the 20 ms the first sync was held (the last three wait on).
    t.ok(sync.waitedSeconds >= 0.02, `waited ${sync.waitedSeconds} s in all`);
    await tick();
    t.notOk(laterDone, 'the first sync began before the later writes, so it cannot vouch for them');
    t.equal(started.length, 2, 'one more sync, for all three');
    started[1]!();
    await later;
    t.ok(sync.waitedSeconds >= 4 * 0.02, `waited ${sync.waitedSeconds} s in all: each of four writers at least 20 ms`);
    t.same({ syncs: sync.syncs, commits: sync.commits, behind: sync.behind }, { syncs: 2, commits: 4, behind: false });
  },
);

t.test('a failed sync fails its writers and every later flush: the disk can no longer be trusted', async (t) => {
  const sync = new GroupSync(() => Promise.reject(new Error('EIO: i/o error, fdatasync')));
  sync.wrote();
  await t.rejects(sync.flush(), { message: /^SQLite: syncing the database to disk failed; restart the process \(Error: EIO/ });
  sync.wrote();
  await t.rejects(sync.flush(), { message: /restart the process/ }, 'a later write is refused too');
  t.ok(sync.behind);
  t.equal(sync.syncs, 0);
});

/** A GroupSync with a real SyncThread on a file of its own; `later` (the thread pool) is counted. */
function threadedSync(t: Test, path = join(tempDir(t), 'wal')) {
  const fd = openSync(path, 'w');
  writeSync(fd, 'x');
  let pooled = 0;
  const sync = new GroupSync(
    async () => void (pooled += 1),
    (onProgress) => new SyncThread(fd, onProgress),
  );
  t.teardown(async () => {
    await sync.close();
    closeSync(fd);
  });
  return { sync, pooled: () => pooled };
}

t.test(
  "a sync thread: a turn's first commit is synced at once and its writer goes on at the turn's end; a later commit gets the sync asked then",
  async (t) => {
    const { sync, pooled } = threadedSync(t);
    sync.wrote();
    let done = 0;
    const first = sync.flush().then(() => (done += 1));
    // The thread syncs while this turn goes on (it does not need the event loop to start; it may
    // still be starting itself on a busy machine, hence the generous limit).
    const until = performance.now() + 5000;
    while (sync.thread!.synced < 1 && performance.now() < until);
    t.equal(sync.thread!.synced, 1, 'synced by the thread while the event loop was busy');
    sync.wrote();
    const second = sync.flush().then(() => (done += 1));
    await tick(); // queued after the end-of-turn check: its writers resumed (microtasks) before this runs
    t.equal(done, 1, 'the first writer went on at the end of its turn; the second commit came after that sync');
    await Promise.all([first, second]);
    t.same(
      { synced: sync.thread!.synced, syncs: sync.syncs, commits: sync.commits, behind: sync.behind, pooled: pooled() },
      { synced: 2, syncs: 2, commits: 2, behind: false, pooled: 0 },
    );
  },
);

t.test('a writer whose sync is not done by the end of the turn is woken by the thread when it is', async (t) => {
  const { sync } = threadedSync(t);
  for (let round = 1; round <= 20; round++) {
    sync.wrote();
    await sync.flush();
    t.equal(sync.thread!.synced >= round, true);
  }
  t.same({ commits: sync.commits, behind: sync.behind }, { commits: 20, behind: false });
  // The thread posts each sync while writers wait; with none waiting it posts nothing.
  const posted: unknown[] = [];
  const fd = openSync(join(tempDir(t), 'direct'), 'w');
  const thread = new SyncThread(fd, (stopped) => posted.push(stopped ?? 'synced'));
  t.teardown(async () => {
    await thread.close();
    closeSync(fd);
  });
  thread.written(1);
  thread.ask();
  // However long the thread takes to start on a busy machine: it counts a sync, then posts if asked to.
  await waitUntil(() => thread.syncs === 1);
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.same([posted, thread.synced, thread.syncs], [[], 1, 1], 'no writer waiting: synced, nothing posted');
  thread.waiting = true;
  thread.written(2);
  thread.ask();
  await waitUntil(() => posted.length > 0);
  t.same([posted, thread.synced, thread.syncs], [['synced'], 2, 2], 'a writer waiting: the sync is posted');
});

t.test('a failed sync in the thread fails its writers and every later flush', async (t) => {
  // fdatasync of /dev/null fails (EINVAL), as a failing disk's would.
  const { sync, pooled } = threadedSync(t, '/dev/null');
  sync.wrote();
  sync.wrote();
  const results = await Promise.allSettled([sync.flush(), sync.flush()]);
  for (const result of results)
    t.match(result, {
      status: 'rejected',
      reason: { message: /^SQLite: syncing the database to disk failed; restart the process \(Error: EINVAL/ },
    });
  sync.wrote();
  await t.rejects(sync.flush(), { message: /restart the process/ }, 'a later write is refused too, not synced in the pool');
  t.same({ behind: sync.behind, pooled: pooled(), thread: sync.thread }, { behind: true, pooled: 0, thread: undefined });
});

t.test('a sync thread that dies hands syncing to the thread pool; no writer is left waiting', async (t) => {
  const { sync, pooled } = threadedSync(t);
  sync.wrote();
  await sync.flush();
  const thread = sync.thread!;
  // A writer waiting as the thread dies: synced by the thread before it died, or in the pool after.
  sync.wrote();
  const waiting = sync.flush();
  await thread.kill();
  await waiting;
  t.notOk(sync.behind, 'the waiting writer was answered, after a sync');
  await tick();
  t.equal(sync.thread, undefined, 'the dead thread is let go');
  const before = { pooled: pooled(), syncs: sync.syncs };
  sync.wrote();
  await sync.flush();
  t.same(
    { pooled: pooled(), syncs: sync.syncs, behind: sync.behind },
    { pooled: before.pooled + 1, syncs: before.syncs + 1, behind: false },
    'later writes are synced in the pool',
  );
});

t.test('a process with nothing else to do does not end while its commits wait for the sync thread', async (t) => {
  const path = join(tempDir(t), 'cli.db');
  const run = spawnProject('test/support/sqlite-writer.ts', [path], {});
  const code = await exitCode(run.child);
  t.equal(code, 0, run.stderr());
  t.equal(run.stdout(), 'acknowledged 3\n', 'every commit was acknowledged before the process ended');
  const written = new SQLite(path, { readonly: true });
  t.equal((written.prepare('select count(*) as n from t').get() as { n: number }).n, 3);
  written.close();
});

t.test(
  'FULL on a WAL file syncs it in a thread: writes are durable, concurrent commits share syncs, closing stops the thread',
  async (t) => {
    const path = join(tempDir(t), 'shop.db');
    const opened = openSqlite(path, { synchronous: 'FULL' });
    const db = asTestDb(opened);
    await sql`create table t (id integer primary key)`.execute(db);
    const thread = opened.sync!.thread!;
    t.ok(thread, 'a sync thread runs once something was committed');
    const writes: Promise<unknown>[] = [];
    for (let id = 1; id <= 200; id++) {
      writes.push(
        db
          .insertInto('t')
          .values({ id })
          .execute()
          .then(() => t.ok(thread.synced >= id, `write ${id} answered after a sync that covers it`) || undefined),
      );
    }
    await Promise.all(writes);
    const { commits, syncs } = opened.sync!;
    t.equal(commits, 201);
    t.ok(syncs >= 1 && syncs < 201, `201 commits, ${syncs} syncs`);
    await db.destroy();
    t.equal(opened.sync!.thread, undefined, 'closing the database stops the thread');
    const reopened = new SQLite(path, { readonly: true });
    t.equal((reopened.prepare('select count(*) as n from t').get() as { n: number }).n, 200);
    reopened.close();
  },
);

t.test('FULL on a WAL file: each write is acknowledged only after an fdatasync of the WAL that began once it was committed', async (t) => {
  const path = join(tempDir(t), 'shop.db');
  // Rows another connection can see when a sync starts are committed, so that sync covers them.
  let reader: SQLite.Database | undefined;
  const covered = new Set<number>();
  const syncedFiles = new Set<number>();
  const opened = openSqlite(path, {
    synchronous: 'FULL',
    syncFile: async (fd) => {
      syncedFiles.add(fstatSync(fd).ino);
      reader ??= new SQLite(path, { readonly: true });
      const visible = reader.prepare('select id from t').all() as { id: number }[];
      await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
      for (const row of visible) covered.add(row.id);
    },
  });
  const db = asTestDb(opened);
  t.teardown(async () => {
    reader?.close();
    await db.destroy();
  });
  await sql`create table t (id integer primary key)`.execute(db);
  t.same(
    await sql`pragma synchronous`.execute(db).then((r) => r.rows),
    [{ synchronous: 1 }],
    'SQLite itself does not sync commits: coinshop does',
  );

  const uncovered: number[] = [];
  const writes: Promise<void>[] = [];
  for (let id = 1; id <= 50; id++) {
    writes.push(
      db
        .insertInto('t')
        .values({ id })
        .execute()
        .then(() => void (covered.has(id) || uncovered.push(id))),
    );
  }
  for (let id = 51; id <= 70; id += 2) {
    writes.push(
      db
        .transaction()
        .execute(async (trx) => {
          await trx.insertInto('t').values({ id }).execute();
          await trx
            .insertInto('t')
            .values({ id: id + 1 })
            .execute();
        })
        .then(() => void [id, id + 1].forEach((x) => covered.has(x) || uncovered.push(x))),
    );
  }
  await Promise.all(writes);
  t.same(uncovered, [], 'no write was acknowledged before a sync covering it completed');
  t.same([...syncedFiles], [statSync(`${path}-wal`).ino], 'the file synced is the WAL');
  const { syncs, commits } = opened.sync!;
  t.equal(commits, 61, 'one commit per insert outside a transaction, one per transaction');
  t.ok(syncs >= 1 && syncs <= 5, `60 concurrent commits took ${syncs} syncs, not 60`);

  const before = opened.sync!.commits;
  await t.rejects(
    db.transaction().execute(async (trx) => {
      await trx.insertInto('t').values({ id: 1000 }).execute();
      throw new Error('changed my mind');
    }),
    { message: 'changed my mind' },
  );
  t.equal(opened.sync!.commits, before, 'a rolled-back transaction is not a commit');
  t.same(await db.selectFrom('t').select('id').where('id', '=', 1000).execute(), []);
});

t.test('a read does not wait for a sync; the write it reads is answered only when its sync completes', async (t) => {
  let finishSync: (() => void) | undefined;
  const opened = openSqlite(join(tempDir(t), 'shop.db'), {
    synchronous: 'FULL',
    syncFile: () => new Promise<void>((resolve) => (finishSync = resolve)),
  });
  const db = asTestDb(opened);
  t.teardown(() => db.destroy());
  const created = sql`create table t (id integer primary key)`.execute(db);
  await tick();
  finishSync!();
  await created;
  let written = false;
  const write = db
    .insertInto('t')
    .values({ id: 7 })
    .execute()
    .then(() => (written = true));
  await tick();
  t.same(await db.selectFrom('t').select('id').execute(), [{ id: 7 }], 'the read is answered while the sync runs');
  t.notOk(written, 'the write is not');
  finishSync!();
  await write;
  t.ok(written);
});

t.test('NORMAL, and databases without a WAL, leave syncing to SQLite', async (t) => {
  const dir = tempDir(t);
  const syncs: number[] = [];
  for (const [path, synchronous, level] of [
    [join(dir, 'normal.db'), 'NORMAL', 1],
    [':memory:', 'FULL', 2],
  ] as const) {
    const opened = openSqlite(path, { synchronous, syncFile: async (fd) => void syncs.push(fd) });
    const db = asTestDb(opened);
    await sql`create table t (id integer primary key)`.execute(db);
    await db.insertInto('t').values({ id: 1 }).execute();
    t.equal(opened.sync, undefined, `${path} ${synchronous}: no group commit`);
    t.equal(opened.checkpointer, undefined, `${path} ${synchronous}: SQLite's own checkpoints`);
    t.same(
      await sql`pragma synchronous`.execute(db).then((r) => r.rows),
      [{ synchronous: level }],
      `${path} ${synchronous}: SQLite's own setting`,
    );
    await db.destroy();
  }
  t.same(syncs, []);
});

t.test("Kysely's dialect (NORMAL) takes the write lock at BEGIN: another process's write waits for the transaction", async (t) => {
  const path = join(tempDir(t), 'shop.db');
  const db = asTestDb(openSqlite(path, { synchronous: 'NORMAL' }));
  t.teardown(() => db.destroy());
  await sql`create table t (id integer primary key)`.execute(db);
  const other = new SQLite(path, { timeout: 0 });
  t.teardown(() => other.close());
  await db.transaction().execute(async (trx) => {
    await trx.selectFrom('t').selectAll().execute();
    t.throws(
      () => other.prepare('insert into t (id) values (1)').run(),
      { code: 'SQLITE_BUSY' },
      'a transaction that has only read already holds the write lock',
    );
  });
  other.prepare('insert into t (id) values (2)').run();
  t.same(await db.selectFrom('t').selectAll().execute(), [{ id: 2 }]);
});

t.test('the group-commit driver keeps statements prepared, and a query past the cache size is still answered right', async (t) => {
  const db = asTestDb(openSqlite(join(tempDir(t), 'shop.db'), { synchronous: 'FULL' }));
  t.teardown(() => db.destroy());
  const answers: unknown[] = [];
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 300; i++) answers.push((await sql<{ n: number }>`select ${sql.lit(i)} as n, ${round} as r`.execute(db)).rows[0]);
  }
  t.same(answers.slice(0, 3), [
    { n: 0, r: 0 },
    { n: 1, r: 0 },
    { n: 2, r: 0 },
  ]);
  t.same(
    answers.slice(300, 303),
    [
      { n: 0, r: 1 },
      { n: 1, r: 1 },
      { n: 2, r: 1 },
    ],
    '300 distinct statements, then the first again',
  );
  t.equal(answers.length, 600);
});

t.test('callers take the connection in the order they asked for it, with either driver', async (t) => {
  for (const synchronous of ['FULL', 'NORMAL'] as const) {
    const db = asTestDb(openSqlite(join(tempDir(t), 'shop.db'), { synchronous }));
    t.teardown(() => db.destroy());
    await sql`create table t (id integer primary key)`.execute(db);
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        db.transaction().execute(async (trx) => {
          order.push(i);
          await trx.insertInto('t').values({ id: i }).execute();
          await tick();
        }),
      ),
    );
    t.same(
      order,
      Array.from({ length: 20 }, (_, i) => i),
      synchronous,
    );
  }
});

t.test('checkpoints run in a worker thread, not in commits: the WAL is copied into the database file and started over', async (t) => {
  const path = join(tempDir(t), 'shop.db');
  const opened = openSqlite(path, { synchronous: 'FULL', checkpointEvery: 20 });
  const db = asTestDb(opened) as unknown as Kysely<{ t: { id: number; body: Buffer } }>;
  t.teardown(() => db.destroy());
  t.same((await sql`pragma wal_autocheckpoint`.execute(db)).rows, [{ wal_autocheckpoint: 0 }], 'no commit checkpoints on the event loop');
  await sql`create table t (id integer primary key, body blob)`.execute(db);
  const rows = 400;
  for (let id = 0; id < rows; id++)
    await db
      .insertInto('t')
      .values({ id, body: Buffer.alloc(3000, id % 256) })
      .execute();
  await opened.checkpointer!.idle;
  t.ok(opened.checkpointer!.checkpoints >= 10, `checkpoints made: ${opened.checkpointer!.checkpoints}`);
  // Without checkpoints the WAL would hold a frame for every commit and more; started over, it holds the last few.
  const other = new SQLite(path);
  const [{ log }] = other.pragma('wal_checkpoint(PASSIVE)') as [{ log: number }];
  other.close();
  t.ok(log < rows / 4, `${log} frames in the WAL after ${rows} commits`);
  t.ok(statSync(path).size > rows * 3000 * 0.9, `database file ${statSync(path).size} bytes: the rows were copied into it`);
  t.same(
    (
      await db
        .selectFrom('t')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .execute()
    )[0],
    { n: rows },
  );
});

t.test('a checkpoint worker that dies hands checkpoints back to SQLite, and says so', async (t) => {
  const path = join(tempDir(t), 'shop.db');
  const errors: Error[] = [];
  const opened = openSqlite(path, { synchronous: 'FULL', checkpointEvery: 5, onCheckpointError: (err) => errors.push(err) });
  const db = asTestDb(opened);
  t.teardown(() => db.destroy());
  await sql`create table t (id integer primary key)`.execute(db);
  for (let id = 0; id < 10; id++) await db.insertInto('t').values({ id }).execute();
  await opened.checkpointer!.idle;
  t.ok(opened.checkpointer!.worker, 'the worker was started by the first checkpoint');
  await opened.checkpointer!.worker!.terminate();
  await waitUntil(() => errors.length > 0);
  t.match(errors.map(String), [/SQLite checkpoint worker exited/]);
  t.same((await sql`pragma wal_autocheckpoint`.execute(db)).rows, [{ wal_autocheckpoint: 1000 }], "SQLite's own checkpoints are back on");
  for (let id = 10; id < 20; id++) await db.insertInto('t').values({ id }).execute();
  t.same(
    (
      await db
        .selectFrom('t')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .execute()
    )[0],
    { n: 20 },
    'writes go on',
  );
  t.equal(errors.length, 1, 'told once');
});
