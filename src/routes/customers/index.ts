import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CreateCustomerRequest, CreateCustomerResponse, Customer, UserIdParams } from '../../../schemas/customer.js';
import { ref } from '../../../schemas/index.js';
import { customerNotFound } from '../../errors.js';
import {
  customerNotFound as customerNotFoundResponse,
  internalError,
  paymentProviderFailed,
  validationFailed,
} from '../problem-responses.js';

const customerRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/stripe/create-customer',
    {
      schema: {
        operationId: 'createCustomer',
        tags: ['Customers'],
        summary: 'Register a player as a Stripe customer',
        description:
          'Creates the Stripe customer and stores the player with a balance of 0 coins. Keep the returned ' +
          '`user_id`: every other call takes it.',
        body: ref(CreateCustomerRequest),
        response: {
          200: { ...ref(CreateCustomerResponse), description: 'The customer was created.' },
          400: validationFailed('Invalid input: body/email must match format "email"'),
          500: internalError,
          502: paymentProviderFailed,
        },
      },
    },
    async (request) => {
      const userId = randomUUID();
      const { email, name } = request.body;
      const stripeCustomer = await app.payments.createCustomer({ email, name, userId }, `create-customer-${userId}`);
      await app.store.insertCustomer({ user_id: userId, email, name, stripe_customer_id: stripeCustomer.id });
      return {
        status: 'success' as const,
        user_id: userId,
        stripe_customer_id: stripeCustomer.id,
        message: 'Customer created successfully',
      };
    },
  );

  app.get(
    '/stripe/customer/:user_id',
    {
      schema: {
        operationId: 'getCustomer',
        tags: ['Customers'],
        summary: "Get a customer and their coin balance",
        params: UserIdParams,
        response: {
          200: { ...ref(Customer), description: 'The customer and their current balance.' },
          404: customerNotFoundResponse,
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
