import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import rateLimit, { type FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import underPressure from '@fastify/under-pressure';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { ProblemError } from '../errors.js';
import { redisWithLocalFallback } from '../rate-limit-store.js';

/**
 * helmet's options for the web pages coinshop serves (Swagger UI at /docs, the checkout page): never
 * framed, and the policy allows nothing — exactly these two directives, not merged into helmet's defaults (which
 * allow scripts, styles, fonts and images from the page's own origin); each page replaces it with
 * its own.
 */
export const helmetOptions = {
  contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
  // helmet's default is SAMEORIGIN; the pages' policies say frame-ancestors 'none', and both must agree.
  frameguard: { action: 'deny' },
} as const;

/**
 * What every API answer carries, as OWASP's REST Security Cheat Sheet lists them for JSON APIs: it is
 * never stored by a browser or proxy (balances, purchase history and 3-D Secure client secrets stay
 * out of caches), never rendered as anything but JSON, never framed, read only from its own origin
 * by a page that did not ask through CORS, and asked over HTTPS only. helmet's other headers steer
 * how a browser treats a web page (its referrer, DNS prefetch, its window's opener, old IE's
 * download and XSS filters); a JSON answer is no page, so only pages get them (`webPage`).
 */
export const API_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none';frame-ancestors 'none'",
  'cross-origin-resource-policy': 'same-origin',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
};

/**
 * Makes `page` (an encapsulated context holding a web page's routes) a web page's: @fastify/helmet,
 * registered there with `helmetOptions`, sets helmet's headers on its answers, besides the API's;
 * each page then sets its own Content-Security-Policy. Routes outside the context are untouched.
 */
export async function webPage(page: FastifyInstance): Promise<void> {
  await page.register(helmet, helmetOptions);
}

const REDIS_CONNECT_TIMEOUT_MS = 500;

/**
 * Whether an under-pressure reading means "shed this request". A sampling interval in which the
 * event loop could not take a single sample (it was blocked for all of it: a slow start, a long GC
 * pause) reads as an infinite delay; that says the loop *was* stuck, not that it is now — the
 * request being handled is proof it runs — so it is let through, and the next interval's real
 * figure decides.
 */
export function overloaded(type: string, value: number | undefined): boolean {
  return !(type === 'eventLoopDelay' && value === Infinity);
}

/**
 * What stands between the internet and the routes: security headers, CORS for the configured
 * origins, a rate limit per API key or client token's player (per IP for callers without a valid
 * credential), and load shedding (503 with Retry-After) when the event loop falls behind.
 *
 * Rate-limit counters live in the process, or with REDIS_URL in Redis, shared by every replica so
 * a key's limit holds however a load balancer spreads its requests. While Redis cannot be reached
 * each process counts on its own (a log line and the coinshop_rate_limit_shared gauge say so):
 * an outage of the counter must neither become an outage of the shop nor switch the limit off.
 */
export default fp(
  async function protection(app: FastifyInstance, { config }: { config: Config }) {
    // Before routing, so every answer has them (a 401, a 404, a 429); web pages add their own.
    app.addHook('onRequest', (_request, reply, done) => {
      reply.headers(API_SECURITY_HEADERS);
      done();
    });

    // Without configured origins there is nothing to allow: no CORS hook runs at all (a browser on
    // another origin gets no Access-Control-* header, so it may not read any answer).
    const origins = (config.CORS_ORIGINS ?? '').split(',').filter((o) => o.length > 0);
    if (origins.length > 0) {
      await app.register(cors, {
        origin: origins,
        allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'x-request-id'],
        exposedHeaders: ['x-request-id', 'idempotent-replayed', 'retry-after'],
        methods: ['GET', 'POST'],
        maxAge: 600,
      });
    }

    await app.register(underPressure, {
      maxEventLoopDelay: config.MAX_EVENT_LOOP_DELAY_MS,
      retryAfter: 5,
      pressureHandler: (_request, reply, type, value) => {
        if (!overloaded(type, value)) return;
        reply.header('retry-after', '5');
        throw new ProblemError('service_unavailable', 'The service is overloaded; retry after a few seconds');
      },
    });

    // ioredis (some 50 modules) is loaded only when it is used: a replica without REDIS_URL starts without it.
    const redis = config.REDIS_URL
      ? new (await import('ioredis')).Redis(config.REDIS_URL, {
          connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
          maxRetriesPerRequest: 1,
          lazyConnect: false,
        })
      : undefined;
    let store: FastifyRateLimitStoreCtor | undefined;
    if (redis) {
      // Said once per outage, not once per attempt or per request.
      let reported = false;
      const down = (err: Error | undefined) => {
        app.metrics.rateLimitShared.set(0);
        if (reported) return;
        reported = true;
        app.log.warn({ err }, 'rate limit: Redis unreachable; counting requests in each process until it is back');
      };
      redis.on('error', down);
      redis.on('ready', () => {
        app.metrics.rateLimitShared.set(1);
        if (reported) app.log.warn('rate limit: Redis is back; counting requests in Redis again');
        reported = false;
      });
      store = redisWithLocalFallback(redis, `${config.REDIS_KEY_PREFIX}rate-limit:`, {
        fellBack: (err) => {
          app.metrics.rateLimitLocalFallback.inc();
          down(err);
        },
      });
      app.addHook('onClose', async () => {
        await redis.quit().catch(() => redis.disconnect());
      });
      // The first requests are counted in Redis when it answers at once; otherwise in the process.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, REDIS_CONNECT_TIMEOUT_MS);
        const settle = () => (clearTimeout(timer), resolve());
        redis.once('ready', settle).once('error', settle);
      });
    }

    await app.register(rateLimit, {
      // One instance-wide hook (added below, before the API-key check), so wrong keys count too.
      global: false,
      ...(store ? { store } : {}),
      max: config.RATE_LIMIT_PER_MINUTE,
      timeWindow: 60_000,
      // Per API key, per client token's player (all its tokens share one budget), else per IP.
      keyGenerator: async (request) => {
        const principal = await app.authenticate(request);
        if (principal.kind === 'operator') return `key:${principal.callerId}`;
        if (principal.kind === 'player') return principal.callerId;
        return `ip:${request.ip}`;
      },
      // Stripe's webhook retries and health probes are never limited.
      allowList: (request) => request.routeOptions.config.public === true,
      errorResponseBuilder: (_request, context) =>
        new ProblemError('rate_limited', `Too many requests: at most ${context.max} a minute; retry in ${context.after}`),
    });
    app.addHook('onRequest', app.rateLimit());
  },
  { name: 'protection', dependencies: ['identity', 'metrics'] },
);
