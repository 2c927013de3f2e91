/**
 * Two coinshop replicas on one PostgreSQL deliver one outbox to a slow game server: every
 * notification arrives, and no notification is ever being sent by both at once.
 */
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { freshPostgresUrl } from '../support/database.js';
import { dueNow, startGameServer } from '../support/game-server.js';
import { buy, customerWithCard, testConfig } from '../support/helper.js';

t.test('two replicas share the deliveries, and never send one notification at the same time', async (t) => {
  const game = await startGameServer();
  t.teardown(() => game.close());
  game.delayMs = 150;
  // Some attempts fail, so retries are taken by whichever replica comes first.
  game.plan('fail', 'accept', 'fail', 'fail', 'accept', 'close');
  const env = {
    DATABASE_URL: await freshPostgresUrl(),
    DATABASE_POOL_SIZE: '6',
    GAME_WEBHOOK_URL: game.url,
    GAME_WEBHOOK_SECRET: game.secret,
  };
  const apps = await Promise.all([0, 1].map(async () => buildApp({ config: await testConfig(env) })));
  for (const app of apps) t.teardown(() => app.close());
  await Promise.all(apps.map((app) => app.ready()));

  // Purchases on both replicas, so both are woken; each also polls what the other wrote.
  const players = await Promise.all(apps.map((app) => customerWithCard(app)));
  await Promise.all(
    Array.from({ length: 24 }, (_, i) => {
      const app = apps[i % 2]!;
      return buy(app, players[i % 2]!.user_id, 'package_1');
    }),
  );
  const store = apps[0]!.store;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const rows = await store.db.selectFrom('notifications').select(['status']).execute();
    if (rows.every((row) => row.status === 'delivered')) break;
    if (Date.now() > deadline) throw new Error(`not delivered: ${JSON.stringify(rows)}`);
    // Retries come due at once instead of after their backoff.
    await dueNow(store);
    for (const app of apps) app.notifier?.wake();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  const outbox = await store.db.selectFrom('notifications').select(['id']).execute();
  t.equal(outbox.length, 24);
  t.same([...game.accepted().keys()].sort(), outbox.map((row) => row.id).sort(), 'the game holds exactly the outbox');
  t.ok(game.attempts.length > 24, `retries happened (${game.attempts.length} attempts)`);
  let overlaps = 0;
  for (const id of new Set(game.attempts.map((a) => a.id))) {
    const attempts = game.attempts.filter((a) => a.id === id).sort((a, b) => a.startedAt - b.startedAt);
    for (let i = 1; i < attempts.length; i++) {
      const before = attempts[i - 1]!;
      if (before.endedAt === undefined || attempts[i]!.startedAt < before.endedAt) overlaps++;
    }
  }
  t.equal(overlaps, 0, 'no two attempts at one notification overlapped');
});
