import { once } from 'node:events';
import t from 'tap';
import { freshDatabaseUrl } from './support/database.js';
import { startGameServer } from './support/game-server.js';
import { startServer } from './support/process.js';

async function call(url: string, method = 'GET', body?: object) {
  const response = await fetch(url, {
    method,
    ...(body ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function until(check: () => boolean, what: string, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

t.test(
  'a process killed (SIGKILL) during a delivery: after the restart the notification is delivered, with the same webhook-id',
  async (t) => {
    const game = await startGameServer();
    t.teardown(() => game.close());
    game.plan('hang');
    const env = {
      DATABASE_URL: await freshDatabaseUrl({ shared: true }),
      GAME_WEBHOOK_URL: game.url,
      GAME_WEBHOOK_SECRET: game.secret,
      GAME_WEBHOOK_TIMEOUT_MS: '2000',
    };

    const first = await startServer(env);
    t.teardown(() => first.child.kill('SIGKILL'));
    const customer = await call(`${first.url}/stripe/create-customer`, 'POST', { email: 'p@example.com', name: 'P' });
    const userId = String(customer.body['user_id']);
    await call(`${first.url}/stripe/attach-payment-method`, 'POST', { user_id: userId, payment_method_id: 'pm_card_visa' });
    const bought = await call(`${first.url}/stripe/purchase-currency`, 'POST', { user_id: userId, package_id: 'package_1' });
    t.equal(bought.status, 200);
    await until(() => game.attempts.length === 1, 'the delivery has started');
    const killedAttempt = game.attempts[0];
    t.equal(killedAttempt?.endedAt, undefined, 'the game has not answered yet');
    first.child.kill('SIGKILL');
    await once(first.child, 'exit');

    const second = await startServer(env);
    t.teardown(() => second.child.kill('SIGKILL'));
    // The dead process's lease (its timeout and 5 s) runs out; then the new one sends it again.
    await until(() => game.accepted().size === 1, 'delivered after the restart');
    t.equal(game.attempts.length, 2);
    t.equal(game.attempts[1]?.id, killedAttempt?.id, 'the same webhook-id');
    t.ok(
      game.attempts.every((a) => a.verified),
      'both attempts were signed',
    );
    const [notification] = (await call(`${second.url}/stripe/notifications`)).body['notifications'] as Record<string, unknown>[];
    t.equal(notification?.['id'], killedAttempt?.id);
    const delivered = async () =>
      ((await call(`${second.url}/stripe/notifications/${String(killedAttempt?.id)}`)).body['delivery'] as Record<string, unknown>)[
        'status'
      ];
    const deadline = Date.now() + 10_000;
    while ((await delivered()) !== 'delivered' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    t.equal(await delivered(), 'delivered');
    second.child.kill('SIGTERM');
    t.same(await once(second.child, 'exit'), [0, null]);
  },
);
