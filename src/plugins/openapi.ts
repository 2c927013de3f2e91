import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { namedSchemas } from '../../schemas/index.js';
import type { ProblemCode } from '../errors.js';
import { problemResponse } from '../routes/problem-responses.js';
import { webPage } from './protection.js';

export const apiTags = [
  { name: 'Catalog', description: 'The coin packages for sale.' },
  { name: 'Customers', description: 'Players registered as Stripe customers, and their balances.' },
  { name: 'Client tokens', description: 'Short-lived tokens that let a browser or app act for one player without the server API key.' },
  { name: 'Payment methods', description: 'Saving a card (a Stripe PaymentMethod or a test token).' },
  { name: 'Purchases', description: 'Buying coin packages, purchase history, refunds.' },
  { name: 'Ledger', description: 'Spending coins, and the append-only ledger behind every balance.' },
  { name: 'Webhooks', description: 'Stripe events: how payments finished elsewhere reach coinshop.' },
  {
    name: 'Notifications',
    description:
      'Signed notifications of every money event, sent to the game server (GAME_WEBHOOK_URL) until it acknowledges them; and the feed of them.',
  },
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

/** A problem response as it appears in the finished document (the route helpers' `Problem` ref, resolved). */
function problem(description: string, examples: Partial<Record<ProblemCode, string>>): Json {
  const { content, ...rest } = problemResponse(description, examples);
  const media = content['application/problem+json'];
  return { ...rest, content: { 'application/problem+json': { ...media, schema: { $ref: '#/components/schemas/Problem' } } } };
}

/**
 * What any operation can answer before its handler runs, whatever its route says: a body that is
 * too big or not JSON, a path parameter that is too long, holds NUL or is not valid percent-encoding,
 * and what Node's HTTP parser refuses (headers too large, a request not sent in time). Added to every
 * operation it can happen to, so the document lists every status the server can answer.
 */
function requestErrorsOnEveryOperation(document: Json): Json {
  const paths = isJson(document['paths']) ? document['paths'] : {};
  for (const [path, pathItem] of Object.entries(paths)) {
    if (!isJson(pathItem)) continue;
    for (const operation of Object.values(pathItem).filter(isJson)) {
      const responses = isJson(operation['responses']) ? operation['responses'] : {};
      const parameters = Array.isArray(operation['parameters']) ? operation['parameters'].filter(isJson) : [];
      const pathParameter = parameters.find((p) => p['in'] === 'path');
      if (responses['400'] === undefined) {
        const name = pathParameter === undefined ? undefined : String(pathParameter['name']);
        responses['400'] = problem(
          name === undefined
            ? 'Query text that is not valid Unicode or holds a NUL character: nothing was read or changed.'
            : 'A path parameter that is too long, holds a NUL character, or is not valid percent-encoding (or such query text): nothing was read or changed.',
          name === undefined
            ? {
                validation_error:
                  'Invalid input: querystring/x must be valid Unicode text without NUL characters (no unpaired surrogates, no U+0000)',
              }
            : {
                validation_error: `Invalid input: params/${name} must be valid Unicode text without NUL characters (no unpaired surrogates, no U+0000)`,
                bad_request: `Malformed request: '${path.replace(/\{[^}]+\}/, '%E0%A4%A')}' is not a valid url component`,
              },
        );
      }
      if (operation['requestBody'] !== undefined) {
        responses['413'] ??= problem('The body is larger than the API takes: nothing was read further.', {
          payload_too_large: 'Request body is too large',
        });
        responses['415'] ??= problem('The body is not `application/json`: nothing was read or changed.', {
          unsupported_media_type: 'Unsupported Media Type',
        });
      }
      responses['408'] ??= problem('The request was not sent within `REQUEST_TIMEOUT_MS`: the connection is closed.', {
        request_timeout: 'The request was not sent in time (REQUEST_TIMEOUT_MS)',
      });
      responses['431'] ??= problem("The request's headers are larger than 16 KiB: the connection is closed.", {
        headers_too_large: 'The request headers are too large (at most 16 KiB)',
      });
      operation['responses'] = Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b)));
    }
  }
  return document;
}

/** How an answer's ids feed the next operations (OpenAPI `links`), by operationId and status. */
const operationLinks: Record<
  string,
  Record<string, Record<string, { operationId: string; parameter: string; from: string; description: string }>>
> = {
  createCustomer: {
    '200': {
      getCustomer: {
        operationId: 'getCustomer',
        parameter: 'user_id',
        from: 'user_id',
        description: "The new customer's balance and details.",
      },
      listTransactions: {
        operationId: 'listTransactions',
        parameter: 'user_id',
        from: 'user_id',
        description: "The new customer's purchase history.",
      },
      listLedgerEntries: {
        operationId: 'listLedgerEntries',
        parameter: 'user_id',
        from: 'user_id',
        description: "The new customer's coin ledger.",
      },
    },
  },
  purchaseCurrency: {
    '200': {
      getPurchase: {
        operationId: 'getPurchase',
        parameter: 'transaction_id',
        from: 'transaction_id',
        description: 'This purchase, as it stands now.',
      },
      refundPurchase: {
        operationId: 'refundPurchase',
        parameter: 'transaction_id',
        from: 'transaction_id',
        description: 'Refund this purchase.',
      },
    },
    '402': {
      getPurchase: {
        operationId: 'getPurchase',
        parameter: 'transaction_id',
        from: 'transaction_id',
        description: 'This purchase once the customer has authenticated.',
      },
    },
  },
};

function linksBetweenOperations(document: Json): Json {
  const paths = isJson(document['paths']) ? document['paths'] : {};
  for (const pathItem of Object.values(paths).filter(isJson)) {
    for (const operation of Object.values(pathItem).filter(isJson)) {
      const byStatus = operationLinks[String(operation['operationId'])] ?? {};
      const responses = isJson(operation['responses']) ? operation['responses'] : {};
      for (const [status, links] of Object.entries(byStatus)) {
        const response = responses[status];
        if (!isJson(response)) continue;
        response['links'] = Object.fromEntries(
          Object.entries(links).map(([name, link]) => [
            name,
            {
              operationId: link.operationId,
              parameters: { [link.parameter]: `$response.body#/${link.from}` },
              description: link.description,
            },
          ]),
        );
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
      transformObject: (documents) =>
        'openapiObject' in documents
          ? linksBetweenOperations(exampleOnEveryOperation(requestErrorsOnEveryOperation(documents.openapiObject as Json)))
          : documents.swaggerObject,
      refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    });
    // A web page: in a context of its own, helmet's headers for one, besides the API's (its CSP is replaced below).
    await app.register(async (page) => {
      await webPage(page);
      await page.register(swaggerUi, {
        routePrefix: '/docs',
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
    });

    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  },
  { name: 'openapi' },
);
