import { Type } from '@sinclair/typebox';
import { problemTypes, type ProblemCode } from '../errors.js';

/**
 * The response schema of one error status, documented with an example per problem code it can carry.
 * Errors leave through the error handler as `application/problem+json`.
 */
export function problemResponse(description: string, examples: Partial<Record<ProblemCode, string>>) {
  const entries = Object.entries(examples) as [ProblemCode, string][];
  const problemExamples = Object.fromEntries(
    entries.map(([code, detail]) => [
      code,
      {
        summary: problemTypes[code].title,
        value: {
          type: `urn:coinshop:problem:${code}`,
          title: problemTypes[code].title,
          status: problemTypes[code].status,
          detail,
          code,
          request_id: '7b0f6c1e-2d4a-4f5b-8c9d-0e1f2a3b4c5d',
        },
      },
    ]),
  );
  return {
    description,
    content: { 'application/problem+json': { schema: Type.Ref('Problem'), examples: problemExamples } },
  };
}

export const validationFailed = (example: string) =>
  problemResponse('The request is malformed; `errors` names each invalid field.', { validation_error: example });

export const customerNotFound = problemResponse('No customer has this `user_id`.', {
  customer_not_found: 'Customer not found',
});

export const internalError = problemResponse('Unexpected failure; the body never shows its cause.', {
  internal_error: 'An unexpected error occurred. It has been logged with this request id.',
});

export const authenticationRequired = {
  description:
    'The card needs the customer to authenticate (3-D Secure). Finish with Stripe.js using `client_secret`; ' +
    'the coins are credited once the payment succeeds.',
  content: { 'application/problem+json': { schema: Type.Ref('AuthenticationRequired') } },
};

export const serviceUnavailable = (description: string, more: Partial<Record<ProblemCode, string>> = {}) =>
  problemResponse(description, {
    service_unavailable: 'The database is not reachable right now; retry in a few seconds',
    ...more,
  });

export const paymentProviderFailed = problemResponse('Stripe failed or could not be reached.', {
  payment_provider_error: 'The payment provider failed or could not be reached; try again',
});

/** The optional Idempotency-Key header of POST operations. */
export const idempotencyKeyHeader = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      description:
        'Any unique string (a UUID is ideal). A retry with the same key and body replays the first answer ' +
        '(marked `Idempotent-Replayed: true`) and changes nothing; keys are kept for at least 24 hours.',
    }),
  ),
});

/** The answers an Idempotency-Key can bring on its own. */
export const idempotencyConflicts = {
  409: problemResponse('A request with the same Idempotency-Key is still being processed.', {
    idempotency_key_in_use: 'A request with this Idempotency-Key is still being processed; retry later',
  }),
  422: problemResponse('The Idempotency-Key was used with a different request.', {
    idempotency_key_reused: 'This Idempotency-Key was used with a different request; use a new key for a new request',
  }),
};

/** Operations a client token may call too (for its own player): either credential will do. */
export const playerSecurity: { [scheme: string]: string[] }[] = [{ apiKey: [] }, { clientToken: [] }];

/** What any operation that needs an API key can answer before it runs. */
export const callerErrors = {
  401: problemResponse(
    'No credential, a wrong API key, or a client token that is expired, tampered with, or signed with a secret no longer listed (`WWW-Authenticate: Bearer`).',
    { unauthorized: 'Missing API key: send Authorization: Bearer <key>' },
  ),
  403: problemResponse(
    'A client token on an operation it does not cover (operator-only operations need an API key), or for another player than its own; nothing was changed.',
    { forbidden: 'This client token is for another player' },
  ),
  429: problemResponse('Too many requests from this API key (or IP); see `Retry-After`.', {
    rate_limited: 'Too many requests: at most 1200 a minute; retry in 1 minute',
  }),
  503: serviceUnavailable(
    'The service is overloaded or its database cannot be reached; nothing was changed. Retry after `Retry-After` seconds.',
  ),
};
