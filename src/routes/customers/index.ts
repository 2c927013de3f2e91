import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CreateCustomerRequest, CreateCustomerResponse, Customer, UserIdParams } from '../../../schemas/customer.js';
import { ref } from '../../../schemas/index.js';
import { customerNotFound } from '../../errors.js';
import { resourceIdFor } from '../../plugins/idempotency.js';
import { createCustomer } from '../../services/customers.js';
import {
  customerNotFound as customerNotFoundResponse,
  idempotencyConflicts,
  idempotencyKeyHeader,
  internalError,
  paymentProviderFailed,
  validationFailed,
  callerErrors,
  playerSecurity,
} from '../problem-responses.js';

const customerRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/stripe/create-customer',
    {
      config: { idempotent: true },
      schema: {
        operationId: 'createCustomer',
        tags: ['Customers'],
        summary: 'Register a player as a Stripe customer',
        description:
          'Creates the Stripe customer and stores the player with a balance of 0 coins. Keep the returned ' +
          '`user_id`: every other call takes it.',
        headers: idempotencyKeyHeader,
        body: ref(CreateCustomerRequest),
        response: {
          200: { ...ref(CreateCustomerResponse), description: 'The customer was created.' },
          400: validationFailed('Invalid input: body/email must match format "email"'),
          ...idempotencyConflicts,
          ...callerErrors,
          500: internalError,
          502: paymentProviderFailed,
        },
      },
    },
    async (request) => createCustomer(app, request.body, { userId: resourceIdFor(request), idempotency: request.idempotency }),
  );

  app.get(
    '/stripe/customer/:user_id',
    {
      config: { clientToken: 'user_id' },
      schema: {
        security: playerSecurity,
        operationId: 'getCustomer',
        tags: ['Customers'],
        summary: 'Get a customer and their coin balance',
        params: UserIdParams,
        response: {
          200: { ...ref(Customer), description: 'The customer and their current balance.' },
          404: customerNotFoundResponse,
          ...callerErrors,
          500: internalError,
        },
      },
    },
    async (request) => {
      const customer = await app.store.findCustomer(request.params.user_id);
      if (!customer) throw customerNotFound();
      return {
        user_id: customer.user_id,
        email: customer.email,
        name: customer.name,
        currency_balance: customer.currency_balance,
        stripe_customer_id: customer.stripe_customer_id,
        created_at: customer.created_at,
      };
    },
  );
};

export default customerRoutes;
