import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ClientTokens, looksLikeToken } from '../client-tokens.js';
import type { Config } from '../config.js';
import { ProblemError } from '../errors.js';

/** Who a request's credential says is calling. */
export type Principal =
  /** A server API key: may call everything. */
  | { kind: 'operator'; callerId: string }
  /** A valid client token: may call the player operations in its scope, for its own player only. */
  | { kind: 'player'; callerId: string; userId: string; scope: ReadonlySet<string> }
  /** A credential that is neither a key nor a valid token. */
  | { kind: 'invalid'; token: boolean; detail: string }
  /** No `Authorization: Bearer` at all. */
  | { kind: 'none' };

/**
 * How a route treats a client token (routes without it are operator-only: a token gets 403):
 * - `user_id`: the body's or path's `user_id` must be the token's player;
 * - `spend`: the same, and only while CLIENT_TOKENS_MAY_SPEND is on;
 * - `own`: the handler checks what it loads belongs to the token's player (`assertPlayerMayAct`);
 * - `any`: nothing player-specific (the catalog).
 */
export type ClientTokenAccess = 'user_id' | 'spend' | 'own' | 'any';

declare module 'fastify' {
  interface FastifyInstance {
    /** The caller a request's API key names, or undefined for no or a wrong key (no side effects). */
    identifyCaller(request: FastifyRequest): string | undefined;
    /** The request's principal (API key, client token, invalid, none), worked out once per request. */
    authenticate(request: FastifyRequest): Promise<Principal>;
    /** Whether API keys are required (false only in development without API_KEYS). */
    authRequired: boolean;
    clientTokens: ClientTokens;
  }
  interface FastifyRequest {
    /** Who is calling (an API key's or a player's id, `anonymous` on an open development server); Idempotency-Keys and rate limits are scoped to it. */
    callerId: string;
    /** The player a client token acts for; undefined for API-key (and open development) callers. */
    player: string | undefined;
  }
  interface FastifyContextConfig {
    /** Routes anyone may call: the webhook (Stripe signs it), health checks. */
    public?: boolean;
    clientToken?: ClientTokenAccess;
  }
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/** The caller a key stands for: a short, stable, non-secret name (also the Idempotency-Key scope). */
export const callerIdOf = (key: string) => `key_${digest(key).toString('hex').slice(0, 12)}`;

/** Idempotency-Key scope and rate-limit bucket of a client token's player. */
export const playerCallerId = (userId: string) => `player:${userId}`;

const forbidden = (detail: string) => new ProblemError('forbidden', detail);

/** Refuses (403) a client-token caller acting on another player than its own. */
export function assertPlayerMayAct(request: FastifyRequest, userId: string): void {
  if (request.player !== undefined && request.player !== userId) {
    throw forbidden('This client token is for another player');
  }
}

const userIdIn = (value: unknown): string | undefined =>
  typeof value === 'object' && value !== null && 'user_id' in value && typeof value.user_id === 'string' ? value.user_id : undefined;

/**
 * `Authorization: Bearer <credential>`: an API key from API_KEYS (several at once, for rotation; each
 * presented key is hashed and compared in constant time with every configured key's hash) or a
 * client token (a JWT from POST /stripe/client-tokens). Without keys (development only — production
 * refuses to start) the service is open, and says so loudly.
 */
export default fp(
  async function identity(app: FastifyInstance, { config }: { config: Config }) {
    const keys = (config.API_KEYS ?? '')
      .split(',')
      .filter((k) => k.length > 0)
      .map((key) => ({ hash: digest(key), callerId: callerIdOf(key) }));
    app.decorate('authRequired', keys.length > 0);

    let secrets = (config.CLIENT_TOKEN_SECRETS ?? '').split(',').filter((s) => s.length > 0);
    if (secrets.length === 0) {
      // Production refuses to start without CLIENT_TOKEN_SECRETS (see config.ts).
      secrets = [ClientTokens.randomSecret()];
      app.log.warn(
        'No CLIENT_TOKEN_SECRETS: client tokens are signed with a random secret made at start. They stop working at every restart, and replicas need one shared secret: set CLIENT_TOKEN_SECRETS.',
      );
    }
    app.decorate('clientTokens', new ClientTokens(secrets, config.CLIENT_TOKEN_TTL_SECONDS, config.CLIENT_TOKENS_MAY_SPEND));

    const identifyCaller = (request: FastifyRequest) => {
      const presented = bearerOf(request);
      if (presented === undefined) return undefined;
      const hash = digest(presented);
      let callerId: string | undefined;
      for (const key of keys) {
        if (timingSafeEqual(hash, key.hash) && callerId === undefined) callerId = key.callerId;
      }
      return callerId;
    };
    app.decorate('identifyCaller', identifyCaller);

    const principals = new WeakMap<FastifyRequest, Promise<Principal>>();
    // The API key last verified on each connection, by the whole header as it was sent. A keep-alive
    // client sends the same header on every request: the same bytes are the same caller, without
    // hashing the key again. Compared in constant time all the same, since a proxy may carry several
    // clients' requests on one connection.
    const verifiedOn = new WeakMap<object, { header: Buffer; principal: Principal }>();
    const principalOf = async (request: FastifyRequest): Promise<Principal> => {
      const header = request.headers.authorization;
      const connection: object | null = request.raw.socket;
      const verified = connection === null || header === undefined ? undefined : verifiedOn.get(connection);
      if (verified !== undefined && header !== undefined) {
        const presented = Buffer.from(header);
        if (presented.length === verified.header.length && timingSafeEqual(presented, verified.header)) return verified.principal;
      }
      const presented = bearerOf(request);
      if (presented === undefined) return { kind: 'none' };
      const callerId = identifyCaller(request);
      if (callerId !== undefined) {
        const principal: Principal = { kind: 'operator', callerId };
        if (connection !== null && typeof header === 'string') verifiedOn.set(connection, { header: Buffer.from(header), principal });
        return principal;
      }
      if (!looksLikeToken(presented)) return { kind: 'invalid', token: false, detail: 'Invalid API key' };
      const checked = await app.clientTokens.verify(presented);
      if (!checked.ok) return { kind: 'invalid', token: true, detail: checked.detail };
      return { kind: 'player', callerId: playerCallerId(checked.userId), userId: checked.userId, scope: checked.scope };
    };
    app.decorate('authenticate', (request: FastifyRequest) => {
      let principal = principals.get(request);
      if (principal === undefined) {
        principal = principalOf(request);
        principals.set(request, principal);
      }
      return principal;
    });
  },
  { name: 'identity' },
);

function bearerOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  return typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
}

/**
 * Refuses (401) every request to a non-public route without a valid credential, and (403) a client
 * token on an operation it does not cover or for another player. Registered after the rate limiter,
 * so wrong keys are counted too, and before the Idempotency-Key hook, so a refusal records nothing.
 */
export const requireApiKey = fp(
  async function requireApiKey(app: FastifyInstance) {
    if (!app.authRequired) {
      app.log.warn('No API_KEYS: every endpoint is OPEN to anyone who can reach this server. Set API_KEYS before exposing it.');
    }
    app.decorateRequest('player', undefined);
    app.decorateRequest('callerId', 'anonymous');
    // (request.routeOptions builds a new object at every read: read once per request.)
    const isPublic = ({ config, url = '' }: FastifyRequest['routeOptions']) =>
      config.public === true ||
      url === '/openapi.json' ||
      url.startsWith('/docs') ||
      // The checkout page and its settings; the API calls it makes still need a credential.
      url.startsWith('/checkout');

    app.addHook('onRequest', async (request, reply) => {
      const route = request.routeOptions;
      if (isPublic(route)) return;
      const principal = await app.authenticate(request);
      if (principal.kind === 'operator') {
        request.callerId = principal.callerId;
        return;
      }
      if (principal.kind === 'none' || principal.kind === 'invalid') {
        // Open development server (no API_KEYS): any request but one with a bad client token goes through.
        if (!app.authRequired && !(principal.kind === 'invalid' && principal.token)) return;
        reply.header('www-authenticate', 'Bearer realm="coinshop"');
        throw new ProblemError(
          'unauthorized',
          principal.kind === 'none' ? 'Missing API key: send Authorization: Bearer <key>' : principal.detail,
        );
      }
      const access = route.config.clientToken;
      const operationId = route.schema?.operationId;
      if (access === 'spend' && !app.config.CLIENT_TOKENS_MAY_SPEND) {
        throw forbidden(
          'Client tokens may not spend coins on this server (CLIENT_TOKENS_MAY_SPEND is off): spend through your backend with its API key',
        );
      }
      if (access === undefined || operationId === undefined || !principal.scope.has(operationId)) {
        throw forbidden('A client token cannot call this operation: it needs an API key');
      }
      request.callerId = principal.callerId;
      request.player = principal.userId;
    });

    // After validation, before the Idempotency-Key is reserved: another player's user_id changes nothing.
    // A callback hook (Fastify turns a throw into the error reply): API-key requests pass at once.
    app.addHook('preHandler', (request, _reply, done) => {
      const access = request.routeOptions.config.clientToken;
      if (request.player !== undefined && (access === 'user_id' || access === 'spend')) {
        const userId = userIdIn(request.params) ?? userIdIn(request.body);
        if (userId === undefined) throw forbidden('This operation names no player');
        assertPlayerMayAct(request, userId);
      }
      done();
    });
  },
  { name: 'require-api-key', dependencies: ['identity'] },
);
