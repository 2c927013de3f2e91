import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ProblemError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The caller a request's API key names, or undefined for no or a wrong key (no side effects). */
    identifyCaller(request: FastifyRequest): string | undefined;
    /** Whether API keys are required (false only in development without API_KEYS). */
    authRequired: boolean;
  }
  interface FastifyContextConfig {
    /** Routes anyone may call: the webhook (Stripe signs it), health checks. */
    public?: boolean;
  }
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

const digest = (value: string) => createHash('sha256').update(value).digest();

/** The caller a key stands for: a short, stable, non-secret name (also the Idempotency-Key scope). */
export const callerIdOf = (key: string) => `key_${digest(key).toString('hex').slice(0, 12)}`;

/**
 * `Authorization: Bearer <key>` on every route but the public ones, the docs and the checkout page. Keys come from
 * API_KEYS (several at once, for rotation) and are compared in constant time: each presented key is
 * hashed and compared against every configured key's hash, whatever matches first. Without keys
 * (development only — production refuses to start) the service is open, and says so loudly.
 */
export default fp(
  async function identity(app: FastifyInstance, options: { apiKeys: string | undefined }) {
    const keys = (options.apiKeys ?? '').split(',').filter((k) => k.length > 0).map((key) => ({ hash: digest(key), callerId: callerIdOf(key) }));
    app.decorate('authRequired', keys.length > 0);
    // The rate limiter and the key check both ask; the key is hashed and compared once per request.
    const identified = new WeakMap<FastifyRequest, string | undefined>();
    app.decorate('identifyCaller', (request: FastifyRequest) => {
      if (identified.has(request)) return identified.get(request);
      const header = request.headers.authorization;
      const presented = typeof header === 'string' ? BEARER.exec(header)?.[1] : undefined;
      let callerId: string | undefined;
      if (presented !== undefined) {
        const hash = digest(presented);
        for (const key of keys) {
          if (timingSafeEqual(hash, key.hash) && callerId === undefined) callerId = key.callerId;
        }
      }
      identified.set(request, callerId);
      return callerId;
    });
  },
  { name: 'identity' },
);

/** Refuses (401) every request to a non-public route without a valid API key. Registered after the rate limiter, so wrong keys are counted too. */
export const requireApiKey = fp(
  async function requireApiKey(app: FastifyInstance) {
    if (!app.authRequired) {
      app.log.warn('No API_KEYS: every endpoint is OPEN to anyone who can reach this server. Set API_KEYS before exposing it.');
      return;
    }
    const isPublic = (request: FastifyRequest) =>
      request.routeOptions.config.public === true ||
      request.routeOptions.url === '/openapi.json' ||
      (request.routeOptions.url ?? '').startsWith('/docs') ||
      // The checkout page and its settings; the API calls it makes still need a credential.
      (request.routeOptions.url ?? '').startsWith('/checkout');

    app.addHook('onRequest', async (request, reply) => {
      if (isPublic(request)) return;
      const callerId = app.identifyCaller(request);
      if (callerId === undefined) {
        reply.header('www-authenticate', 'Bearer realm="coinshop"');
        throw new ProblemError(
          'unauthorized',
          request.headers.authorization === undefined ? 'Missing API key: send Authorization: Bearer <key>' : 'Invalid API key',
        );
      }
      request.callerId = callerId;
    });
  },
  { name: 'require-api-key', dependencies: ['identity'] },
);
