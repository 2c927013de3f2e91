import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { sql } from 'kysely';
import { ref } from '../../../schemas/index.js';
import { Health, Readiness } from '../../../schemas/operations.js';
import { ProblemError } from '../../errors.js';
import { serviceUnavailable } from '../problem-responses.js';

/** Liveness and readiness, for load balancers and orchestrators: public, never rate limited. */
const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/health',
    {
      config: { public: true },
      schema: {
        operationId: 'getHealth',
        tags: ['Operations'],
        summary: 'Liveness: the process is up',
        security: [],
        response: { 200: { ...ref(Health), description: 'Alive.' } },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/ready',
    {
      config: { public: true },
      schema: {
        operationId: 'getReadiness',
        tags: ['Operations'],
        summary: 'Readiness: the database answers and a payments gateway is configured',
        security: [],
        response: {
          200: { ...ref(Readiness), description: 'Ready for traffic.' },
          503: serviceUnavailable('Not ready: the database does not answer.'),
        },
      },
    },
    async () => {
      try {
        await sql`select 1`.execute(app.store.db);
      } catch (err) {
        app.log.error({ err }, 'readiness: database check failed');
        throw new ProblemError('service_unavailable', 'The database is not reachable right now; retry in a few seconds');
      }
      return { status: 'ready' as const, database: 'ok' as const, payments: app.payments.kind };
    },
  );
};

export default healthRoutes;
