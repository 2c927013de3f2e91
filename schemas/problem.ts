import { Type, type Static } from '@sinclair/typebox';
import { ref } from './ref.js';

export const ProblemCode = Type.String({
  description:
    'Stable, machine-readable error code, e.g. `customer_not_found`, `invalid_package`, ' +
    '`no_payment_method`, `card_declined`, `insufficient_funds`, `checkout_expired`, `async_payment_failed`, `invalid_return_url`, `validation_error`.',
  examples: ['customer_not_found'],
});

/** One invalid field of a `validation_error`. */
export const FieldError = Type.Object(
  {
    field: Type.String({ description: 'Where the bad value is, e.g. `body/email`.' }),
    message: Type.String({ examples: ['must match format "email"'] }),
  },
  {
    $id: 'FieldError',
    title: 'FieldError',
    description: 'One invalid field of a `validation_error`.',
    additionalProperties: false,
    examples: [{ field: 'body/email', message: 'must match format "email"' }],
  },
);
export type FieldError = Static<typeof FieldError>;

const problemProperties = {
  type: Type.String({
    description: 'URI identifying the problem type (`urn:coinshop:problem:<code>`).',
    examples: ['urn:coinshop:problem:customer_not_found'],
  }),
  title: Type.String({ description: 'Short summary of the problem type.', examples: ['Customer not found'] }),
  status: Type.Integer({ description: 'The HTTP status code.', examples: [404] }),
  detail: Type.String({
    description: 'Human-readable explanation. For the seed contract this is the exact seed message.',
    examples: ['Customer not found'],
  }),
  code: ProblemCode,
  request_id: Type.String({ description: 'The request id, also sent as the `X-Request-Id` header.' }),
  transaction_id: Type.Optional(
    Type.String({ format: 'uuid', description: 'For a failed or unfinished purchase: the attempt as recorded in the history.' }),
  ),
  errors: Type.Optional(Type.Array(ref(FieldError), { description: 'For `validation_error`: one entry per invalid field.' })),
};

/** RFC 9457 problem details, the body of every error response. */
export const Problem = Type.Object(problemProperties, {
  $id: 'Problem',
  title: 'Problem',
  description: 'RFC 9457 problem details (`application/problem+json`).',
  additionalProperties: false,
  examples: [
    {
      type: 'urn:coinshop:problem:customer_not_found',
      title: 'Customer not found',
      status: 404,
      detail: 'Customer not found',
      code: 'customer_not_found',
      request_id: '7b0f6c1e-2d4a-4f5b-8c9d-0e1f2a3b4c5d',
    },
  ],
});
export type Problem = Static<typeof Problem>;

const authenticationRequiredExample = {
  type: 'urn:coinshop:problem:authentication_required',
  title: 'Authentication required',
  status: 402,
  detail: 'The card requires authentication (3-D Secure) to complete this purchase',
  code: 'authentication_required',
  request_id: '7b0f6c1e-2d4a-4f5b-8c9d-0e1f2a3b4c5d',
  transaction_id: '9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a',
  payment_intent_id: 'pi_3Q1w2E3r4T5y6U7i',
  client_secret: 'pi_3Q1w2E3r4T5y6U7i_secret_4a5b6c7d8e9f',
};

/** 402 from a purchase whose card needs the customer to authenticate (3-D Secure). */
export const AuthenticationRequired = Type.Object(
  {
    // Problem's fields, with this problem's own examples (never another problem's, nor a field list).
    type: Type.String({ description: problemProperties.type.description, examples: [authenticationRequiredExample.type] }),
    title: Type.String({ description: problemProperties.title.description, examples: [authenticationRequiredExample.title] }),
    status: Type.Integer({ description: problemProperties.status.description, examples: [402] }),
    detail: Type.String({ description: 'Human-readable explanation.', examples: [authenticationRequiredExample.detail] }),
    code: Type.String({ description: 'Always `authentication_required`.', examples: ['authentication_required'] }),
    request_id: problemProperties.request_id,
    transaction_id: Type.String({ format: 'uuid' }),
    payment_intent_id: Type.String({ description: 'The Stripe PaymentIntent awaiting authentication.' }),
    client_secret: Type.String({
      description: "The PaymentIntent's client secret: pass it to Stripe.js `handleNextAction` to finish.",
    }),
  },
  {
    $id: 'AuthenticationRequired',
    title: 'AuthenticationRequired',
    description: 'Problem details for a payment that needs the customer to authenticate (3-D Secure) before it can succeed.',
    additionalProperties: false,
    examples: [authenticationRequiredExample],
  },
);
export type AuthenticationRequired = Static<typeof AuthenticationRequired>;
