import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { namedSchemas } from '../../schemas/index.js';

export const apiTags = [
  { name: 'Catalog', description: 'The coin packages for sale.' },
  { name: 'Customers', description: 'Players registered as Stripe customers, and their balances.' },
  { name: 'Payment methods', description: 'Saving a card (a Stripe PaymentMethod or a test token).' },
  { name: 'Purchases', description: 'Buying coin packages and reading purchase history.' },
];

/**
 * Registers every named schema once (routes `$ref` them by `$id`) and builds the OpenAPI document
 * from the routes. Swagger UI is served at /docs; the document at /openapi.json.
 */
export default fp(
  async function openapi(app: FastifyInstance, options: { version: string }) {
    for (const schema of namedSchemas) app.addSchema(schema);

    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'coinshop',
          version: options.version,
          description:
            "Sell an app's virtual currency (coins) for real money through Stripe: register players as Stripe " +
            'customers, save a card, buy coin packages, and read balances and purchase history.\n\n' +
            'Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code`; `detail` ' +
            'carries a human-readable message.',
        },
        servers: [{ url: 'http://localhost:8000', description: 'Local development (npm start)' }],
        tags: apiTags,
      },
      // Components are named by their $id (`Customer`, `Problem`), so generated clients get real names.
      refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });

    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  },
  { name: 'openapi' },
);
