import { createHash, randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ProblemError } from '../errors.js';
import type { Store } from '../store/store.js';

/** A request that holds an Idempotency-Key. */
export interface IdempotencyContext {
  scope: string;
  key: string;
  /** The id reserved for what this request creates; a retry that takes the key over gets the same. */
  resourceId: string;
  /** True when an earlier request with this key started and did not finish. */
  resumed: boolean;
  /** Set once the response has been recorded (by the handler, in its own transaction). */
  completed: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    idempotency: IdempotencyContext | undefined;
    /** Who is calling; Idempotency-Keys are scoped to it. */
    callerId: string;
  }
  interface FastifyContextConfig {
    /** POST routes that honour Idempotency-Key. */
    idempotent?: boolean;
    /**
     * The route's first write, run in the transaction that reserves a new key so both commit at once
     * (it must not throw for a request the handler will refuse: the handler refuses it as usual).
     */
    onKeyReserved?: (tx: Store, request: FastifyRequest, resourceId: string) => Promise<void>;
  }
}

/** The id a handler should give what it creates: the key's reserved id, or a fresh one. */
export const resourceIdFor = (request: FastifyRequest) => request.idempotency?.resourceId ?? randomUUID();

/**
 * Records, in the caller's transaction, the response a key will replay: the key completes together
 * with the effect it protects, or not at all.
 */
export async function completeIdempotency(
  tx: Store,
  context: IdempotencyContext | undefined,
  response: { status: number; body: unknown },
): Promise<void> {
  if (!context) return;
  await tx.completeKey(context.scope, context.key, {
    status: response.status,
    type: response.status >= 400 ? 'application/problem+json' : 'application/json',
    body: JSON.stringify(response.body),
  });
  context.completed = true;
}

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
    app.decorateRequest('callerId', 'anonymous');

    const reserve = async (request: FastifyRequest, reply: FastifyReply) => {
      const header = request.headers['idempotency-key'];
      if (header === undefined) return;
      if (typeof header !== 'string' || !KEY.test(header)) {
        throw new ProblemError('validation_error', 'Invalid input: the Idempotency-Key header must be 1 to 255 printable ASCII characters', {
          errors: [{ field: 'headers/idempotency-key', message: 'must be 1 to 255 printable ASCII characters' }],
        });
      }
      const hash = createHash('sha256')
        .update(`${request.method} ${request.url}\n${canonical(request.body)}`)
        .digest('hex');
      const { onKeyReserved } = request.routeOptions.config;
      const reservation = await app.store.reserveKey(
        { scope: request.callerId, key: header, hash, resourceId: randomUUID(), lockTimeoutMs: options.lockTimeoutMs },
        onKeyReserved && ((tx, resourceId) => onKeyReserved(tx, request, resourceId)),
      );
      switch (reservation.kind) {
        case 'mismatch':
          throw new ProblemError(
            'idempotency_key_reused',
            'This Idempotency-Key was used with a different request; use a new key for a new request',
          );
        case 'in_use':
          throw new ProblemError('idempotency_key_in_use', 'A request with this Idempotency-Key is still being processed; retry later');
        case 'replay': {
          const { row } = reservation;
          app.metrics.idempotentReplays.inc();
          return reply
            .code(row.response_status ?? 200)
            .header('idempotent-replayed', 'true')
            .type(row.response_type ?? 'application/json')
            .send(row.response_body ?? '');
        }
        case 'reserved':
          request.idempotency = { scope: request.callerId, key: header, resourceId: reservation.resourceId, resumed: reservation.resumed, completed: false };
      }
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
  { name: 'idempotency', dependencies: ['store', 'metrics'] },
);
