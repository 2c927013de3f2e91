import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { namedSchemas } from '../../schemas/index.js';
import { webPageHeaders } from './protection.js';

export const apiTags = [
  { name: 'Catalog', description: 'The coin packages for sale.' },
  { name: 'Customers', description: 'Players registered as Stripe customers, and their balances.' },
  { name: 'Client tokens', description: 'Short-lived tokens that let a browser or app act for one player without the server API key.' },
  { name: 'Payment methods', description: 'Saving a card (a Stripe PaymentMethod or a test token).' },
  { name: 'Purchases', description: 'Buying coin packages, purchase history, refunds.' },
  { name: 'Ledger', description: 'Spending coins, and the append-only ledger behind every balance.' },
  { name: 'Webhooks', description: 'Stripe events: how payments finished elsewhere reach coinshop.' },
  { name: 'Simulator', description: 'Development only (no STRIPE_SECRET_KEY): play the parts of the customer and the bank.' },
  { name: 'Operations', description: 'Health, readiness and metrics.' },
];

type Json = Record<string, unknown>;
const isJson = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Gives each request and response media type that points at a named schema that schema's example,
 * so every operation shows (and Postman and Swagger UI pre-fill) a realistic body.
 */
function exampleOnEveryOperation(document: Json): Json {
  const components = isJson(document['components']) ? document['components'] : {};
  const schemas = isJson(components['schemas']) ? components['schemas'] : {};
  const paths = isJson(document['paths']) ? document['paths'] : {};
  for (const pathItem of Object.values(paths).filter(isJson)) {
    for (const operation of Object.values(pathItem).filter(isJson)) {
      const bodies = [operation['requestBody'], ...Object.values(isJson(operation['responses']) ? operation['responses'] : {})];
      for (const body of bodies.filter(isJson)) {
        for (const media of Object.values(isJson(body['content']) ? body['content'] : {}).filter(isJson)) {
          const ref = isJson(media['schema']) ? media['schema']['$ref'] : undefined;
          if (media['example'] !== undefined || media['examples'] !== undefined || typeof ref !== 'string') continue;
          const named = schemas[ref.slice(ref.lastIndexOf('/') + 1)];
          if (isJson(named) && named['example'] !== undefined) media['example'] = named['example'];
        }
      }
    }
  }
  return document;
}

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
        components: {
          securitySchemes: {
            apiKey: {
              type: 'http',
              scheme: 'bearer',
              description: 'One of the keys in API_KEYS, as `Authorization: Bearer <key>`. (Unset in development: open.)',
            },
            clientToken: {
              type: 'http',
              scheme: 'bearer',
              bearerFormat: 'JWT',
              description:
                'A short-lived client token from createClientToken, as `Authorization: Bearer <token>`: for a browser or ' +
                'app acting for one player. It may call only the operations that list it, for its own player (another ' +
                "player's → 403); operator-only operations refuse it with 403.",
            },
          },
        },
        security: [{ apiKey: [] }],
      },
      // Components are named by their $id (`Customer`, `Problem`), so generated clients get real names.
      transformObject: (documents) => ('openapiObject' in documents ? exampleOnEveryOperation(documents.openapiObject as Json) : documents.swaggerObject),
      refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    });
    const pageHeaders = await webPageHeaders();
    await app.register(swaggerUi, {
      routePrefix: '/docs',
      // A web page: helmet's headers for one, besides the API's (its CSP is replaced below).
      uiHooks: {
        onRequest: (_request, reply, done) => {
          reply.headers(pageHeaders);
          done();
        },
      },
      // Its own Content-Security-Policy (hashes for its inline script), instead of the API's 'none'.
      staticCSP: true,
      // Framed nowhere, as X-Frame-Options: DENY says (its default allows its own origin).
      transformStaticCSP: (header) => header.replace("frame-ancestors 'self'", "frame-ancestors 'none'"),
      // "Try it out" calls the server that served the page, whatever its host and port.
      transformSpecification: (spec, request) => ({
        ...spec,
        servers: [{ url: `${request.protocol}://${request.host}`, description: 'This server' }],
      }),
    });

    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  },
  { name: 'openapi' },
);
