/**
 * `npm run bench`: coinshop as in production (built, JSON logs, API keys, SQLite file with
 * synchronous=FULL, the real StripeGateway) against a Stripe-compatible server on loopback with an
 * added latency, driven by autocannon. Prints a table and writes bench/results.json.
 *   BENCH_SECONDS (default 5) per scenario, after BENCH_WARMUP_SECONDS (default 2) of the same load on
 *   the same connections that is not counted (a service is measured warm and in its steady state: its
 *   code compiled, its caches and connections made, not the burst of a load that has just started),
 *   and at least until every connection has had an answer (the ramp, shown in its own column; at most
 *   BENCH_RAMP_LIMIT_SECONDS, default 60);
 *   BENCH_SCENARIOS=packages,customer,purchases,replicas (default all); packages: coinshop and the
 *   bare Fastify baselines measured in turns, BENCH_PACKAGE_ROUNDS (default 5) rounds of BENCH_SECONDS
 *   ÷ rounds each, the ratio the median of the rounds' (see inTurns); purchases at Stripe latencies
 *   BENCH_LATENCIES (ms, default 0,300) and BENCH_CONNECTIONS (default 50,200,1000);
 *   BENCH_NODE_ARGS: node options for coinshop's processes (say --max-old-space-size=128);
 *   replicas: purchases with one and two coinshop processes on SQLite (one file) and on PostgreSQL
 *   (BENCH_PG_URL, default the local `test` database; each run in a new schema, dropped after),
 *   BENCH_REPLICA_CONNECTIONS (default 200) in all, Stripe latency BENCH_REPLICA_LATENCY_MS (default 50);
 *   equal-load: purchases on one coinshop on SQLite and on PostgreSQL at the same offered rate,
 *   BENCH_EQUAL_RATE purchases/s (default 200, below what either sustains here), BENCH_EQUAL_ROUNDS
 *   rounds in turns (default 3), connections and Stripe latency as replicas': coinshop's CPU per
 *   purchase compared where both do the same work per second (saturated, the slower engine's
 *   processes each handle fewer requests per event-loop turn, so every process, the fake Stripe
 *   included, spends more per purchase); prints the medians and their ratio;
 *   notifications: purchases on SQLite with no game server (the outbox fills, nothing is sent) and
 *   with one receiving every notification (GAME_WEBHOOK_URL), BENCH_NOTIFY_CONNECTIONS (default 200),
 *   Stripe latency BENCH_NOTIFY_LATENCY_MS (default 50): what delivery costs a purchase.
 *   checkout: on one SQLite coinshop, purchases with the saved card and then Stripe Checkout Sessions
 *   opened (POST /stripe/checkout-sessions: the pending purchase, the session, its id), at
 *   BENCH_NOTIFY_CONNECTIONS and BENCH_NOTIFY_LATENCY_MS: what opening Checkout costs beside a card
 *   purchase. Paying a session is a checkout.session.completed webhook, a credit like a card
 *   payment's webhook (its round trips are in test/round-trips.test.ts).
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';
import { EVENT_LOOP_SAMPLE_MS } from '../src/plugins/metrics.js';
import { startWireCounter } from '../test/support/pg-wire.js';
import {
  api,
  auth,
  buyers,
  coinshop,
  cpuSeconds,
  fakeStripe,
  GAME_SECRET,
  gameReceiver,
  postgresBackends,
  purchaseLoad,
  checkoutLoad,
  CHECKOUT_ORIGIN,
  root,
  start,
  stop,
  ts,
} from './processes.js';

const seconds = Number(process.env['BENCH_SECONDS'] ?? 5);
const warmUpSeconds = Number(process.env['BENCH_WARMUP_SECONDS'] ?? 2);
const rampLimitSeconds = Number(process.env['BENCH_RAMP_LIMIT_SECONDS'] ?? 60);
const nodeArgs = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((arg) => arg.length > 0);
const scenarios = (process.env['BENCH_SCENARIOS'] ?? 'packages,customer,purchases,replicas,equal-load,notifications,checkout').split(',');
const PG_URL = process.env['BENCH_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const list = (name: string, fallback: string) => (process.env[name] ?? fallback).split(',').map(Number);
const purchaseLatencies = list('BENCH_LATENCIES', '0,300');
const purchaseConnections = list('BENCH_CONNECTIONS', '50,200,1000');
const replicaConnections = Number(process.env['BENCH_REPLICA_CONNECTIONS'] ?? 200);
const replicaLatency = Number(process.env['BENCH_REPLICA_LATENCY_MS'] ?? 50);
const equalRate = Number(process.env['BENCH_EQUAL_RATE'] ?? 200);
const equalRounds = Number(process.env['BENCH_EQUAL_ROUNDS'] ?? 3);
/** Lines printed after the tables. */
const summaries: string[] = [];
const notifyConnections = Number(process.env['BENCH_NOTIFY_CONNECTIONS'] ?? 200);
const notifyLatency = Number(process.env['BENCH_NOTIFY_LATENCY_MS'] ?? 50);
interface Row {
  scenario: string;
  requestsPerSecond: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  non2xx: number;
  peakRssMB: number;
  /** How long until every connection had an answer (before the measured window), or how many had one by the limit. */
  ramp: string;
  /** coinshop's CPU (user + system, all its processes) per answered request in the measured window. */
  cpuMsPerRequest?: number;
  /** CPU ms per answered request of each process taking part (coinshop, PostgreSQL's backends, the fake Stripe, the load generator). */
  cpuMs?: Record<string, number>;
  /** PostgreSQL round trips per purchase, counted at the wire (see roundTripsPerPurchase). */
  roundTrips?: number;
  note?: string;
}

/** Processes whose CPU is measured besides coinshop's: their ids, asked for at the start and the end of the measured window. */
interface CpuSource {
  name: string;
  pids: () => Promise<number[]>;
}
const rows: Row[] = [];

/**
 * coinshop's nodejs_eventloop_lag_* figures (prom-client's, from perf_hooks.monitorEventLoopDelay)
 * are the time between the loop's samples, one every EVENT_LOOP_SAMPLE_MS: a loop that is never late
 * reads 10 ms. How late it was is that interval less the 10 ms, as @fastify/under-pressure computes
 * its own delay.
 */
const loopDelayMs = (sampleIntervalMs: number) => Math.max(0, sampleIntervalMs - EVENT_LOOP_SAMPLE_MS);

/** The middle value (the upper one of an even count). */
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

/**
 * A process's peak RSS from here on: the kernel's high-water mark, reset now (clear_refs 5) and read
 * at the end. Where it cannot be reset, the current RSS is sampled (from /proc, without blocking the
 * load generator) every 100 ms instead.
 */
function peakRss(pid: number | undefined): () => number {
  if (!pid) return () => 0;
  const statusFile = `/proc/${pid}/status`;
  const megabytes = (status: string, field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) / 1024;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return () => megabytes(readFileSync(statusFile, 'utf8'), 'VmHWM');
  } catch {
    let peak = 0;
    const sample = (status: string) => (peak = Math.max(peak, megabytes(status, 'VmRSS')));
    sample(readFileSync(statusFile, 'utf8'));
    const sampler = setInterval(() => void readFile(statusFile, 'utf8').then(sample, () => undefined), 100);
    return () => {
      clearInterval(sampler);
      return sample(readFileSync(statusFile, 'utf8'));
    };
  }
}

/** One autocannon run against `target`; its row in the table. `warm` runs between warm-up and measurement. */
async function measure(
  scenario: string,
  target: ChildProcess,
  options: autocannon.Options,
  warm?: () => Promise<unknown>,
  also: CpuSource[] = [],
): Promise<Row> {
  return measureMany(scenario, [{ child: target, options }], warm, also);
}

/** The fake Stripe's process, as a CPU source. */
const stripeCpu = (child: ChildProcess): CpuSource => ({ name: 'fake Stripe', pids: async () => (child.pid ? [child.pid] : []) });

/** CPU seconds of each process now, by id. */
const cpuNow = (pids: number[]) => new Map(pids.map((pid) => [pid, cpuSeconds(pid)]));

/**
 * Purchases still in flight when autocannon stops finish on the server: wait until none is pending
 * (up to a minute), then compare the coins credited with the purchases recorded as completed. A
 * purchase's status and its credit commit together, so once nothing moves the two must agree.
 */
async function creditedOnce(url: string, users: string[]): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    let coins = 0;
    let completed = 0;
    let pending = 0;
    for (const id of users) {
      const history = (await api(url, `/stripe/transactions/${id}`))['transactions'] as { status: string }[];
      completed += history.filter((tx) => tx.status === 'completed').length;
      pending += history.filter((tx) => tx.status === 'pending').length;
      coins += Number((await api(url, `/stripe/customer/${id}`))['currency_balance']);
    }
    if (pending === 0 || Date.now() > deadline) {
      const unsettled = pending > 0 ? ` (${pending} still pending after a minute)` : '';
      return coins === completed * 100
        ? `${completed} completed, each credited once${unsettled}`
        : `MISMATCH: ${completed} completed, ${coins / 100} credited${unsettled}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** A new schema on BENCH_PG_URL and the DATABASE_URL that uses it. */
async function postgresSchema(): Promise<{ url: string; drop: () => Promise<void> }> {
  const schema = `coinshop_bench_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`create schema "${schema}"`);
  const url = new URL(PG_URL);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return {
    url: url.toString(),
    drop: async () => {
      await admin.query(`drop schema "${schema}" cascade`);
      await admin.end();
    },
  };
}

/**
 * Keyed purchases on `count` coinshop processes sharing one database (a SQLite file, or a new
 * PostgreSQL schema), BENCH_REPLICA_CONNECTIONS in all, with CPU per purchase for every process taking
 * part and, on PostgreSQL, the round trips of one purchase. With `rate`, the load generator offers
 * that many purchases a second in all (autocannon's overallRate) instead of as many as answers allow:
 * CPU per purchase is compared at equal load, since a process handling fewer requests per event-loop
 * turn spends more per request (the fake Stripe, whose work per purchase is the same on both engines,
 * shows how much).
 */
async function purchasesOnReplicas(dir: string, engine: 'sqlite' | 'postgres', count: number, rate?: number, round = 0): Promise<void> {
  const database =
    engine === 'sqlite'
      ? { url: join(dir, `replicas-${count}-${rate ?? 'max'}-${round}.db`), drop: async () => undefined }
      : await postgresSchema();
  const stripe = await fakeStripe(replicaLatency);
  const roundTrips = engine === 'postgres' ? await roundTripsPerPurchase(stripe.url, database.url) : undefined;
  // One at a time: the first migrates the new database, the others find it done.
  const shops: { child: ChildProcess; url: string }[] = [];
  for (let i = 0; i < count; i++) shops.push(await coinshop(stripe.url, database.url, nodeArgs));
  const users = await buyers(shops[0]!.url, 200);
  const also = [stripeCpu(stripe.child)];
  const admin = engine === 'postgres' ? new pg.Client({ connectionString: PG_URL }) : undefined;
  if (admin) {
    await admin.connect();
    const port = Number(new URL(PG_URL).port || 5432);
    also.unshift({
      name: 'PostgreSQL backends',
      pids: () =>
        postgresBackends(
          admin,
          shops.map((shop) => shop.child.pid ?? 0),
          port,
        ),
    });
  }
  const load = rate === undefined ? '' : `, ${rate} offered/s`;
  await measureMany(
    `purchase on ${engine === 'sqlite' ? 'SQLite (one file)' : 'PostgreSQL'}, ${count} replica${count > 1 ? 's' : ''}, Stripe +${replicaLatency} ms, ${replicaConnections} connections${load}`,
    shops.map((shop, i) => ({
      child: shop.child,
      options: {
        url: `${shop.url}/stripe/purchase-currency`,
        connections: replicaConnections / count,
        ...(rate === undefined ? {} : { overallRate: rate / count }),
        ...purchaseLoad(users, `${engine}-${count}-${rate ?? 'max'}-${round}-${i}`),
      },
    })),
    undefined,
    also,
  );
  await admin?.end();
  const row = rows.at(-1)!;
  if (roundTrips !== undefined) row.roundTrips = roundTrips;
  row.note = await creditedOnce(shops[0]!.url, users);
  console.log(row.note);
  for (const shop of shops) await stop(shop.child);
  await stop(stripe.child);
  await database.drop();
}

/**
 * Autocannon runs at once, one per replica, each one load from start to end: warm-up, then the
 * measured seconds on the same connections (a new run would open all its connections at once and
 * measure that burst, not the load). The warm-up lasts BENCH_WARMUP_SECONDS and at least until every
 * connection has had an answer (the ramp; at most BENCH_RAMP_LIMIT_SECONDS): a busy server takes
 * new connections slowly — libuv accepts one per event-loop turn — and a request that waited for its
 * connection to be accepted belongs to the ramp, not the steady state. Only what completes in the
 * measured window counts. One row with their sum (req/s, errors) and their worst (latency, ramp).
 */
async function measureMany(
  scenario: string,
  targets: { child: ChildProcess; options: autocannon.Options }[],
  warm?: () => Promise<unknown>,
  also: CpuSource[] = [],
): Promise<Row> {
  let measuring = false;
  const latencies: number[][] = targets.map(() => []);
  let errors = 0;
  let non2xx = 0;
  const connections = targets.reduce((sum, target) => sum + (target.options.connections ?? 10), 0);
  const answered = new Set<unknown>();
  const started = performance.now();
  let rampSeconds: number | undefined;
  let allAnswered: () => void = () => undefined;
  const ramp = new Promise<void>((resolve) => (allAnswered = resolve));
  const instances = targets.map((target, i) => {
    let finished: (err: Error | null) => void = () => undefined;
    const done = new Promise<void>((resolve, reject) => (finished = (err) => (err ? reject(err) : resolve())));
    // Stopped after the measured window (the ramp decides when that starts).
    const instance = autocannon({ ...target.options, duration: 3600 }, (err: Error | null) => finished(err));
    instance.on('response', (client, status, _bytes, ms) => {
      if (rampSeconds === undefined) {
        answered.add(client);
        if (answered.size === connections) {
          rampSeconds = (performance.now() - started) / 1000;
          allAnswered();
        }
      }
      if (!measuring) return;
      if (status >= 200 && status < 300) latencies[i]!.push(ms);
      else non2xx += 1;
    });
    instance.on('reqError', () => {
      if (measuring) errors += 1;
    });
    return { instance, done };
  });
  await new Promise((resolve) => setTimeout(resolve, warmUpSeconds * 1000));
  let rampLimit: NodeJS.Timeout | undefined;
  await Promise.race([
    ramp,
    new Promise((resolve) => (rampLimit = setTimeout(resolve, Math.max(0, rampLimitSeconds * 1000 - (performance.now() - started))))),
  ]);
  clearTimeout(rampLimit);
  await warm?.();
  const peaks = targets.map((target) => peakRss(target.child.pid));
  const cpuBefore = targets.reduce((sum, target) => sum + cpuSeconds(target.child.pid), 0);
  const othersBefore = (await Promise.all(also.map((source) => source.pids()))).map(cpuNow);
  // The load generator is this process: autocannon's work, and the little the bench does besides.
  const loadBefore = process.cpuUsage();
  measuring = true;
  const since = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  measuring = false;
  const elapsed = (performance.now() - since) / 1000;
  const cpuUsed = targets.reduce((sum, target) => sum + cpuSeconds(target.child.pid), 0) - cpuBefore;
  const othersAtEnd = othersBefore.map((before) => cpuNow([...before.keys()]));
  const loadUsed = process.cpuUsage(loadBefore);
  for (const { instance } of instances) instance.stop();
  await Promise.all(instances.map(({ done }) => done));
  // A process that started during the window (a connection the pool opened) counts whole.
  const othersUsed = await Promise.all(
    also.map(async (source, i) => {
      const before = othersBefore[i]!;
      const atEnd = othersAtEnd[i]!;
      let used = 0;
      for (const [pid, seconds] of before) used += Math.max(0, (atEnd.get(pid) ?? 0) - seconds);
      for (const pid of await source.pids()) if (!before.has(pid)) used += cpuSeconds(pid);
      return used;
    }),
  );
  const quantile = (values: number[], q: number) => values[Math.min(values.length - 1, Math.floor(values.length * q))] ?? 0;
  const sorted = latencies.map((values) => values.sort((a, b) => a - b));
  const answers = Math.max(1, sorted.reduce((sum, values) => sum + values.length, 0) + non2xx);
  const msPerAnswer = (cpu: number) => Math.round((cpu * 1000 * 100) / answers) / 100;
  rows.push({
    scenario,
    requestsPerSecond: Math.round(sorted.reduce((sum, values) => sum + values.length, 0) / elapsed),
    cpuMsPerRequest: msPerAnswer(cpuUsed),
    cpuMs: {
      coinshop: msPerAnswer(cpuUsed),
      ...Object.fromEntries(also.map((source, i) => [source.name, msPerAnswer(othersUsed[i]!)])),
      'load generator': msPerAnswer((loadUsed.user + loadUsed.system) / 1e6),
    },
    p50ms: Math.round(Math.max(...sorted.map((values) => quantile(values, 0.5)))),
    p99ms: Math.round(Math.max(...sorted.map((values) => quantile(values, 0.99)))),
    errors,
    non2xx,
    peakRssMB: Math.round(Math.max(...peaks.map((peak) => peak()))),
    ramp: rampSeconds === undefined ? `${answered.size}/${connections} in ${rampLimitSeconds} s` : `${rampSeconds.toFixed(1)} s`,
  });
  console.log(JSON.stringify(rows.at(-1)));
  return rows.at(-1)!;
}

/**
 * Servers whose requests/s are compared (the ratio is the figure), measured in turns rather than one
 * after the other: BENCH_PACKAGE_ROUNDS rounds (default 5), each giving every server BENCH_SECONDS ÷
 * rounds of the load in a rotating order, after a warm-up of BENCH_WARMUP_SECONDS each. On a shared
 * machine the CPU on offer drifts over minutes (runs minutes apart have differed by 4×); taken in
 * turns, each round's servers see the same machine, and the ratio is the median of the rounds'
 * ratios. Each row gives the median round (req/s, p50, p99), the errors of all, the peak RSS of all.
 */
async function inTurns(
  targets: { scenario: string; child: ChildProcess; options: autocannon.Options }[],
): Promise<{ row: Row; perRound: number[] }[]> {
  const rounds = Number(process.env['BENCH_PACKAGE_ROUNDS'] ?? 5);
  const run = (options: autocannon.Options, duration: number) => autocannon({ ...options, duration });
  for (const target of targets) await run(target.options, warmUpSeconds);
  const peaks = targets.map((target) => peakRss(target.child.pid));
  const results: autocannon.Result[][] = targets.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < targets.length; k++) {
      const i = (round + k) % targets.length;
      results[i]!.push(await run(targets[i]!.options, seconds / rounds));
    }
  }
  return targets.map((target, i) => {
    const mine = results[i]!;
    const perRound = mine.map((result) => result['2xx'] / result.duration);
    const row: Row = {
      scenario: target.scenario,
      requestsPerSecond: Math.round(median(perRound)),
      p50ms: median(mine.map((result) => result.latency.p50)),
      p99ms: median(mine.map((result) => result.latency.p99)),
      errors: mine.reduce((sum, result) => sum + result.errors, 0),
      non2xx: mine.reduce((sum, result) => sum + result.non2xx, 0),
      peakRssMB: Math.round(peaks[i]!()),
      ramp: `${rounds} turns`,
    };
    rows.push(row);
    console.log(JSON.stringify(row));
    return { row, perRound };
  });
}

/** "0.41× bare Fastify (rounds 0.38–0.45)": the median of the rounds' ratios, and their spread. */
function ratioNote(server: { perRound: number[] }, baseline: { perRound: number[] }, name: string): string {
  const ratios = server.perRound.map((rate, round) => rate / baseline.perRound[round]!);
  return `${median(ratios).toFixed(2)}× ${name} (rounds ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`;
}

/**
 * PostgreSQL round trips per keyed purchase, counted at the wire: one coinshop process connected
 * through a counting proxy (test/support/pg-wire.ts) makes purchases one at a time, after a few
 * not counted (its connections and prepared statements made). Everything the process sends in the
 * window counts, its background work included. Not under load: under load a purchase can take more
 * (a serialization retry), which the throughput runs would show as CPU, not here.
 */
async function roundTripsPerPurchase(stripeUrl: string, databaseUrl: string): Promise<number> {
  const counter = await startWireCounter(databaseUrl);
  const shop = await coinshop(stripeUrl, counter.url, nodeArgs);
  try {
    const users = await buyers(shop.url, 2);
    let n = 0;
    const buy = async () => {
      n += 1;
      const response = await fetch(`${shop.url}/stripe/purchase-currency`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json', 'idempotency-key': `bench-round-trips-${n}` },
        body: JSON.stringify({ user_id: users[n % users.length], package_id: 'package_1' }),
      });
      const body = await response.text();
      if (!response.ok) throw new Error(`purchase: ${response.status} ${body}`);
    };
    for (let i = 0; i < 10; i++) await buy();
    const counted = 40;
    const before = counter.roundTrips;
    for (let i = 0; i < counted; i++) await buy();
    return Math.round(((counter.roundTrips - before) / counted) * 10) / 10;
  } finally {
    await stop(shop.child);
    await counter.close();
  }
}

async function main() {
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
  const dir = mkdtempSync(join(tmpdir(), 'coinshop-bench-'));
  try {
    if (scenarios.includes('packages') || scenarios.includes('customer')) {
      const stripe = await fakeStripe(0);
      const shop = await coinshop(stripe.url, join(dir, 'bench.db'), nodeArgs);
      if (scenarios.includes('packages')) {
        // The same bare app sending coinshop's headers (security, rate limit, request id): what
        // sending them costs, apart from the work of making them.
        const sent = await fetch(`${shop.url}/stripe/packages`, { headers: auth });
        await sent.arrayBuffer();
        const own = Object.fromEntries(
          [...sent.headers].filter(([name]) => !['content-type', 'content-length', 'date', 'connection', 'keep-alive'].includes(name)),
        );
        const bare = await start(process.execPath, ts('bench/bare-fastify.ts'), {});
        const bareWithHeaders = await start(process.execPath, ts('bench/bare-fastify.ts'), { BARE_HEADERS: JSON.stringify(own) });
        const [baseline, withHeaders, ours] = await inTurns([
          {
            scenario: 'GET /stripe/packages: bare Fastify',
            child: bare.child,
            options: { url: `${bare.url}/stripe/packages`, connections: 50 },
          },
          {
            scenario: `GET /stripe/packages: bare Fastify + coinshop's ${Object.keys(own).length} headers`,
            child: bareWithHeaders.child,
            options: { url: `${bareWithHeaders.url}/stripe/packages`, connections: 50 },
          },
          {
            scenario: 'GET /stripe/packages: coinshop',
            child: shop.child,
            options: { url: `${shop.url}/stripe/packages`, connections: 50, headers: auth },
          },
        ]);
        await stop(bare.child);
        await stop(bareWithHeaders.child);
        withHeaders!.row.note = ratioNote(withHeaders!, baseline!, 'bare Fastify');
        ours!.row.note = `${ratioNote(ours!, baseline!, 'bare Fastify')}; ${ratioNote(ours!, withHeaders!, 'bare with the same headers')}`;
        for (const { row } of [withHeaders!, ours!]) console.log(row.note);
      }
      if (scenarios.includes('customer')) {
        const ids: string[] = [];
        for (let i = 0; i < 10_000; i++)
          ids.push(
            String((await api(shop.url, '/stripe/create-customer', { email: `p${i}@example.com`, name: `Player ${i}` }))['user_id']),
          );
        let n = 0;
        await measure('GET /stripe/customer/{id} (10,000 customers)', shop.child, {
          url: shop.url,
          connections: 50,
          headers: auth,
          requests: [{ setupRequest: (request) => ({ ...request, path: `/stripe/customer/${ids[n++ % ids.length]}` }) }],
        });
      }
      await stop(shop.child);
      await stop(stripe.child);
    }

    if (scenarios.includes('purchases')) {
      for (const latency of purchaseLatencies) {
        for (const connections of purchaseConnections) {
          rmSync(join(dir, 'bench.db'), { force: true });
          const stripe = await fakeStripe(latency);
          const shop = await coinshop(stripe.url, join(dir, 'bench.db'), nodeArgs);
          const users = await buyers(shop.url, 200);
          // Each scrape resets the event-loop delay histogram: the figure read after the load is the load's alone.
          // The counters are read before and after it, so their figures are the measured load's too.
          const scrape = () => fetch(`${shop.url}/metrics`, { headers: auth }).then((r) => r.text());
          let before = '';
          const result = await measure(
            `purchase, Stripe +${latency} ms, ${connections} connections`,
            shop.child,
            { url: `${shop.url}/stripe/purchase-currency`, connections, ...purchaseLoad(users, `${latency}-${connections}`) },
            async () => (before = await scrape()),
            [stripeCpu(stripe.child)],
          );
          const row = rows.at(-1)!;
          row.note =
            (await creditedOnce(shop.url, users)) +
            (latency > 0
              ? `; ${((result.requestsPerSecond / (connections / (latency / 1000))) * 100).toFixed(0)}% of connections ÷ latency`
              : '');
          const after = await scrape();
          const figure = (metrics: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
          const grew = (name: string) => figure(after, name) - figure(before, name);
          const interval = figure(after, 'nodejs_eventloop_lag_p99_seconds') * 1000;
          if (interval)
            row.note += `; event-loop delay p99 ${loopDelayMs(interval).toFixed(1)} ms (sampled every ${EVENT_LOOP_SAMPLE_MS} ms: p99 interval ${interval.toFixed(1)} ms)`;
          const commits = grew('coinshop_sqlite_commits_total');
          const syncs = grew('coinshop_sqlite_syncs_total');
          const waited = grew('coinshop_sqlite_commit_wait_seconds_total');
          if (syncs > 0)
            row.note += `; ${(commits / syncs).toFixed(1)} commits per fsync, ${((waited / commits) * 1000).toFixed(1)} ms mean wait for it`;
          console.log(row.note);
          await stop(shop.child);
          await stop(stripe.child);
        }
      }
    }

    if (scenarios.includes('replicas')) {
      for (const engine of ['sqlite', 'postgres'] as const) for (const count of [1, 2]) await purchasesOnReplicas(dir, engine, count);
    }

    if (scenarios.includes('equal-load')) {
      // Rounds in turns, the first engine alternating, so a drift in the CPU on offer touches both alike.
      const coinshopMs: Record<'sqlite' | 'postgres', number[]> = { sqlite: [], postgres: [] };
      for (let round = 0; round < equalRounds; round++) {
        for (const engine of round % 2 === 0 ? (['sqlite', 'postgres'] as const) : (['postgres', 'sqlite'] as const)) {
          await purchasesOnReplicas(dir, engine, 1, equalRate, round);
          coinshopMs[engine].push(rows.at(-1)!.cpuMs?.['coinshop'] ?? Number.NaN);
        }
      }
      const sqliteMs = median(coinshopMs.sqlite);
      const postgresMs = median(coinshopMs.postgres);
      summaries.push(
        `Equal load (${equalRate} purchases/s offered, ${equalRounds} rounds in turns): coinshop CPU per purchase, median, ` +
          `SQLite ${sqliteMs.toFixed(2)} ms, PostgreSQL ${postgresMs.toFixed(2)} ms (PostgreSQL ÷ SQLite ${(postgresMs / sqliteMs).toFixed(2)})`,
      );
    }

    if (scenarios.includes('notifications')) {
      for (const delivery of ['off', 'on'] as const) {
        rmSync(join(dir, 'notify.db'), { force: true });
        const stripe = await fakeStripe(notifyLatency);
        const game = delivery === 'on' ? await gameReceiver() : undefined;
        const shop = await coinshop(
          stripe.url,
          join(dir, 'notify.db'),
          nodeArgs,
          game ? { GAME_WEBHOOK_URL: `${game.url}/events`, GAME_WEBHOOK_SECRET: GAME_SECRET } : {},
        );
        const users = await buyers(shop.url, 200);
        await measure(
          `purchase, notifications ${delivery === 'on' ? 'delivered to a game server' : 'kept in the outbox only (no GAME_WEBHOOK_URL)'}, Stripe +${notifyLatency} ms, ${notifyConnections} connections`,
          shop.child,
          { url: `${shop.url}/stripe/purchase-currency`, connections: notifyConnections, ...purchaseLoad(users, `notify-${delivery}`) },
          undefined,
          [stripeCpu(stripe.child), ...(game ? [{ name: 'game server', pids: async () => (game.child.pid ? [game.child.pid] : []) }] : [])],
        );
        const row = rows.at(-1)!;
        row.note = await creditedOnce(shop.url, users);
        if (game) {
          // Every notification reaches the game once the load is over (they trail it by the sender's pace).
          const deadline = Date.now() + 60_000;
          let pending = Infinity;
          while (pending > 0 && Date.now() < deadline) {
            const metrics = await (await fetch(`${shop.url}/metrics`, { headers: auth })).text();
            pending = Number(/^coinshop_notifications_pending (\S+)$/m.exec(metrics)?.[1] ?? Infinity);
            if (pending > 0) await new Promise((resolve) => setTimeout(resolve, 500));
          }
          const received = Number(((await (await fetch(game.url)).json()) as { received: number }).received);
          row.note += `; ${received} notifications received by the game, ${pending} left pending`;
          await stop(game.child);
        }
        console.log(row.note);
        await stop(shop.child);
        await stop(stripe.child);
      }
    }

    if (scenarios.includes('checkout')) {
      const stripe = await fakeStripe(notifyLatency);
      const shop = await coinshop(stripe.url, join(dir, 'checkout.db'), nodeArgs, { CHECKOUT_RETURN_ORIGINS: CHECKOUT_ORIGIN });
      const users = await buyers(shop.url, 200);
      const loads = [
        { path: '/stripe/purchase-currency', name: 'purchase with the saved card', load: purchaseLoad(users, 'checkout-card') },
        { path: '/stripe/checkout-sessions', name: 'Stripe Checkout Session opened', load: checkoutLoad(users, 'checkout-session') },
      ];
      for (const { path, name, load } of loads) {
        await measure(
          `${name}, Stripe +${notifyLatency} ms, ${notifyConnections} connections`,
          shop.child,
          { url: `${shop.url}${path}`, connections: notifyConnections, ...load },
          undefined,
          [stripeCpu(stripe.child)],
        );
      }
      await stop(shop.child);
      await stop(stripe.child);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const options = nodeArgs.length > 0 ? `, coinshop run with ${nodeArgs.join(' ')}` : '';
  console.log(`\n${machine}, ${seconds} s per scenario after ${warmUpSeconds} s of warm-up${options}\n`);
  console.log(
    '| scenario | req/s | p50 ms | p99 ms | errors | non-2xx | peak RSS MB | coinshop CPU ms/request | every connection answered | note |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const cpu = r.cpuMsPerRequest === undefined ? '' : r.cpuMsPerRequest.toFixed(2);
    console.log(
      `| ${r.scenario} | ${r.requestsPerSecond} | ${r.p50ms} | ${r.p99ms} | ${r.errors} | ${r.non2xx} | ${r.peakRssMB} | ${cpu} | ${r.ramp} | ${r.note ?? ''} |`,
    );
  }
  const split = rows.filter((r) => r.cpuMs !== undefined && Object.keys(r.cpuMs).length > 2);
  if (split.length > 0) {
    // Where each purchase's CPU went, by process: what the capacity model in docs/benchmarks.md is built from.
    const order = ['coinshop', 'PostgreSQL backends', 'fake Stripe', 'game server', 'load generator'];
    const names = [...new Set(split.flatMap((r) => Object.keys(r.cpuMs!)))].sort((a, b) => order.indexOf(a) - order.indexOf(b));
    console.log(
      '\nCPU ms per request by process (user + system, measured window ÷ answered requests), and PostgreSQL round trips per purchase:\n',
    );
    console.log(`| scenario | req/s | ${names.join(' | ')} | all | round trips/purchase |`);
    console.log(`|---|---|${names.map(() => '---|').join('')}---|---|`);
    for (const r of split) {
      const cpu = r.cpuMs!;
      const all = Object.values(cpu).reduce((sum, ms) => sum + ms, 0);
      console.log(
        `| ${r.scenario} | ${r.requestsPerSecond} | ${names.map((name) => cpu[name]?.toFixed(2) ?? '—').join(' | ')} | ${all.toFixed(2)} | ${r.roundTrips ?? '—'} |`,
      );
    }
  }
  for (const line of summaries) console.log(`\n${line}`);
  writeFileSync(
    join(root, 'bench', 'results.json'),
    JSON.stringify({ machine, seconds, warmUpSeconds, nodeArgs, rows, summaries }, null, 2) + '\n',
  );
}

await main();
