/**
 * coinshop's own CPU per keyed purchase, by database engine, with nothing else in the way: one
 * process, requests injected (no HTTP sockets), the simulated gateway (no Stripe client), 20 purchases
 * at a time. What differs between the engines is then the store's work and the database driver's,
 * and on PostgreSQL the kernel's socket work (the `system` figure).
 *
 *   npx tsx bench/cpu-per-purchase.ts [DATABASE_URL] [purchases]
 *
 * DATABASE_URL defaults to a new SQLite file (as production runs it: WAL, FULL); a postgres:// URL
 * gets a new schema, dropped after.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';

const dir = mkdtempSync(join(tmpdir(), 'coinshop-cpu-'));
const given = process.argv[2] ?? `sqlite:${join(dir, 'coinshop.db')}`;
const purchases = Number(process.argv[3] ?? 1500);
const concurrency = 20;

let url = given;
let drop = async () => undefined;
if (given.startsWith('postgres')) {
  const schema = `coinshop_cpu_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: given });
  await admin.connect();
  await admin.query(`create schema "${schema}"`);
  const parsed = new URL(given);
  parsed.searchParams.set('options', `-c search_path=${schema}`);
  url = parsed.toString();
  drop = async () => {
    await admin.query(`drop schema "${schema}" cascade`);
    await admin.end();
  };
}

const config = loadConfig({
  DATABASE_URL: url,
  DATABASE_POOL_SIZE: '4',
  RATE_LIMIT_PER_MINUTE: '1000000',
  MAX_EVENT_LOOP_DELAY_MS: '0',
  LOG_LEVEL: 'silent',
});
const app = await buildApp({ config });
const created = await app.inject({
  method: 'POST',
  url: '/stripe/create-customer',
  payload: { email: 'bench@example.com', name: 'Bench' },
});
const userId = (JSON.parse(created.body) as { user_id: string }).user_id;
await app.inject({ method: 'POST', url: '/stripe/attach-payment-method', payload: { user_id: userId, payment_method_id: 'pm_card_visa' } });
const buy = async () => {
  const answer = await app.inject({
    method: 'POST',
    url: '/stripe/purchase-currency',
    headers: { 'idempotency-key': randomUUID() },
    payload: { user_id: userId, package_id: 'package_1' },
  });
  if (answer.statusCode !== 200) throw new Error(`purchase: ${answer.statusCode} ${answer.body}`);
};
// Warm: the statements prepared, the code optimised.
for (let i = 0; i < 300; i++) await buy();

const before = process.cpuUsage();
const started = performance.now();
let issued = 0;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (issued < purchases) {
      issued++;
      await buy();
    }
  }),
);
const used = process.cpuUsage(before);
const seconds = (performance.now() - started) / 1000;
const ms = (micros: number) => (micros / 1000 / purchases).toFixed(2);
console.log(
  `${url.startsWith('postgres') ? 'PostgreSQL' : 'SQLite'}: ${purchases} keyed purchases, coinshop CPU ${ms(used.user + used.system)} ms each (user ${ms(used.user)}, system ${ms(used.system)}), ${Math.round(purchases / seconds)}/s`,
);
await app.close();
await drop();
rmSync(dir, { recursive: true, force: true });
