import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify';
import { loadCatalog, type Catalog } from './catalog.js';
import type { Config } from './config.js';
import { problemDocument, ProblemError } from './errors.js';
import paymentsGateway from './gateway/index.js';
import type { PaymentsGateway } from './gateway/types.js';
import errors from './plugins/errors.js';
import openapi from './plugins/openapi.js';
import catalogRoutes from './routes/catalog/index.js';
import checkoutRoutes from './routes/checkout/index.js';
import checkoutSessionRoutes from './routes/checkout-sessions/index.js';
import simulatedCheckoutPage from './routes/checkout/simulated-checkout.js';
import clientTokenRoutes from './routes/client-tokens/index.js';
import customerRoutes from './routes/customers/index.js';
import paymentMethodRoutes from './routes/payment-methods/index.js';
import purchaseRoutes from './routes/purchases/index.js';
import ledgerRoutes from './routes/ledger/index.js';
import notificationRoutes from './routes/notifications/index.js';
import simulatorRoutes from './routes/simulator/index.js';
import webhookRoutes from './routes/webhooks/index.js';
import idempotency from './plugins/idempotency.js';
import notifier from './plugins/notifier.js';
import reconciler from './plugins/reconciler.js';
import identity, { requireApiKey } from './plugins/auth.js';
import metrics from './plugins/metrics.js';
import protection, { API_SECURITY_HEADERS } from './plugins/protection.js';
import healthRoutes from './routes/health/index.js';
import storePlugin from './store/plugin.js';
import { RequestLogger } from './logger.js';
import { lazySerializers } from './serialization.js';
import { illFormedString, UNSTORABLE_TEXT, validatorCompiler } from './validation.js';
import packageJson from '../package.json' with { type: 'json' };

export interface AppOptions {
  config: Config;
  /** A gateway to use instead of the one the config selects (tests inject one). */
  gateway?: PaymentsGateway;
  /** Fastify's logger option; off unless given. */
  logger?: FastifyServerOptions['logger'];
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    catalog: Catalog;
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** How long a closing server waits for a connection that has sent nothing yet before closing it. */
const QUIET_CONNECTION_GRACE_MS = 250;

/** One log line per request, written when it completes, with its id, route, status and duration. */
class OneLinePerRequest extends LogController {
  /**
   * Each app's logger without redaction, for the line of a request that completed: it holds only the
   * four fields below, none a secret, and running the redaction paths over them cost more than
   * writing the line. An error's line keeps the redacting logger (an error can carry a request).
   */
  readonly #plain = new WeakMap<FastifyBaseLogger, FastifyBaseLogger>();

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const line = {
      method: request.method,
      url: request.url,
      statusCode: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10,
    };
    if (error) {
      reply.log.error({ ...line, err: error }, 'request errored');
      return;
    }
    const logger = request.server.log;
    let plain = this.#plain.get(logger);
    if (plain === undefined) {
      plain = logger.child({}, { redact: [] });
      this.#plain.set(logger, plain);
    }
    plain.info({ reqId: request.id, ...line }, 'request');
  }
}

/** The raw HTTP answer to a request Node's parser refused: a problem document with the API's headers. */
function clientErrorAnswer(errorCode: string | undefined): string {
  const problem =
    errorCode === 'HPE_HEADER_OVERFLOW'
      ? new ProblemError('headers_too_large', 'The request headers are too large (at most 16 KiB)')
      : errorCode === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new ProblemError('request_timeout', 'The request was not sent in time (REQUEST_TIMEOUT_MS)')
        : new ProblemError('bad_request', 'Malformed request: the HTTP request could not be parsed');
  const requestId = randomUUID();
  const body = JSON.stringify(problemDocument(problem, requestId));
  const headers = {
    'content-type': 'application/problem+json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    'x-request-id': requestId,
    ...API_SECURITY_HEADERS,
    connection: 'close',
  };
  const lines = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? ''}\r\n${lines}\r\n${body}`;
}

/** TRUST_PROXY as Fastify takes it: a hop count becomes "trust the nearest n proxies". */
function trustedProxies(setting: string | undefined): FastifyServerOptions['trustProxy'] {
  if (setting === undefined) return false;
  if (!/^\d+$/.test(setting)) return setting;
  const hops = Number(setting);
  return (_address: string, hop: number) => hop < hops;
}

/** Builds the coinshop app, ready for `inject` or `listen`. It never listens by itself. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const catalog = loadCatalog(config.CATALOG_FILE);

  const app = Fastify({
    schemaController: { compilersFactory: { buildSerializer: lazySerializers } },
    logger: options.logger ?? false,
    logController: new OneLinePerRequest(),
    ...(options.logger
      ? { childLoggerFactory: (logger, bindings, childOptions) => new RequestLogger(logger, bindings, childOptions) }
      : {}),
    // A caller's X-Request-Id is kept when it is sane, so logs join up across services.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    bodyLimit: 64 * 1024,
    // Longer than any id the API takes (255), so a long id fails validation with a clear 400.
    routerOptions: { maxParamLength: 300 },
    // Requests Fastify refuses before routing (a malformed URL) still get a problem document.
    frameworkErrors: (error, request, reply) => {
      const body = JSON.stringify(problemDocument(new ProblemError('bad_request', `Malformed request: ${error.message}`), request.id));
      reply.raw.writeHead(400, {
        'content-type': 'application/problem+json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        'x-request-id': request.id,
        ...API_SECURITY_HEADERS,
      });
      reply.raw.end(body);
    },
    // What Node's HTTP parser refuses before Fastify sees a request (headers over 16 KiB, a request
    // not sent within REQUEST_TIMEOUT_MS, bytes that are not HTTP) is a problem document too.
    clientErrorHandler: (error, socket) => {
      if ((error as NodeJS.ErrnoException).code === 'ECONNRESET' || socket.destroyed) return;
      if (socket.writable) socket.write(clientErrorAnswer((error as NodeJS.ErrnoException).code));
      socket.destroy(error);
    },
    // A client gets this long to send its whole request, headers and body (slow-loris protection).
    // Node checks the deadlines only every connectionsCheckingInterval (30 s by default) and its
    // headersTimeout stays 60 s unless set: both follow the setting, so it holds to within a second.
    http: {
      requestTimeout: config.REQUEST_TIMEOUT_MS,
      headersTimeout: config.REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: Math.min(1000, config.REQUEST_TIMEOUT_MS / 2),
    },
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    // Behind a load balancer, the client's address (for per-IP rate limits and logs) comes from the
    // X-Forwarded-For entries the configured proxies added; otherwise the header is ignored.
    trustProxy: trustedProxies(config.TRUST_PROXY),
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setValidatorCompiler(validatorCompiler());
  // Text must be something every engine stores as it is (see UNSTORABLE_TEXT): refused up front.
  // (Hooks on every request are callback hooks where they need not wait: no promise per request.)
  app.addHook('preValidation', (request, _reply, done) => {
    const bad =
      illFormedString(request.body, 'body') ?? illFormedString(request.query, 'querystring') ?? illFormedString(request.params, 'params');
    if (bad === undefined) return done();
    done(
      new ProblemError('validation_error', `Invalid input: ${bad} ${UNSTORABLE_TEXT}`, {
        errors: [{ field: bad, message: UNSTORABLE_TEXT }],
      }),
    );
  });
  // The API speaks JSON only: anything else is 415, not a string body that fails validation.
  app.removeContentTypeParser('text/plain');
  app.decorate('config', config);
  app.decorate('catalog', catalog);

  // Once closing, answers end their connection, so in-flight requests finish and the process can
  // exit at once instead of waiting for idle keep-alive connections to time out. A connection that
  // has not sent a byte (a browser's or a load balancer's preconnect) is closed too: Node closes
  // only the idle connections that have had a request, and would wait for the others until their
  // clients dropped them. It is given QUIET_CONNECTION_GRACE_MS first, since a request already sent
  // may not have been read yet (a busy event loop): it then gets Fastify's 503 for a closing server
  // with `Connection: close`, which says nothing was done, rather than a reset. (Fastify stops
  // listening in the same tick as this hook, so no connection comes after it.)
  if (config.MAX_CONNECTIONS > 0) app.server.maxConnections = config.MAX_CONNECTIONS;
  let closing = false;
  const connections = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  app.addHook('preClose', (done) => {
    closing = true;
    const quiet = [...connections].filter((socket) => socket.bytesRead === 0);
    if (quiet.length > 0) {
      setTimeout(() => {
        for (const socket of quiet) if (socket.bytesRead === 0) socket.destroy();
      }, QUIET_CONNECTION_GRACE_MS).unref();
    }
    done();
  });
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });

  await app.register(errors);
  await app.register(openapi, { version: packageJson.version });
  await app.register(metrics);
  await app.register(identity, { config });
  await app.register(protection, { config });
  await app.register(requireApiKey);
  await app.register(storePlugin, {
    databaseUrl: config.DATABASE_URL,
    poolSize: config.DATABASE_POOL_SIZE,
    preparedStatements: config.DATABASE_PREPARED_STATEMENTS,
    sqliteSynchronous: config.SQLITE_SYNCHRONOUS,
  });
  await app.register(paymentsGateway, { config, gateway: options.gateway });
  // A request holding a key longer than any Stripe call can take has died: a retry may take it over.
  await app.register(idempotency, { lockTimeoutMs: config.STRIPE_TIMEOUT_MS * (config.STRIPE_MAX_NETWORK_RETRIES + 1) + 30_000 });
  await app.register(reconciler);
  await app.register(notifier);

  await app.register(healthRoutes);
  await app.register(catalogRoutes);
  await app.register(customerRoutes);
  await app.register(clientTokenRoutes);
  await app.register(paymentMethodRoutes);
  await app.register(purchaseRoutes);
  await app.register(checkoutSessionRoutes);
  await app.register(ledgerRoutes);
  await app.register(notificationRoutes);
  await app.register(webhookRoutes);
  // Development stand-ins for the outside world: in any other mode, or with real Stripe, they do not exist.
  if (config.NODE_ENV === 'development' && app.payments.simulation) {
    await app.register(simulatorRoutes, { simulator: app.payments.simulation });
    await app.register(simulatedCheckoutPage, { simulator: app.payments.simulation });
  }
  await app.register(checkoutRoutes);

  return app;
}
