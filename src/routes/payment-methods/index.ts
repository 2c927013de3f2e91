import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ref } from '../../../schemas/index.js';
import { AttachPaymentMethodRequest, AttachPaymentMethodResponse } from '../../../schemas/payment-method.js';
import { attachPaymentMethod } from '../../services/customers.js';
import {
  customerNotFound as customerNotFoundResponse,
  idempotencyConflicts,
  idempotencyKeyHeader,
  internalError,
  paymentProviderFailed,
  problemResponse,
  callerErrors,
  playerSecurity,
} from '../problem-responses.js';

const paymentMethodRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/stripe/attach-payment-method',
    {
      config: { idempotent: true, clientToken: 'user_id' },
      schema: {
        security: playerSecurity,
        operationId: 'attachPaymentMethod',
        tags: ['Payment methods'],
        summary: "Save a card as the customer's payment method",
        description:
          'A test token (`pm_card_*`) is stored as it is, without a Stripe call. Any other PaymentMethod id ' +
          '(from Stripe.js) is attached to the customer in Stripe and made their default.',
        headers: idempotencyKeyHeader,
        body: ref(AttachPaymentMethodRequest),
        response: {
          200: { ...ref(AttachPaymentMethodResponse), description: 'The payment method is saved.' },
          400: problemResponse('The payment method id is malformed, or Stripe refused it.', {
            validation_error: 'Invalid input: body/payment_method_id must match pattern "^pm_[A-Za-z0-9_]+$"',
            invalid_payment_method: "Invalid payment method: No such PaymentMethod: 'pm_1Nx'",
          }),
          404: customerNotFoundResponse,
          ...idempotencyConflicts,
          ...callerErrors,
          500: internalError,
          502: paymentProviderFailed,
        },
      },
    },
    async (request) => attachPaymentMethod(app, request.body, { idempotency: request.idempotency }),
  );
};

export default paymentMethodRoutes;
