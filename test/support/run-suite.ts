/**
 * `npm test`'s tap step: every test file on SQLite, and on PostgreSQL (TEST_DATABASE=postgres) every
 * file not in SQLITE_ONLY below, together with the tests in test/replicas/ that need several
 * replicas, a database restart or Redis — both engines in one tap run, so its
 * jobs are never idle waiting for one engine's slowest file (see entry); coverage held to the minimums in
 * coverage-gate.ts.
 *
 * With no PostgreSQL at TEST_PG_URL the PostgreSQL pass is skipped, and with no Redis at
 * TEST_REDIS_URL the shared rate-limit test is, each with one line saying why — unless
 * TEST_REQUIRE_SERVICES=1 (CI sets it), which makes a skip a failure.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { TEST_PG_URL, TEST_REDIS_URL } from './services.js';
import { checkCoverage } from './coverage-gate.js';

const REDIS_TESTS = ['test/replicas/shared-rate-limit.test.ts'];

/**
 * The test files that run on SQLite only, each with why the engine cannot matter to it. Every other
 * file, a new one included, runs on both engines: add a file here only when nothing it checks goes
 * through code that differs between SQLite and PostgreSQL.
 */
const SQLITE_ONLY: Record<string, string> = {
  'test/browser.test.ts': 'drives the checkout page in Chromium; the API calls it makes are run on PostgreSQL by other files',
  'test/checkout.test.ts': 'the page, its CSP and settings; its one sign-up is create-customer, run on PostgreSQL by other files',
  'test/compose.test.ts': 'reads compose.yaml: no app, no store',
  'test/config.test.ts':
    "parses settings and checks their table in docs/; SQLITE_SYNCHRONOUS is SQLite's own; the catalog test buys as seed-flow does",
  'test/contract.test.ts': "the contract checker itself; its one real answer is the catalog's, which reads no store",
  'test/docs.test.ts': "the README's and docs/' links and length: no app, no store",
  'test/fake-stripe.test.ts': 'the fake Stripe server alone: no app, no store',
  'test/heap.test.ts': 'a V8 heap setting in a child process: no store',
  'test/log-destination.test.ts': 'the log file writer: no store',
  'test/logger.test.ts': 'what requests log, not what they store',
  'test/openapi.test.ts': 'the OpenAPI document and Swagger UI: no stored data',
  'test/sdk.test.ts': "the generated client's calls and types; the flow it drives is seed-flow's, run on PostgreSQL",
  'test/sqlite-durability.test.ts': "SQLite's own file durability",
};

/**
 * Test files run at once. The machine has 2 vCPUs, but a test file spends much of its time waiting
 * (for a server or CLI it started, for PostgreSQL, for Chromium), so one more than the CPUs is faster.
 */
const JOBS = 3;

/**
 * A file's time limit (tap's config has 120 s): there to catch a hang, not to time the tests.
 * PostgreSQL round trips make the fuzz and property tests several times longer than on SQLite in
 * memory, and on a machine busy with other work even SQLite's pass has taken over 120 s for them.
 */
const TIMEOUT = '--timeout=600';

/**
 * Coverage is off in tap's config (a single-file run reports none); the suite's run turns it on with
 * no report of its own: the report comes after. The tests' own code is left out (run from source, c8
 * leaves out test/ by itself; compiled, it sees .build/test/).
 */
const COVERAGE = ['--no-disable-coverage', '--coverage-report=none', '--coverage-exclude=.build/test/**'];

/**
 * Started first, as they take longest (most of all on PostgreSQL): with jobs filled in order, a long
 * file started last would run on alone at the end.
 */
const SLOW_FIRST = [
  'test/fuzz.test.ts',
  'test/money-invariants.test.ts',
  'test/money-faults.test.ts',
  'test/server.test.ts',
  'test/browser.test.ts',
];
/**
 * The suite runs the tests as JS compiled by its type check (`npm run typecheck` emits into .build/,
 * with source maps that coverage follows back to the TypeScript), not through tsx: tsx's loader hooks
 * run on a thread of their own on Node 20 and cost every module a round trip, about 1 s of a test
 * process's start (docs/development.md has the figures). This replaces package.json's tap `node-arg`
 * (--import=tsx, for single-file runs) with a flag tap gives the tests anyway.
 */
const COMPILED = '--node-arg=--enable-source-maps';

/** tap's own minimums are all-or-nothing (100%): coverage-gate.ts holds the suite's, so tap's are 0. */
const NO_TAP_MINIMUMS = ['--statements=0', '--branches=0', '--functions=0', '--lines=0'];

const root = new URL('../..', import.meta.url).pathname;
const tapBin = join(root, 'node_modules', '.bin', 'tap');
const entries = join(root, '.tap', 'suite');
const build = join(root, '.build');

/**
 * A test file's run on one engine, as a file of its own for tap's list: it sets TEST_DATABASE before
 * loading the test (whose modules read it as they load), in .tap/, which coverage leaves out. The test
 * it loads is the compiled one in .build/ (see COMPILED). tap starts its files in the order of their
 * names, so the name begins with the run's place in the suite's order, then says the engine and the
 * test: .tap/suite/007-postgres/test/<file>.js.
 */
function entry(place: number, engine: 'sqlite' | 'postgres', file: string): string {
  const compiled = file.replace(/\.ts$/, '.js');
  const path = join(entries, `${String(place).padStart(3, '0')}-${engine}`, compiled);
  mkdirSync(dirname(path), { recursive: true });
  const target = relative(dirname(path), join(build, compiled));
  writeFileSync(path, `process.env['TEST_DATABASE'] = '${engine}';\nawait import(${JSON.stringify(target)});\n`);
  return relative(root, path);
}

interface PassResult {
  name: string;
  total: number;
  pass: number;
  fail: number;
  exitCode: number;
}

/** Runs tap with `args`, streaming its output, and reads its closing `# { total, pass, fail }` line. */
function runTap(name: string, args: string[], env: Record<string, string>): Promise<PassResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(tapBin, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let tail = '';
    child.stdout.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk);
      tail = (tail + chunk.toString()).slice(-4096);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const summary = /# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?/.exec(tail);
      resolve({
        name,
        total: Number(summary?.[1] ?? 0),
        pass: Number(summary?.[2] ?? 0),
        fail: Number(summary?.[3] ?? 0),
        exitCode: code ?? 1,
      });
    });
  });
}

/**
 * The static checks (package.json scripts): the type check, ESLint, Prettier's check, the import-cycle
 * check and the OpenAPI lint, all at once (about 30 s on a 2-vCPU machine, against 46 s one after
 * another) and before the tests: a failing one prints its output and stops the suite there. Run
 * beside the tests instead, they would take little more time but load the machine the timing-
 * sensitive tests run on.
 */
const CHECKS = ['typecheck', 'lint', 'format:check', 'cycles', 'lint:openapi'];

async function runCheck(name: string): Promise<boolean> {
  const started = performance.now();
  const child = spawn('npm', ['run', '--silent', name], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (code !== 0) console.error(`# check ${name} failed (npm run ${name}), ${seconds} s:\n${output}`);
  else console.log(`# check ${name}: ok, ${seconds} s`);
  return code === 0;
}

/** Why PostgreSQL cannot be used, or undefined when it answers. */
async function postgresUnavailable(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: TEST_PG_URL, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('select 1');
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message || err.name : String(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Why Redis cannot be used, or undefined when it answers. */
async function redisUnavailable(): Promise<string | undefined> {
  const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message || err.name : String(err);
  } finally {
    redis.disconnect();
  }
}

const testFiles = (dir: string) =>
  readdirSync(join(root, dir))
    .filter((name) => name.endsWith('.test.ts'))
    .sort()
    .map((name) => `${dir}/${name}`);

/** The URL without its password, for messages. */
const shown = (url: string) => {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
};

async function main(): Promise<number> {
  const files = testFiles('test');
  // A renamed or deleted file must not stay listed: its new name would silently run on both engines.
  const stale = Object.keys(SQLITE_ONLY).filter((file) => !files.includes(file));
  if (stale.length > 0) {
    console.error(`# SQLITE_ONLY in test/support/run-suite.ts names files that do not exist: ${stale.join(', ')}`);
    return 1;
  }

  const started = performance.now();
  const seconds = () => ((performance.now() - started) / 1000).toFixed(0);
  // The type check compiles the tests into .build/ afresh: tsc --incremental neither deletes the output
  // of a source that is gone (a renamed file a test starts by its path would still run, old) nor
  // re-emits an output removed behind its back. About 4 s more than an incremental check, within
  // the time ESLint takes beside it.
  rmSync(build, { recursive: true, force: true });
  const checks = await Promise.all(CHECKS.map(runCheck));
  console.log(`# static checks done at ${seconds()} s`);
  if (checks.includes(false)) return 1;
  const skipped: string[] = [];
  const pgWhy = await postgresUnavailable();
  let pgFiles: string[] = [];
  if (pgWhy) {
    skipped.push(`PostgreSQL pass skipped: no PostgreSQL at ${shown(TEST_PG_URL)} (${pgWhy}); set TEST_PG_URL to run it`);
  } else {
    const redisWhy = await redisUnavailable();
    if (redisWhy)
      skipped.push(`${REDIS_TESTS.join(', ')} skipped: no Redis at ${shown(TEST_REDIS_URL)} (${redisWhy}); set TEST_REDIS_URL to run it`);
    pgFiles = [...files.filter((file) => !(file in SQLITE_ONLY)), ...testFiles('test/replicas')].filter(
      (file) => !redisWhy || !REDIS_TESTS.includes(file),
    );
  }
  rmSync(entries, { recursive: true, force: true });
  const slowness = (file: string) => (SLOW_FIRST.includes(file) ? SLOW_FIRST.indexOf(file) : SLOW_FIRST.length);
  // The slow files first, each on PostgreSQL before SQLite (PostgreSQL's run takes longer); then the rest.
  const runs = [
    ...pgFiles.map((file) => ({ file, engine: 'postgres' as const })),
    ...files.map((file) => ({ file, engine: 'sqlite' as const })),
  ]
    .map((run, index) => ({ ...run, index }))
    .sort((a, b) => slowness(a.file) - slowness(b.file) || a.index - b.index)
    .map((run, place) => entry(place, run.engine, run.file));
  const result = await runTap('suite', [`--jobs=${JOBS}`, TIMEOUT, COMPILED, ...COVERAGE, ...NO_TAP_MINIMUMS, ...runs], {
    TEST_DATABASE: 'sqlite',
  });
  console.log(`# tests done at ${seconds()} s`);
  const report = await runTap(
    'coverage',
    ['report', '--coverage-report=text-summary', '--coverage-report=json-summary', ...NO_TAP_MINIMUMS],
    {},
  );
  if (report.exitCode !== 0) console.error('# tap report failed');
  for (const line of skipped) console.log(`# ${line}`);
  console.log(
    `# suite: ${result.pass} passed, ${result.fail} failed of ${result.total} (${files.length} files on SQLite, ${pgFiles.length} on PostgreSQL)`,
  );

  let ok = result.exitCode === 0 && result.fail === 0 && result.total > 0;
  if (skipped.length > 0 && process.env['TEST_REQUIRE_SERVICES'] === '1') {
    console.error('# FAIL: TEST_REQUIRE_SERVICES=1, and a pass or test was skipped for want of its service');
    ok = false;
  }
  // Without the PostgreSQL pass, code only it runs cannot be covered: the minimums skip those files.
  if (!checkCoverage({ postgresRan: pgWhy === undefined })) ok = false;
  return ok ? 0 : 1;
}

process.exitCode = await main();
