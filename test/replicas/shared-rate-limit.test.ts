/**
 * With REDIS_URL, replicas share their rate-limit counters: a key's limit holds however a load
 * balancer spreads its requests. Without it each replica counts on its own. While Redis cannot be
 * reached each replica counts on its own too, rather than taking the shop down or letting all through.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { testConfig } from '../support/helper.js';
import { TEST_REDIS_URL as REDIS_URL } from '../support/services.js';

const KEY = 'rate_limit_test_key_0123456789abcdef';

async function replicas(t: Test, env: Record<string, string>) {
  const apps = await Promise.all(
    [0, 1].map(async () => buildApp({ config: await testConfig({ API_KEYS: KEY, RATE_LIMIT_PER_MINUTE: '5', ...env }) })),
  );
  for (const app of apps) t.teardown(() => app.close());
  const send = (i: number) =>
    apps[i % 2]!.inject({ method: 'GET', url: '/stripe/packages', headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.statusCode);
  return { send, apps };
}

t.test('with REDIS_URL the limit is shared: five requests a minute in all, across both replicas', async (t) => {
  const prefix = `coinshop-test-${randomBytes(4).toString('hex')}:`;
  const redis = new Redis(REDIS_URL);
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });
  const { send, apps } = await replicas(t, { REDIS_URL, REDIS_KEY_PREFIX: prefix });
  const statuses = [];
  for (let i = 0; i < 8; i++) statuses.push(await send(i));
  t.same(statuses, [200, 200, 200, 200, 200, 429, 429, 429], 'the sixth request is refused, whichever replica gets it');
  t.ok((await redis.keys(`${prefix}rate-limit:*`)).length > 0, 'the counter lives in Redis, under the prefix');
  t.equal(
    (await apps[0]!.metrics.registry.getSingleMetricAsString('coinshop_rate_limit_shared')).split('\n').at(-1),
    'coinshop_rate_limit_shared 1',
  );
});

t.test('without REDIS_URL each replica counts on its own', async (t) => {
  const { send } = await replicas(t, {});
  const statuses = [];
  for (let i = 0; i < 10; i++) statuses.push(await send(i));
  t.same(statuses, Array<number>(10).fill(200), 'five on each replica');
  t.equal(await send(0), 429, "then the first replica's limit is reached");
});

t.test('a Redis that cannot be reached: each replica limits on its own, and says so in a log line and a metric', async (t) => {
  const lines: string[] = [];
  // Nothing listens on port 1: every call to Redis fails at once.
  const app = await buildApp({
    config: await testConfig({ API_KEYS: KEY, RATE_LIMIT_PER_MINUTE: '5', REDIS_URL: 'redis://127.0.0.1:1' }),
    logger: { level: 'warn', stream: { write: (line: string) => void lines.push(line) } },
  });
  t.teardown(() => app.close());
  const send = () =>
    app.inject({ method: 'GET', url: '/stripe/packages', headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.statusCode);
  const statuses = [];
  for (let i = 0; i < 7; i++) statuses.push(await send());
  t.same(statuses, [200, 200, 200, 200, 200, 429, 429], 'the limit still holds, counted in this process');
  const warnings = lines.map((line) => JSON.parse(line) as { msg: string }).filter((l) => l.msg.startsWith('rate limit:'));
  t.same(
    warnings.map((l) => l.msg),
    ['rate limit: Redis unreachable; counting requests in each process until it is back'],
    'said once',
  );
  const metrics = await app.metrics.registry.metrics();
  t.match(metrics, /^coinshop_rate_limit_shared 0$/m, 'the gauge says the counters are not shared');
  t.match(metrics, /^coinshop_rate_limit_local_fallback_total 7$/m, 'and counts the requests counted locally');
});
