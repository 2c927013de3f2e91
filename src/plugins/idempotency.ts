import { createHash, randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ProblemError } from '../errors.js';
import { reserveKey, type IdempotencyContext, type KeptAnswer, type KeyRequest } from '../services/idempotency.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The Idempotency-Key this request holds, once reserved. */
    idempotency: IdempotencyContext | undefined;
    /** The request's Idempotency-Key, checked but not reserved: on `idempotent: 'service'` routes the service reserves it. */
    idempotencyKey: KeyRequest | undefined;
  }
  interface FastifyReply {
    /** Answers with what a completed Idempotency-Key recorded, marked `Idempotent-Replayed: true`. */
    sendKeptAnswer(answer: KeptAnswer): FastifyReply;
  }
  interface FastifyContextConfig {
    /**
     * POST routes that honour Idempotency-Key. `true`: the key is reserved before the handler runs.
     * `'service'`: the handler's service reserves it together with its first write (services/idempotency.ts
     * reserveKey), then sets `request.idempotency`; a replay is the handler's to send (`reply.sendKeptAnswer`).
     */
    idempotent?: boolean | 'service';
  }
}

/** The id a handler should give what it creates: the key's reserved id, or a fresh one. */
export const resourceIdFor = (request: FastifyRequest) => request.idempotency?.resourceId ?? randomUUID();

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

const KEY = /^[\x21-\x7e]{1,255}$/;

/** A route option's hooks (none, one or several) as a list. */
const hookList = <T>(hooks: T | T[] | undefined): T[] => (hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks]);

/**
 * Idempotency-Key on POST routes marked `idempotent`: the first request with a key runs and its
 * answer is kept (at least IDEMPOTENCY_KEY_TTL_HOURS); the same key with the same body replays that
 * answer with `Idempotent-Replayed: true`; with another body it is refused (422); while the first
 * is still running, 409. An answer of 500 or more is not kept: a retry takes the key over and
 * finishes the work the first request started, under the same resource id.
 */
export default fp(
  async function idempotency(app: FastifyInstance, options: { lockTimeoutMs: number }) {
    app.decorateRequest('idempotency', undefined);
    app.decorateRequest('idempotencyKey', undefined);
    app.decorateReply('sendKeptAnswer', function (this: FastifyReply, answer: KeptAnswer) {
      app.metrics.idempotentReplays.inc();
      return this.code(answer.response_status ?? 200)
        .header('idempotent-replayed', 'true')
        .type(answer.response_type ?? 'application/json')
        .send(answer.response_body ?? '');
    });

    const reserve = async (request: FastifyRequest, reply: FastifyReply) => {
      const header = request.headers['idempotency-key'];
      if (header === undefined) return;
      if (typeof header !== 'string' || !KEY.test(header)) {
        throw new ProblemError(
          'validation_error',
          'Invalid input: the Idempotency-Key header must be 1 to 255 printable ASCII characters',
          {
            errors: [{ field: 'headers/idempotency-key', message: 'must be 1 to 255 printable ASCII characters' }],
          },
        );
      }
      const hash = createHash('sha256')
        .update(`${request.method} ${request.url}\n${canonical(request.body)}`)
        .digest('hex');
      request.idempotencyKey = { scope: request.callerId, key: header, hash, lockTimeoutMs: options.lockTimeoutMs };
      if (request.routeOptions.config.idempotent === 'service') return;
      const reservation = await reserveKey(app.store, request.idempotencyKey);
      if (reservation.kind === 'replay') return reply.sendKeptAnswer(reservation.answer);
      request.idempotency = reservation.context;
    };

    // Answers the handler did not record itself (those that changed nothing, like a 404) are kept
    // here; a 5xx lets go of the key instead, so a retry can finish the work. That includes a 5xx
    // after the handler recorded its answer: the transaction that held it failed (at COMMIT, say) and
    // rolled it back, and without this the key would stay locked until its lock timed out.
    const keep = async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
      const context = request.idempotency;
      if (!context || (context.completed && reply.statusCode < 500)) return payload;
      context.completed = true;
      if (reply.statusCode >= 500) {
        await app.store.releaseKey(context.scope, context.key);
      } else {
        await app.store.completeKey(context.scope, context.key, {
          status: reply.statusCode,
          type: String(reply.getHeader('content-type') ?? 'application/json'),
          body: typeof payload === 'string' ? payload : JSON.stringify(payload),
        });
      }
      return payload;
    };

    // Only the routes marked `idempotent` get the two hooks (after every instance-wide one, as
    // before): no other request pays for them.
    app.addHook('onRoute', (route) => {
      if (!route.config?.idempotent) return;
      route.preHandler = [...hookList(route.preHandler), reserve];
      route.onSend = [...hookList(route.onSend), keep];
    });
  },
  { name: 'idempotency', dependencies: ['store', 'metrics', 'require-api-key'] },
);
