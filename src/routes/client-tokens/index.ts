import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ClientToken, ClientTokenRequest } from '../../../schemas/client-token.js';
import { ref } from '../../../schemas/index.js';
import { customerNotFound } from '../../errors.js';
import { callerErrors, customerNotFound as customerNotFoundResponse, internalError, validationFailed } from '../problem-responses.js';

const clientTokenRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/stripe/client-tokens',
    {
      schema: {
        operationId: 'createClientToken',
        tags: ['Client tokens'],
        summary: 'Mint a short-lived client token for one player',
        description:
          "For the shop's backend (API key only). The token lets the player's browser or app call the player " +
          'operations (read the customer, save a card, buy, history, one purchase, the catalog; spending only with ' +
          '`CLIENT_TOKENS_MAY_SPEND=true`) for this player alone, until `expires_at`. It changes nothing: mint one ' +
          'whenever a page needs it.',
        body: ref(ClientTokenRequest),
        response: {
          200: { ...ref(ClientToken), description: 'The token and when it expires.' },
          400: validationFailed('Invalid input: body/user_id is required'),
          404: customerNotFoundResponse,
          ...callerErrors,
          500: internalError,
        },
      },
    },
    async (request) => {
      const customer = await app.store.findCustomer(request.body.user_id);
      if (!customer) throw customerNotFound();
      return app.clientTokens.mint(customer.user_id);
    },
  );
};

export default clientTokenRoutes;
