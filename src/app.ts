import { randomUUID } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { loadCatalog, type Catalog } from './catalog.js';
import type { Config } from './config.js';
import paymentsGateway from './gateway/index.js';
import type { PaymentsGateway } from './gateway/types.js';
import errors from './plugins/errors.js';
import openapi from './plugins/openapi.js';
import catalogRoutes from './routes/catalog/index.js';
import customerRoutes from './routes/customers/index.js';
import paymentMethodRoutes from './routes/payment-methods/index.js';
import purchaseRoutes from './routes/purchases/index.js';
import storePlugin from './store/plugin.js';
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

/** Builds the coinshop app, ready for `inject` or `listen`. It never listens by itself. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const catalog = loadCatalog(config.CATALOG_FILE);

  const app = Fastify({
    logger: options.logger ?? false,
    // One log line per request, written in onResponse below.
    disableRequestLogging: true,
    // A caller's X-Request-Id is kept when it is sane, so logs join up across services.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true } },
    bodyLimit: 64 * 1024,
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorate('config', config);
  app.decorate('catalog', catalog);

  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      { method: request.method, url: request.url, statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 },
      'request',
    );
  });

  await app.register(errors);
  await app.register(openapi, { version: packageJson.version });
  await app.register(storePlugin, { databaseUrl: config.DATABASE_URL });
  await app.register(paymentsGateway, { config, gateway: options.gateway });

  await app.register(catalogRoutes);
  await app.register(customerRoutes);
  await app.register(paymentMethodRoutes);
  await app.register(purchaseRoutes);

  return app;
}
