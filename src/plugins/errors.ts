import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { problemDocument, ProblemError, type ProblemCode } from '../errors.js';
import { GatewayError } from '../gateway/types.js';
import { isDatabaseUnavailable } from '../store/database.js';

function send(reply: FastifyReply, request: FastifyRequest, error: ProblemError) {
  return reply.code(error.status).type('application/problem+json').send(problemDocument(error, request.id));
}

/** Fastify's own 4xx error codes, mapped to ours. */
const fastifyCodes: Record<string, ProblemCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'validation_error',
  FST_ERR_CTP_INVALID_JSON_BODY: 'validation_error',
};

function toProblem(error: FastifyError | ProblemError | GatewayError): ProblemError {
  if (error instanceof ProblemError) return error;
  if (error instanceof GatewayError) {
    // A timeout or a 5xx may have taken effect at Stripe: only the same key is a safe retry.
    return new ProblemError(
      'payment_provider_error',
      error.mayHaveCharged
        ? 'The payment provider failed or could not be reached, and the request may have taken effect there; retry with the same Idempotency-Key'
        : 'The payment provider failed or could not be reached; try again',
    );
  }
  if (error.validation) {
    // A union of literals fails as one `const` error per literal plus an `anyOf`: said once, with the values.
    const unions = new Set(error.validation.filter((v) => v.keyword === 'anyOf').map((v) => v.instancePath));
    const allowed = new Map<string, unknown[]>();
    for (const v of error.validation) {
      if (v.keyword === 'const' && unions.has(v.instancePath))
        allowed.set(v.instancePath, [...(allowed.get(v.instancePath) ?? []), v.params['allowedValue']]);
    }
    const errors = error.validation.flatMap((v) => {
      const values = allowed.get(v.instancePath);
      if (values !== undefined && (v.keyword === 'const' || v.keyword === 'anyOf')) {
        if (v.keyword === 'const') return [];
        return [
          {
            field: `${error.validationContext ?? 'body'}${v.instancePath}`,
            message: `must be one of ${values.map((value) => JSON.stringify(value)).join(', ')}`,
          },
        ];
      }
      const missing = v.keyword === 'required' ? `/${String(v.params['missingProperty'])}` : '';
      const extra = v.keyword === 'additionalProperties' ? `/${String(v.params['additionalProperty'])}` : '';
      const field = `${error.validationContext ?? 'body'}${v.instancePath}${missing}${extra}`;
      const message =
        v.keyword === 'additionalProperties'
          ? 'is not a known field'
          : v.keyword === 'required'
            ? 'is required'
            : (v.message ?? 'is invalid');
      return [{ field, message }];
    });
    const detail = `Invalid input: ${errors.map((e) => `${e.field} ${e.message}`).join('; ')}`;
    return new ProblemError('validation_error', detail, { errors });
  }
  if (isDatabaseUnavailable(error)) {
    return new ProblemError('service_unavailable', 'The database is not reachable right now; retry in a few seconds');
  }
  const status = error.statusCode ?? 500;
  if (status < 500) {
    const code = fastifyCodes[error.code] ?? (status === 404 ? 'not_found' : status === 413 ? 'payload_too_large' : 'bad_request');
    const problem = new ProblemError(code, error.message);
    if (problem.status !== status) return new ProblemError('bad_request', error.message);
    return problem;
  }
  return new ProblemError('internal_error', 'An unexpected error occurred. It has been logged with this request id.');
}

/** One error handler: every failure leaves as RFC 9457 problem details; a 5xx never shows its cause. */
export default fp(
  async function errors(app: FastifyInstance) {
    app.setErrorHandler((error: FastifyError | ProblemError | GatewayError, request, reply) => {
      const problem = toProblem(error);
      if (problem.status >= 500 && problem.code !== 'payment_pending') request.log.error({ err: error }, 'request failed');
      if (problem.code === 'service_unavailable' && !reply.hasHeader('retry-after')) reply.header('retry-after', '5');
      return send(reply, request, problem);
    });
    app.setNotFoundHandler((request, reply) =>
      send(reply, request, new ProblemError('not_found', `No route ${request.method} ${(request.url.split('?')[0] ?? '').slice(0, 200)}`)),
    );
  },
  { name: 'errors' },
);
