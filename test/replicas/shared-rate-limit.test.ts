/**
 * With REDIS_URL, replicas share their rate-limit counters: a key's limit holds however a load
 * balancer spreads its requests. Without it each replica counts on its own. A Redis that cannot be
 * reached lets requests through rather than taking the shop down with it.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { testConfig } from '../support/helper.js';
import { TEST_REDIS_URL as REDIS_URL } from '../support/services.js';

const KEY = 'rate_limit_test_key_0123456789abcdef';

async function replicas(t: Test, env: Record<string, string>) {
  const apps = await Promise.all([0, 1].map(async () => buildApp({ config: await testConfig({ API_KEYS: KEY, RATE_LIMIT_PER_MINUTE: '5', ...env }) })));
  for (const app of apps) t.teardown(() => app.close());
  return (i: number) =>
    apps[i % 2]!.inject({ method: 'GET', url: '/stripe/packages', headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.statusCode);
}

t.test('with REDIS_URL the limit is shared: five requests a minute in all, across both replicas', async (t) => {
  const prefix = `coinshop-test-${randomBytes(4).toString('hex')}:`;
  const redis = new Redis(REDIS_URL);
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });
  const send = await replicas(t, { REDIS_URL, REDIS_KEY_PREFIX: prefix });
  const statuses = [];
  for (let i = 0; i < 8; i++) statuses.push(await send(i));
  t.same(statuses, [200, 200, 200, 200, 200, 429, 429, 429], 'the sixth request is refused, whichever replica gets it');
  t.ok((await redis.keys(`${prefix}rate-limit:*`)).length > 0, 'the counter lives in Redis, under the prefix');
});

t.test('without REDIS_URL each replica counts on its own', async (t) => {
  const send = await replicas(t, {});
  const statuses = [];
  for (let i = 0; i < 10; i++) statuses.push(await send(i));
  t.same(statuses, Array<number>(10).fill(200), 'five on each replica');
  t.equal(await send(0), 429, "then the first replica's limit is reached");
});

t.test('a Redis that cannot be reached lets requests through instead of failing them', async (t) => {
  // Nothing listens on port 1: every call to Redis fails at once.
  const send = await replicas(t, { REDIS_URL: 'redis://127.0.0.1:1' });
  const statuses = [];
  for (let i = 0; i < 8; i++) statuses.push(await send(i));
  t.same(statuses, Array<number>(8).fill(200));
});
