/**
 * `npm run bench:ab -- sqlite|log`: a decision about a hand-written module, measured as an A/B in
 * one run. Both arms are the same server (src/server.ts under tsx, node options as `npm start`'s),
 * but for one module that bench/ab/swap.ts replaces (in both arms where coinshop now uses either):
 *
 *   sqlite: coinshop's group-commit driver (src/store/sqlite-group-commit.ts: group commit, sync
 *     thread, checkpoint worker; bench/ab/group-commit-sqlite.ts) against Kysely's own SqliteDialect
 *     over better-sqlite3 (bench/ab/kysely-sqlite.ts), each at SQLITE_SYNCHRONOUS=FULL and at
 *     NORMAL: ratios are taken at equal durability only (FULL with FULL, NORMAL with NORMAL);
 *   log: src/log-destination.ts against pino.destination({ sync: false, minLength, maxWrite })
 *     (bench/ab/pino-destination.ts), at FULL.
 *
 * The load is bench/run.ts's purchases (real HTTP, the real Stripe SDK against the fake Stripe on
 * loopback, one Idempotency-Key each) at AB_CONNECTIONS (default 200) and Stripe latencies
 * AB_LATENCIES (ms, default 0,50). The servers take turns: AB_ROUNDS rounds (default 5) of
 * AB_SECONDS (default 5) each, in a rotating order, after a warm-up of AB_WARMUP_SECONDS (default 3)
 * each; a turn starts once the previous one's in-flight purchases are done. Printed per arm: the
 * median round's purchases/s and coinshop CPU ms per purchase; per pair: the median of the rounds'
 * ratios of purchases/s.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import packageJson from '../package.json' with { type: 'json' };
import { api, buyers, fakeStripe, purchaseLoad, start, stop, API_KEY } from './processes.js';

const decision = process.argv[2];
const seconds = Number(process.env['AB_SECONDS'] ?? 5);
const warmUpSeconds = Number(process.env['AB_WARMUP_SECONDS'] ?? 3);
const rounds = Number(process.env['AB_ROUNDS'] ?? 5);
const connections = Number(process.env['AB_CONNECTIONS'] ?? 200);
const latencies = (process.env['AB_LATENCIES'] ?? '0,50').split(',').map(Number);

interface Arm {
  name: string;
  swap?: 'sqlite-driver' | 'sqlite-kysely' | 'log';
  synchronous: 'FULL' | 'NORMAL';
}
/** Pairs compared: [A, B], A the hand-written module, B the library's. */
const pairs: Record<string, [Arm, Arm][]> = {
  sqlite: [
    [
      { name: 'coinshop driver, FULL', swap: 'sqlite-driver', synchronous: 'FULL' },
      { name: 'Kysely SqliteDialect, FULL', swap: 'sqlite-kysely', synchronous: 'FULL' },
    ],
    [
      { name: 'coinshop driver, NORMAL', swap: 'sqlite-driver', synchronous: 'NORMAL' },
      { name: 'Kysely SqliteDialect, NORMAL', swap: 'sqlite-kysely', synchronous: 'NORMAL' },
    ],
  ],
  log: [
    [
      { name: 'LogDestination', synchronous: 'FULL' },
      { name: 'pino.destination (sync: false)', swap: 'log', synchronous: 'FULL' },
    ],
  ],
};
const chosen = decision === undefined ? undefined : pairs[decision];
if (!chosen) {
  console.error(`usage: npm run bench:ab -- ${Object.keys(pairs).join('|')}`);
  process.exit(2);
}

/** `npm start`'s node options. */
const nodeOptions = packageJson.scripts.start.split(' ').slice(1, -1);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

/** A process's CPU time so far (user + system), in seconds. */
function cpuSeconds(pid: number | undefined): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Waits until the server answers /health within 15 ms three times running: what the last turn left in flight is done. */
async function settled(url: string): Promise<void> {
  let quick = 0;
  const deadline = Date.now() + 120_000;
  while (quick < 3 && Date.now() < deadline) {
    const began = performance.now();
    await fetch(`${url}/health`).then((r) => r.arrayBuffer());
    quick = performance.now() - began < 15 ? quick + 1 : 0;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface Server {
  arm: Arm;
  child: ChildProcess;
  url: string;
  users: string[];
  turns: { perSecond: number; cpuMs: number; non2xx: number; errors: number }[];
}

async function turn(server: Server, durationSeconds: number, tag: string) {
  await settled(server.url);
  const cpuBefore = cpuSeconds(server.child.pid);
  const result = await autocannon({
    url: `${server.url}/stripe/purchase-currency`,
    connections,
    duration: durationSeconds,
    ...purchaseLoad(server.users, tag),
  });
  const cpu = cpuSeconds(server.child.pid) - cpuBefore;
  const ok = result['2xx'];
  return { perSecond: ok / durationSeconds, cpuMs: (cpu * 1000) / Math.max(1, ok), non2xx: result.non2xx, errors: result.errors };
}

const dir = mkdtempSync(join(tmpdir(), 'coinshop-ab-'));
const lines: string[] = [];
try {
  for (const latency of latencies) {
    const stripe = await fakeStripe(latency);
    const servers: Server[] = [];
    for (const arm of chosen.flat()) {
      const { child, url } = await start(
        process.execPath,
        [...nodeOptions, '--import', 'tsx', '--import', './bench/ab/swap.ts', 'src/server.ts'],
        {
          ...(arm.swap ? { AB_SWAP: arm.swap } : {}),
          NODE_ENV: 'production',
          PORT: '0',
          LOG_LEVEL: 'info',
          DATABASE_URL: join(dir, `${latency}-${servers.length}.db`),
          SQLITE_SYNCHRONOUS: arm.synchronous,
          API_KEYS: API_KEY,
          STRIPE_SECRET_KEY: 'sk_test_bench',
          STRIPE_WEBHOOK_SECRET: 'whsec_bench',
          CLIENT_TOKEN_SECRETS: 'bench-client-token-secret-0123456789abcdef',
          STRIPE_API_BASE: stripe.url,
          RATE_LIMIT_PER_MINUTE: '1000000',
        },
      );
      servers.push({ arm, child, url, users: await buyers(url, 200), turns: [] });
    }
    for (const server of servers) await turn(server, warmUpSeconds, `warm-${latency}`);
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < servers.length; i++) {
        const server = servers[(round + i) % servers.length]!;
        const figures = await turn(server, seconds, `${latency}-${round}`);
        server.turns.push(figures);
        console.log(JSON.stringify({ latency, round, arm: server.arm.name, ...figures }));
      }
    }
    // Every purchase answered 2xx was recorded: a user's history holds no purchase still pending.
    for (const server of servers) {
      await settled(server.url);
      const pending = (await Promise.all(server.users.slice(0, 20).map((id) => api(server.url, `/stripe/transactions/${id}`)))).flatMap(
        (answer) => (answer['transactions'] as { status: string }[]).filter((tx) => tx.status !== 'completed'),
      ).length;
      if (pending > 0) console.log(`${server.arm.name}: ${pending} purchases of the first 20 buyers not completed`);
    }
    lines.push(`\nStripe +${latency} ms, ${connections} connections, ${rounds} rounds of ${seconds} s\n`);
    lines.push('| arm | purchases/s (median round) | coinshop CPU ms/purchase | non-2xx | errors |', '|---|---|---|---|---|');
    for (const server of servers) {
      const t = server.turns;
      lines.push(
        `| ${server.arm.name} | ${median(t.map((x) => x.perSecond)).toFixed(0)} | ${median(t.map((x) => x.cpuMs)).toFixed(2)} | ${t.reduce((s, x) => s + x.non2xx, 0)} | ${t.reduce((s, x) => s + x.errors, 0)} |`,
      );
    }
    for (const [a, b] of chosen) {
      const [sa, sb] = [servers.find((s) => s.arm === a)!, servers.find((s) => s.arm === b)!];
      const ratios = sa.turns.map((x, i) => x.perSecond / Math.max(1e-9, sb.turns[i]!.perSecond));
      const cpu = sa.turns.map((x, i) => x.cpuMs / Math.max(1e-9, sb.turns[i]!.cpuMs));
      lines.push(
        `\n${a.name} ÷ ${b.name}: purchases/s ×${median(ratios).toFixed(2)} (rounds ${ratios.map((r) => r.toFixed(2)).join(', ')}); CPU per purchase ×${median(cpu).toFixed(2)}`,
      );
    }
    for (const server of servers) await stop(server.child);
    await stop(stripe.child);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(
  `\n${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}: npm run bench:ab -- ${decision}`,
);
console.log(lines.join('\n'));
