/** What the benchmark and the profiler share: starting coinshop and the fake Stripe, and driving purchases. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type autocannon from 'autocannon';
import packageJson from '../package.json' with { type: 'json' };

export const root = new URL('..', import.meta.url).pathname;
export const API_KEY = 'bench_key_0123456789abcdefghijklmnop';
export const auth = { authorization: `Bearer ${API_KEY}` };

/** A TypeScript script run by one node process (`node --import tsx`, not the tsx launcher that forks another). */
export const ts = (script: string, ...args: string[]) => ['--import', 'tsx', script, ...args];

const children = new Set<ChildProcess>();
process.on('exit', () => children.forEach((child) => child.kill('SIGKILL')));

export function start(command: string, args: string[], env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /(?:listening|Server listening at) (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (match?.[1]) {
        child.stdout?.removeAllListeners('data');
        child.stdout?.resume();
        resolve({ child, url: match[1] });
      }
    });
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${out}`)));
  });
}

export const stop = async (child: ChildProcess) => {
  child.removeAllListeners('exit');
  const done = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await done;
};

/** A setup or check call; a 503 (load shedding, e.g. while a just-started server warms up on a busy machine) is retried as Retry-After says. */
export async function api(url: string, path: string, body?: object, attempts = 10): Promise<Record<string, unknown>> {
  const response = await fetch(url + path, {
    method: body ? 'POST' : 'GET',
    headers: { ...auth, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  if (response.status === 503 && attempts > 1) {
    await response.arrayBuffer();
    await new Promise((resolve) => setTimeout(resolve, Number(response.headers.get('retry-after') ?? 1) * 1000));
    return api(url, path, body, attempts - 1);
  }
  const answer = (await response.json()) as Record<string, unknown>;
  if (!response.ok) throw new Error(`${path}: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

/** What `npm start` (and the image) runs after `node`: its node options, then the built server. */
const startArgs = packageJson.scripts.start.split(' ').slice(1);

/**
 * The built server as in production: started as `npm start` starts it, JSON logs at info, API keys,
 * the real StripeGateway. `nodeArgs` (such as --cpu-prof) come after npm start's node options, so
 * one given here wins over the same one there.
 */
export async function coinshop(stripeUrl: string, databaseUrl: string, nodeArgs: string[] = [], env: Record<string, string> = {}) {
  return start(process.execPath, [...startArgs.slice(0, -1), ...nodeArgs, ...startArgs.slice(-1)], {
    NODE_ENV: 'production',
    PORT: '0',
    LOG_LEVEL: 'info',
    DATABASE_URL: databaseUrl,
    API_KEYS: API_KEY,
    STRIPE_SECRET_KEY: 'sk_test_bench',
    STRIPE_WEBHOOK_SECRET: 'whsec_bench',
    CLIENT_TOKEN_SECRETS: 'bench-client-token-secret-0123456789abcdef',
    STRIPE_API_BASE: stripeUrl,
    RATE_LIMIT_PER_MINUTE: '1000000',
    ...env,
  });
}

/** The Standard Webhooks secret the benchmark's game receiver is sent notifications with. */
export const GAME_SECRET = `whsec_${Buffer.from('coinshop bench game secret 0123').toString('base64')}`;

/** The game server's notification endpoint: answers 204 to each delivery, counts them at GET /. */
export const gameReceiver = () => start(process.execPath, ts('bench/game-receiver.ts'), {});

/** Makes `count` customers with a saved card, through the API. */
export async function buyers(url: string, count: number): Promise<string[]> {
  const users: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = String((await api(url, '/stripe/create-customer', { email: `b${i}@example.com`, name: `Buyer ${i}` }))['user_id']);
    await api(url, '/stripe/attach-payment-method', { user_id: id, payment_method_id: 'pm_card_visa' });
    users.push(id);
  }
  return users;
}

/** The return origin the benchmark's Checkout Sessions use (coinshop is started allowing it). */
export const CHECKOUT_ORIGIN = 'https://shop.example';

/** autocannon options that open Stripe Checkout Sessions for package_1 by `users` in turn, each with its own Idempotency-Key. */
export function checkoutLoad(users: string[], tag: string): Pick<autocannon.Options, 'method' | 'headers' | 'requests'> {
  return keyedLoad(
    tag,
    (userId) => ({
      user_id: userId,
      package_id: 'package_1',
      success_url: `${CHECKOUT_ORIGIN}/done?session={CHECKOUT_SESSION_ID}`,
      cancel_url: `${CHECKOUT_ORIGIN}/shop`,
    }),
    users,
  );
}

/** autocannon options for purchases of package_1 by `users` in turn, each with its own Idempotency-Key. */
export function purchaseLoad(users: string[], tag: string): Pick<autocannon.Options, 'method' | 'headers' | 'requests'> {
  return keyedLoad(tag, (userId) => ({ user_id: userId, package_id: 'package_1' }), users);
}

function keyedLoad(
  tag: string,
  body: (userId: string | undefined) => Record<string, unknown>,
  users: string[],
): Pick<autocannon.Options, 'method' | 'headers' | 'requests'> {
  let n = 0;
  return {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    requests: [
      {
        setupRequest: (request) => {
          n += 1;
          return {
            ...request,
            headers: { ...request.headers, 'idempotency-key': `bench-${tag}-${n}` },
            body: JSON.stringify(body(users[n % users.length])),
          };
        },
      },
    ],
  };
}

/** The Stripe-compatible server on loopback, answering after `latencyMs`. */
export const fakeStripe = (latencyMs: number) => start(process.execPath, ts('bench/fake-stripe-server.ts', String(latencyMs)), {});

/** CPU seconds (user + system) a process has used so far, from /proc (0 where it cannot be read: it has ended). */
export function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    // Fields 14 and 15 (utime, stime), in clock ticks of 1/100 s; the command name (2) may hold spaces.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** The local ports of a process's TCP connections to `port` (from its socket descriptors and /proc/net/tcp). */
function connectionPorts(pid: number, port: number): Set<number> {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const link = (() => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          return '';
        }
      })();
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode) inodes.add(inode);
    }
  } catch {
    return new Set();
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1]?.split(':')[1];
      const remote = fields[2]?.split(':')[1];
      if (local && remote && parseInt(remote, 16) === port && inodes.has(fields[9] ?? '')) ports.add(parseInt(local, 16));
    }
  }
  return ports;
}

/**
 * The PostgreSQL backends serving `clients`' connections: their process ids, matched by the clients'
 * local ports in pg_stat_activity. Other work on the same server (other databases, other processes'
 * connections) is left out; the server's shared processes (WAL writer, checkpointer) are not backends.
 */
export async function postgresBackends(
  admin: { query: (sql: string) => Promise<{ rows: { pid: number; client_port: number | null }[] }> },
  clients: number[],
  port: number,
): Promise<number[]> {
  const ports = new Set<number>();
  for (const pid of clients) for (const local of connectionPorts(pid, port)) ports.add(local);
  const { rows } = await admin.query('select pid, client_port from pg_stat_activity where client_port is not null');
  return rows.filter((row) => row.client_port !== null && ports.has(row.client_port)).map((row) => row.pid);
}
