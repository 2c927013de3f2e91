/**
 * `npm run profile`: where a purchase's CPU goes. Runs coinshop as the benchmark does, under
 * `--cpu-prof`, drives keyed purchases with autocannon, and prints the CPU each purchase cost in
 * coinshop, the fake Stripe and the load generator, then coinshop's self time by package and by
 * function. The profile is kept in bench/profiles/ (open it in Chrome DevTools' Performance panel).
 *   PROFILE_SECONDS (default 10), PROFILE_CONNECTIONS (default 50), PROFILE_LATENCY_MS (Stripe, default 0),
 *   PROFILE_DATABASE_URL (default a new SQLite file; a postgres:// URL profiles the PostgreSQL path, on
 *   a database or schema of its own).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { buyers, coinshop, fakeStripe, purchaseLoad, root, stop } from './processes.js';

const seconds = Number(process.env['PROFILE_SECONDS'] ?? 10);
const connections = Number(process.env['PROFILE_CONNECTIONS'] ?? 50);
const latency = Number(process.env['PROFILE_LATENCY_MS'] ?? 0);
const databaseUrl = process.env['PROFILE_DATABASE_URL'];

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

/** CPU time (user + system) a process has used so far, in milliseconds. */
function cpuMs(pid: number | undefined): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / Number(execFileSync('getconf', ['CLK_TCK']).toString());
}

/** The package a frame belongs to: a dependency's name, `coinshop`, `node:<module>`, or a V8 pseudo-frame. */
function packageOf(url: string, functionName: string): string {
  const dependency = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dependency) return dependency[1]!;
  if (url.includes('/dist/src/')) return 'coinshop';
  if (url.startsWith('node:')) return url.split('/')[0]!;
  return `(${functionName || 'native'})`;
}

function top(totals: Map<string, number>, all: number, count: number): string[] {
  return [...totals]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, us]) => `${((us / all) * 100).toFixed(1).padStart(5)} %  ${name}`);
}

async function main() {
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
  const dir = mkdtempSync(join(tmpdir(), 'coinshop-profile-'));
  const profiles = join(root, 'bench', 'profiles');
  mkdirSync(profiles, { recursive: true });
  const before = new Set(readdirSync(profiles));
  try {
    const stripe = await fakeStripe(latency);
    const shop = await coinshop(stripe.url, databaseUrl ?? join(dir, 'profile.db'), ['--cpu-prof', '--cpu-prof-dir', profiles]);
    const users = await buyers(shop.url, 200);
    const start = { shop: cpuMs(shop.child.pid), stripe: cpuMs(stripe.child.pid), self: process.cpuUsage() };
    const result = await autocannon({
      url: `${shop.url}/stripe/purchase-currency`,
      duration: seconds,
      connections,
      ...purchaseLoad(users, 'profile'),
    });
    const purchases = result.requests.total;
    const self = process.cpuUsage(start.self);
    console.log(
      `${purchases} purchases in ${seconds} s (${Math.round(result.requests.average)}/s), ${connections} connections, Stripe +${latency} ms, ${result.non2xx} non-2xx`,
    );
    console.log('CPU per purchase:');
    console.log(`  coinshop         ${((cpuMs(shop.child.pid) - start.shop) / purchases).toFixed(2)} ms`);
    console.log(`  fake Stripe      ${((cpuMs(stripe.child.pid) - start.stripe) / purchases).toFixed(2)} ms`);
    console.log(`  load generator   ${((self.user + self.system) / 1000 / purchases).toFixed(2)} ms`);
    // SIGINT: the server closes as on any stop and node writes the profile on the way out.
    shop.child.kill('SIGINT');
    await new Promise((resolve) => shop.child.once('exit', resolve));
    await stop(stripe.child);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const file = readdirSync(profiles).find((name) => !before.has(name) && name.endsWith('.cpuprofile'));
  if (!file) throw new Error('coinshop wrote no profile');
  const profile = JSON.parse(readFileSync(join(profiles, file), 'utf8')) as CpuProfile;
  const frames = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
  const byPackage = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const frame = frames.get(id)!;
    if (frame.functionName === '(idle)') return;
    const us = profile.timeDeltas[i] ?? 0;
    busy += us;
    const pkg = packageOf(frame.url, frame.functionName);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us);
    const where = frame.url
      ? ` ${frame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${frame.lineNumber + 1}`
      : '';
    const fn = `${frame.functionName || '(anonymous)'}${where}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
  });
  console.log(`\ncoinshop's busy time (start, setup and load; idle left out), ${(busy / 1000).toFixed(0)} ms — self time by package:`);
  console.log(top(byPackage, busy, 15).join('\n'));
  console.log('\nby function:');
  console.log(top(byFunction, busy, 25).join('\n'));
  console.log(`\nprofile: bench/profiles/${file}`);
}

await main();
