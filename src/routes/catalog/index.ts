import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { PackageList } from '../../../schemas/catalog.js';
import { ref } from '../../../schemas/index.js';
import { callerErrors, playerSecurity } from '../problem-responses.js';

const catalogRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // The catalog is fixed at start, so its answer is too.
  const body = { packages: app.catalog.packages.slice() };
  let serialized: ReturnType<FastifyReply['serialize']> | undefined;

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
        response: { 200: { ...ref(PackageList), description: 'The packages for sale.' }, ...callerErrors },
      },
    },
    async (_request, reply) => {
      // Serialised by the route's own schema on the first request, then sent as those bytes.
      serialized ??= reply.serialize(body);
      return reply.type('application/json; charset=utf-8').send(serialized);
    },
  );
};

export default catalogRoutes;
