import { createHash } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import { PackageList } from '../../../schemas/catalog.js';
import { ref } from '../../../schemas/index.js';
import { callerErrors, playerSecurity } from '../problem-responses.js';

const catalogRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // The catalog is fixed at start, so its answer is too; its tag is the same on every replica with
  // the same catalog. It is the same for every caller, so a client (never a shared cache: the answer
  // needs a credential) may keep it a minute and then ask again with If-None-Match.
  const body = { packages: app.catalog.packages.slice() };
  let serialized: ReturnType<FastifyReply['serialize']> | undefined;
  const etag = `"${createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 16)}"`;
  const cacheControl = 'private, max-age=60';
  /** If-None-Match names this catalog (weak comparison, as RFC 9110 asks for If-None-Match). */
  const current = (ifNoneMatch: string | undefined) =>
    ifNoneMatch !== undefined &&
    (ifNoneMatch.trim() === '*' || ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag));

  app.get(
    '/stripe/packages',
    {
      config: { clientToken: 'any' },
      schema: {
        security: playerSecurity,
        operationId: 'listPackages',
        tags: ['Catalog'],
        summary: 'List the coin packages for sale',
        description: 'Every package with its price and the coins it gives. Prices are set by the server.',
        headers: Type.Object({
          'if-none-match': Type.Optional(Type.String({ description: 'The `ETag` of an earlier answer: 304 if the catalog is unchanged.' })),
        }),
        response: {
          200: { ...ref(PackageList), description: 'The packages for sale, with an `ETag` and `Cache-Control: private, max-age=60`.' },
          304: { description: 'Not modified: the `ETag` in `If-None-Match` is current; no body.', type: 'null' },
          ...callerErrors,
        },
      },
    },
    async (request, reply) => {
      reply.header('etag', etag).header('cache-control', cacheControl);
      if (current(request.headers['if-none-match'])) return reply.code(304).send();
      // Serialised by the route's own schema on the first request, then sent as those bytes.
      serialized ??= reply.serialize(body);
      return reply.type('application/json; charset=utf-8').send(serialized);
    },
  );
};

export default catalogRoutes;
