/**
 * `sqlite-writer.ts <file>`: commits three rows to a new SQLite file (FULL: each acknowledged only
 * once synced), says so, and ends without closing anything: the process must not end before its
 * commits are acknowledged (test/sqlite-durability.test.ts).
 */
import { sql, type Kysely } from 'kysely';
import { openSqlite } from '../../src/store/sqlite.js';

const db = openSqlite(process.argv[2]!, { synchronous: 'FULL' }).db as unknown as Kysely<{ t: { id: number } }>;
await sql`create table t (id integer primary key)`.execute(db);
for (let id = 1; id <= 3; id++) await db.insertInto('t').values({ id }).execute();
console.log('acknowledged 3');
