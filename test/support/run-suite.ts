/**
 * `npm test`'s tap step: the whole suite once on SQLite and once on PostgreSQL (TEST_DATABASE=postgres,
 * plus the tests in test/replicas/ that need several replicas, a database restart or Redis), with
 * coverage merged over both passes and then held to the minimums in coverage-gate.ts.
 *
 * With no PostgreSQL at TEST_PG_URL the PostgreSQL pass is skipped, and with no Redis at
 * TEST_REDIS_URL the shared rate-limit test is, each with one line saying why — unless
 * TEST_REQUIRE_SERVICES=1 (CI sets it), which makes a skip a failure.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { TEST_PG_URL, TEST_REDIS_URL } from './services.js';
import { checkCoverage } from './coverage-gate.js';

const REDIS_TESTS = ['test/replicas/shared-rate-limit.test.ts'];

const root = new URL('../..', import.meta.url).pathname;
const tapBin = join(root, 'node_modules', '.bin', 'tap');
const coverageDir = join(root, '.tap', 'coverage');
const savedCoverage = join(root, '.tap', 'coverage-sqlite');

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
  const passes: PassResult[] = [];
  passes.push(await runTap('SQLite', [], { TEST_DATABASE: 'sqlite' }));

  const skipped: string[] = [];
  const pgWhy = await postgresUnavailable();
  if (pgWhy) {
    skipped.push(`PostgreSQL pass skipped: no PostgreSQL at ${shown(TEST_PG_URL)} (${pgWhy}); set TEST_PG_URL to run it`);
  } else {
    const redisWhy = await redisUnavailable();
    if (redisWhy) skipped.push(`${REDIS_TESTS.join(', ')} skipped: no Redis at ${shown(TEST_REDIS_URL)} (${redisWhy}); set TEST_REDIS_URL to run it`);
    const files = [...testFiles('test'), ...testFiles('test/replicas')].filter((file) => !redisWhy || !REDIS_TESTS.includes(file));
    rmSync(savedCoverage, { recursive: true, force: true });
    if (existsSync(coverageDir)) renameSync(coverageDir, savedCoverage);
    // PostgreSQL round trips make the fuzz and property tests several times longer than on SQLite
    // in memory; the timeout is there to catch a hang, not to time them.
    passes.push(await runTap('PostgreSQL', ['--timeout=600', ...files], { TEST_DATABASE: 'postgres' }));
    // One report over both passes: each engine's code is covered by its own pass.
    if (existsSync(savedCoverage)) {
      for (const file of readdirSync(savedCoverage)) cpSync(join(savedCoverage, file), join(coverageDir, file));
      rmSync(savedCoverage, { recursive: true, force: true });
    }
    const report = await runTap('coverage', ['report', '--coverage-report=text-summary', '--coverage-report=json-summary'], {});
    if (report.exitCode !== 0) console.error('# tap report failed');
  }
  for (const line of skipped) console.log(`# ${line}`);

  const total = passes.reduce((sum, p) => sum + p.total, 0);
  const passed = passes.reduce((sum, p) => sum + p.pass, 0);
  const failed = passes.reduce((sum, p) => sum + p.fail, 0);
  const perPass = passes.map((p) => `${p.name} ${p.pass}/${p.total}`).join(', ');
  console.log(`# suite: ${passed} passed, ${failed} failed of ${total} (${perPass})`);

  let ok = passes.every((p) => p.exitCode === 0 && p.fail === 0 && p.total > 0);
  if (skipped.length > 0 && process.env['TEST_REQUIRE_SERVICES'] === '1') {
    console.error('# FAIL: TEST_REQUIRE_SERVICES=1, and a pass or test was skipped for want of its service');
    ok = false;
  }
  // Without the PostgreSQL pass, code only it runs cannot be covered: the minimums skip those files.
  if (!checkCoverage({ postgresRan: pgWhy === undefined })) ok = false;
  return ok ? 0 : 1;
}

process.exitCode = await main();
