/**
 * The database goes away under a running coinshop and comes back: requests fail with 503 while it
 * is gone, the process stays up, and it recovers by itself. The "restart" is a TCP relay between
 * coinshop and PostgreSQL that drops every connection and refuses new ones, then lets them through
 * again — what a restart or failover looks like from the client — without disturbing the tests
 * running beside this one on the same server.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { freshPostgresUrl } from '../support/database.js';
import { buy, customerWithCard, expectProblem, get, json, testConfig } from '../support/helper.js';

interface Relay {
  port: number;
  /** Drops every open connection and refuses new ones. */
  down: () => void;
  up: () => void;
  close: () => Promise<void>;
}

async function startRelay(target: { host: string; port: number }): Promise<Relay> {
  const sockets = new Set<Socket>();
  let accepting = true;
  const server: Server = createServer((client) => {
    if (!accepting) {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('relay: no port');
  return {
    port: address.port,
    down: () => {
      accepting = false;
      for (const socket of sockets) socket.destroy();
    },
    up: () => {
      accepting = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

t.test('a database restart: 503s while it is down, then recovery without restarting the process', async (t) => {
  const direct = new URL(await freshPostgresUrl());
  const relay = await startRelay({ host: direct.hostname, port: Number(direct.port || 5432) });
  t.teardown(() => relay.close());
  const viaRelay = new URL(direct.toString());
  viaRelay.hostname = '127.0.0.1';
  viaRelay.port = String(relay.port);

  const app = await buildApp({ config: await testConfig({ DATABASE_URL: viaRelay.toString() }) });
  t.teardown(() => app.close());
  const { user_id } = await customerWithCard(app);
  t.equal((await buy(app, user_id, 'package_1')).statusCode, 200);
  t.equal((await app.inject({ method: 'GET', url: '/ready' })).statusCode, 200);

  relay.down();
  const ready = await app.inject({ method: 'GET', url: '/ready' });
  expectProblem(t, ready, 503, 'service_unavailable', 'The database is not reachable right now; retry in a few seconds');
  t.equal(ready.headers['retry-after'], '5', 'Retry-After tells clients when to come back');
  const read = await get(app, `/stripe/customer/${user_id}`);
  expectProblem(t, read, 503, 'service_unavailable');
  t.equal(read.headers['retry-after'], '5');
  expectProblem(t, await buy(app, user_id, 'package_2'), 503, 'service_unavailable');
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200, 'the process itself is alive');

  relay.up();
  // The pool opens new connections on demand: the first request after the restart succeeds.
  t.equal((await app.inject({ method: 'GET', url: '/ready' })).statusCode, 200, 'ready again, with no restart of coinshop');
  t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 100, 'nothing was lost or half-done');
  t.equal((await buy(app, user_id, 'package_2')).statusCode, 200, 'purchases work again');
  t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 400);
  t.same(await app.store.balanceMismatches(), []);
});
