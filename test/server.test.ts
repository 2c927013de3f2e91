import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type AddressInfo } from 'node:net';
import t from 'tap';
import { freshDatabaseUrl } from './support/database.js';
import { buildTestApp, testConfig } from './support/helper.js';
import { exitCode, spawnProject, startServer } from './support/process.js';
import packageJson from '../package.json' with { type: 'json' };
import { projectFile } from './support/project.js';

async function call(url: string, init?: { method: string; body: object }) {
  const response = await fetch(url, {
    method: init?.method ?? 'GET',
    ...(init ? { body: JSON.stringify(init.body), headers: { 'content-type': 'application/json' } } : {}),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

t.test('the server runs the seed flow over real HTTP, stops cleanly on SIGTERM, and keeps its data', async (t) => {
  const env = { DATABASE_URL: await freshDatabaseUrl({ shared: true }) };

  const first = await startServer(env);
  const customer = await call(`${first.url}/stripe/create-customer`, {
    method: 'POST',
    body: { email: 'customer@example.com', name: 'Customer Name' },
  });
  t.equal(customer.status, 200);
  const userId = String(customer.body['user_id']);
  t.equal(
    (
      await call(`${first.url}/stripe/attach-payment-method`, {
        method: 'POST',
        body: { user_id: userId, payment_method_id: 'pm_card_visa' },
      })
    ).status,
    200,
  );
  const purchase = await call(`${first.url}/stripe/purchase-currency`, {
    method: 'POST',
    body: { user_id: userId, package_id: 'package_3' },
  });
  t.equal(purchase.body['new_balance'], 700);

  first.child.kill('SIGTERM');
  const code = await exitCode(first.child);
  t.equal(code, 0, 'SIGTERM closes the server with exit code 0');
  const lines = first
    .output()
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  t.ok(
    lines.some((l) => String(l['msg']).includes('SIMULATED')),
    'it says loudly that payments are simulated',
  );
  const requests = lines.filter((l) => l['msg'] === 'request');
  t.same(
    requests.map((l) => l['url']),
    ['/stripe/create-customer', '/stripe/attach-payment-method', '/stripe/webhook', '/stripe/purchase-currency'],
    "one log line per request, the simulated gateway's signed webhook included",
  );
  t.match(requests[0], { reqId: String, method: 'POST', url: '/stripe/create-customer', statusCode: 200, ms: Number });

  const second = await startServer(env);
  t.teardown(() => second.child.kill('SIGKILL'));
  const after = await call(`${second.url}/stripe/customer/${userId}`);
  t.equal(after.body['currency_balance'], 700, 'the balance survived the restart');
  second.child.kill('SIGTERM');
  t.same(await once(second.child, 'exit'), [0, null]);
});

t.test('a bad setting stops the start with one line that names it', async (t) => {
  const { child, stderr } = spawnProject('src/server.ts', [], { PORT: 'eighty', DATABASE_URL: ':memory:' });
  const code = await exitCode(child);
  t.equal(code, 1);
  t.equal(stderr(), 'Invalid configuration: PORT must be an integer from 0 to 65535 (got "eighty")\n');
});

t.test('SIGTERM during a slow purchase: the purchase completes and is recorded, then the process exits 0', async (t) => {
  const { startFakeStripe } = await import('./support/fake-stripe.js');
  const stripe = await startFakeStripe({ latencyMs: 1500 });
  t.teardown(() => stripe.close());
  const databaseUrl = await freshDatabaseUrl({ shared: true });
  const apiKey = 'ck_test_graceful_0123456789abcdefghij';
  const server = await startServer({
    DATABASE_URL: databaseUrl,
    STRIPE_SECRET_KEY: 'sk_test_graceful',
    STRIPE_API_BASE: stripe.url,
    API_KEYS: apiKey,
  });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` };
  const customer = (await (
    await fetch(`${server.url}/stripe/create-customer`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ email: 'a@example.com', name: 'A' }),
    })
  ).json()) as { user_id: string };
  await fetch(`${server.url}/stripe/attach-payment-method`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ user_id: customer.user_id, payment_method_id: 'pm_card_visa' }),
  });
  const purchase = fetch(`${server.url}/stripe/purchase-currency`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ user_id: customer.user_id, package_id: 'package_1' }),
  });
  while (stripe.requests.filter((r) => r.path === '/v1/payment_intents').length === 0) await new Promise((r) => setTimeout(r, 20));
  server.child.kill('SIGTERM');
  const response = await purchase;
  t.equal(response.status, 200, 'the in-flight purchase finished');
  t.match(await response.json(), { status: 'success', new_balance: 100 });
  const code = await exitCode(server.child);
  t.equal(code, 0);
  t.notMatch(server.output(), apiKey, 'the API key never reaches the logs');
  t.notMatch(server.output(), 'sk_test_graceful', 'nor the Stripe key');

  const { buildApp } = await import('../src/app.js');
  const reopened = await buildApp({ config: await testConfig({ DATABASE_URL: databaseUrl }) });
  t.teardown(() => reopened.close());
  t.match(await reopened.store.listPurchases(customer.user_id), [{ status: 'succeeded', coins: 100 }], 'recorded before the exit');
});

t.test(
  'SIGTERM with a connection that never sent a request (a preconnect) and an idle keep-alive one: the server closes both, then exits 0',
  async (t) => {
    // A grace period this short makes a stop that waits on either connection exit 1, not 0.
    const server = await startServer({ DATABASE_URL: await freshDatabaseUrl({ shared: true }), SHUTDOWN_GRACE_MS: '1000' });
    t.teardown(() => server.child.kill('SIGKILL'));
    const { hostname, port } = new URL(server.url);
    const events: string[] = [];
    const open = async (name: string) => {
      const socket = connect(Number(port), hostname);
      await once(socket, 'connect');
      return { socket, closed: once(socket, 'close').then(() => events.push(`${name} closed`)) };
    };
    const preconnect = await open('preconnect');
    const used = await open('keep-alive');
    used.socket.write(`GET /health HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
    const [answer] = (await once(used.socket, 'data')) as [Buffer];
    t.match(answer.toString(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*connection: keep-alive/i, 'the used connection is kept alive');

    const exited = once(server.child, 'exit').then(([code]: unknown[]) => (events.push('exited'), code));
    server.child.kill('SIGTERM');
    const code = await exited;
    await Promise.all([preconnect.closed, used.closed]);
    t.equal(code, 0, 'the stop did not wait for the connections to time out');
    if (code !== 0) t.comment(server.output().slice(-600));
    t.same(
      events,
      ['keep-alive closed', 'preconnect closed', 'exited'],
      'the idle one at once, the quiet one after its grace, both before the exit',
    );
  },
);

t.test('a request already sent but not yet read when closing starts gets an answer (503, closing), not a reset', async (t) => {
  const app = await buildTestApp(t);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const socket = connect((app.server.address() as AddressInfo).port, '127.0.0.1');
  await once(socket, 'connect');
  while ((await new Promise<number>((resolve) => app.server.getConnections((_err, count) => resolve(count)))) === 0)
    await new Promise((r) => setTimeout(r, 5));
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  // Written to the kernel now; the server reads it only at its next poll, after close() has begun.
  socket.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  const closed = once(socket, 'close');
  await app.close();
  await closed;
  t.match(received, /^HTTP\/1\.1 503 Service Unavailable\r\n[\s\S]*connection: close/i);
});

t.test('production mode without its settings stops at once, naming what is missing', async (t) => {
  const { child, stderr } = spawnProject('src/server.ts', [], {
    NODE_ENV: 'production',
    DATABASE_URL: ':memory:',
    STRIPE_SECRET_KEY: 'sk_live_x',
  });
  const code = await exitCode(child);
  t.equal(code, 1);
  t.match(stderr(), /^Invalid configuration: API_KEYS is required when NODE_ENV=production \(.*\)\n$/);
});

t.test('the image starts the server as npm start does, with the same node options', async (t) => {
  const dockerfile = readFileSync(projectFile('Dockerfile'), 'utf8');
  const command = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1];
  t.ok(command, 'the Dockerfile has an exec-form CMD');
  t.same(JSON.parse(command ?? '[]'), packageJson.scripts.start.split(' '), `CMD ${command} runs "${packageJson.scripts.start}"`);
  t.match(packageJson.scripts.start, /--max-semi-space-size=\d+ /, 'with the young generation capped (docs/benchmarks.md, Memory)');
  t.match(
    packageJson.scripts.start,
    /--heap-growing-percent=50 /,
    'with the heap grown at most 50 % past live data between full collections (test/heap.test.ts)',
  );
});

/** When a socket has closed (`once(socket, 'close')` would reject on the ECONNRESET a cut-off client may see). */
const closed = (socket: import('node:net').Socket) => new Promise<void>((resolve) => socket.once('close', () => resolve()));

/** A client that sends `head`, then `body` one byte every `everyMs`, and reports when the server closed it and what it answered. */
async function dribble(port: number, head: string, body: string, everyMs: number) {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const started = Date.now();
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  socket.on('error', () => undefined);
  const ended = closed(socket);
  socket.write(head);
  let sent = 0;
  const timer = setInterval(() => {
    if (sent < body.length && !socket.destroyed) socket.write(body[sent++] ?? '');
  }, everyMs);
  await ended;
  clearInterval(timer);
  return { ms: Date.now() - started, received };
}

t.test('REQUEST_TIMEOUT_MS bounds the whole request: a client dribbling its headers or its body is cut off when it runs out', async (t) => {
  const app = await buildTestApp(t, { env: { REQUEST_TIMEOUT_MS: '1500' } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  // At a byte every 100 ms this body would take 15 s.
  const body = JSON.stringify({ email: 'slow@example.com', name: 'Slow Loris' }).padEnd(150, ' ');

  const slowBody = await dribble(
    port,
    `POST /stripe/create-customer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
    body,
    100,
  );
  t.ok(
    slowBody.ms >= 1400 && slowBody.ms < 6000,
    `a slow body is cut off after about 1.5 s, not the 30 s Node checks at by default (took ${slowBody.ms} ms)`,
  );
  t.match(slowBody.received, /^HTTP\/1\.1 408 Request Timeout\r\n/, 'with a 408');

  const headers = `GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Padding: ${'a'.repeat(200)}\r\n\r\n`;
  const slowHeaders = await dribble(port, '', headers, 100);
  t.ok(slowHeaders.ms >= 1400 && slowHeaders.ms < 6000, `slow headers are cut off after about 1.5 s (took ${slowHeaders.ms} ms)`);
  t.match(slowHeaders.received, /^HTTP\/1\.1 408 Request Timeout\r\n/, 'with a 408');
  t.equal(
    await app.store.db
      .selectFrom('customers')
      .select('user_id')
      .execute()
      .then((rows) => rows.length),
    0,
    'nothing was created',
  );
});

t.test(
  'MAX_CONNECTIONS caps the connections held open at once: one more is closed at once; once one ends, a new one is served',
  async (t) => {
    const app = await buildTestApp(t, { env: { MAX_CONNECTIONS: '2' } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const open = async () => {
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      await once(socket, 'connect');
      return socket;
    };
    const held = [await open(), await open()];
    const refused = await open();
    let answered = '';
    refused.on('data', (chunk: Buffer) => (answered += chunk.toString()));
    refused.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await closed(refused);
    t.equal(answered, '', 'the third connection is closed without an answer');

    const first = held[0]!;
    first.destroy();
    while ((await new Promise<number>((resolve) => app.server.getConnections((_err, count) => resolve(count)))) > 1)
      await new Promise((r) => setTimeout(r, 5));
    const later = await open();
    later.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    let reply = '';
    later.on('data', (chunk: Buffer) => (reply += chunk.toString()));
    await closed(later);
    t.match(reply, /^HTTP\/1\.1 200 OK\r\n/, 'a connection under the cap is served');
    for (const socket of held) socket.destroy();
  },
);

t.test(
  'headers too large (431), a request timeout (408) and an unparseable request (400) are problem documents with the API headers',
  async (t) => {
    const app = await buildTestApp(t, { env: { REQUEST_TIMEOUT_MS: '1000' } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const raw = async (request: string) => {
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      await once(socket, 'connect');
      let received = '';
      socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
      socket.write(request);
      await closed(socket);
      const [head = '', body = ''] = received.split('\r\n\r\n');
      const headers = Object.fromEntries(
        head
          .split('\r\n')
          .slice(1)
          .map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
      );
      return { status: head.split('\r\n')[0], headers, body: body === '' ? {} : (JSON.parse(body) as Record<string, unknown>) };
    };
    const cases = {
      431: [
        `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
        'HTTP/1.1 431 Request Header Fields Too Large',
        'headers_too_large',
        'The request headers are too large (at most 16 KiB)',
      ],
      408: [
        'GET /health HTTP/1.1\r\nHost: x\r\n',
        'HTTP/1.1 408 Request Timeout',
        'request_timeout',
        'The request was not sent in time (REQUEST_TIMEOUT_MS)',
      ],
      400: [
        'NOT HTTP AT ALL\r\n\r\n',
        'HTTP/1.1 400 Bad Request',
        'bad_request',
        'Malformed request: the HTTP request could not be parsed',
      ],
    } as const;
    for (const [status, [request, line, code, detail]] of Object.entries(cases)) {
      const answer = await raw(request);
      t.equal(answer.status, line, `${status}: status line`);
      t.match(
        answer.headers,
        {
          'content-type': 'application/problem+json; charset=utf-8',
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
          'x-frame-options': 'DENY',
          connection: 'close',
        },
        `${status}: the API's headers`,
      );
      t.match(
        answer.body,
        { type: `urn:coinshop:problem:${code}`, status: Number(status), code, detail, request_id: String },
        `${status}: a problem document`,
      );
      t.equal(answer.body['request_id'], answer.headers['x-request-id']);
    }
  },
);
