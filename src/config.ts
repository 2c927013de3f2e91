import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { NOTIFICATION_TYPES } from '../schemas/notification.js';

/** One notification type, as a regular expression. */
const NOTIFICATION_TYPE = `(${NOTIFICATION_TYPES.map((type) => type.replace('.', '\\.')).join('|')})`;

/** An IPv4 or IPv6 address, optionally with a CIDR prefix length. */
const PROXY_ADDRESS = '(?:\\d{1,3}(?:\\.\\d{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*)(?:/\\d{1,3})?';

// Every variable's `description` is its row in docs/operations.md (`npm run docs:config`), so it is
// Markdown, written for the operator, and relative links in it resolve from docs/.
export const ConfigSchema = Type.Object({
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], {
    default: 'development',
    description:
      "`development` (also serves the checkout page's `POST /checkout/dev-session`), `production` (requires `API_KEYS`, `STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET` and `CLIENT_TOKEN_SECRETS`) or `test`.",
  }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1', description: 'Address to listen on (`0.0.0.0` in the Docker image).' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 8000, description: 'Port to listen on.' }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info', description: 'pino level; logs are JSON lines, one per request, secrets redacted.' },
  ),
  DATABASE_URL: Type.String({
    minLength: 1,
    default: './data/coinshop.db',
    description:
      'A SQLite file (`sqlite:PATH` and `file:PATH` work too), `:memory:`, or `postgres://user:password@host:5432/db` for PostgreSQL.',
  }),
  SQLITE_SYNCHRONOUS: Type.Union([Type.Literal('FULL'), Type.Literal('NORMAL')], {
    default: 'FULL',
    description:
      'SQLite only. `FULL`: no answer is sent until every commit before it is on disk, so a credit survives a power cut. `NORMAL` (opt-in) syncs only at WAL checkpoints: much faster, a process crash still loses nothing, but a power cut or OS crash can lose the last commits (see [below](#sqlite-durability)).',
  }),
  DATABASE_POOL_SIZE: Type.Integer({
    minimum: 1,
    maximum: 1000,
    default: 10,
    description: 'PostgreSQL only: connections this process keeps open at most.',
  }),
  DATABASE_PREPARED_STATEMENTS: Type.Boolean({
    default: true,
    description:
      "PostgreSQL only: run a purchase's statements as named prepared statements, parsed and planned once per connection (a third less database CPU per purchase). `false` behind a pooler in transaction mode that cannot carry them (PgBouncer before 1.21, or without `max_prepared_statements`).",
  }),
  REDIS_URL: Type.Optional(
    Type.String({
      pattern: '^rediss?://[^\\s]+$',
      description: '`redis://host:6379`: rate-limit counters shared by every replica. Unset: each process counts on its own.',
    }),
  ),
  REDIS_KEY_PREFIX: Type.String({
    pattern: '^[A-Za-z0-9_:.-]{1,64}$',
    default: 'coinshop:',
    description: "Prefix of coinshop's keys in that Redis, so several deployments can share one.",
  }),
  STRIPE_SECRET_KEY: Type.Optional(
    Type.String({
      pattern: '^(sk|rk)_(test|live)_[A-Za-z0-9_]+$',
      description: '`sk_test_…`, `sk_live_…` or `rk_…`. Unset: the simulated gateway.',
    }),
  ),
  STRIPE_API_BASE: Type.Optional(
    Type.String({
      pattern: '^https?://[^/\\s]+/?$',
      description: "Base URL of a Stripe-compatible server for the Stripe SDK, e.g. `http://127.0.0.1:12111`. Unset: Stripe's API.",
    }),
  ),
  STRIPE_MAX_NETWORK_RETRIES: Type.Integer({
    minimum: 0,
    maximum: 10,
    default: 2,
    description: 'Stripe SDK retries (always with the same idempotency key).',
  }),
  STRIPE_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 20_000, description: 'Stripe SDK request timeout.' }),
  STRIPE_WEBHOOK_SECRET: Type.Optional(
    Type.String({
      pattern: '^whsec_[A-Za-z0-9_]+$',
      description: "The signing secret of Stripe's webhook endpoint, `whsec_…`. Unset: the simulated gateway makes its own.",
    }),
  ),
  STRIPE_PUBLISHABLE_KEY: Type.Optional(
    Type.String({
      pattern: '^pk_(test|live)_[A-Za-z0-9_]+$',
      description:
        '`pk_test_…` or `pk_live_…`, the same mode as `STRIPE_SECRET_KEY` (required with it): the checkout page collects cards with Stripe.js, so card data goes to Stripe, never here. Unset: the checkout page offers test cards.',
    }),
  ),
  CHECKOUT_RETURN_ORIGINS: Type.Optional(
    Type.String({
      pattern: '^https://[^,\\s/]+(,https://[^,\\s/]+)*$',
      description:
        "Comma-separated https origins Stripe Checkout may send a customer back to (`success_url`, `cancel_url`), e.g. `https://shop.example.com`. In development coinshop's own origin is allowed too. Unset: only that.",
    }),
  ),
  CHECKOUT_EXPIRY_MINUTES: Type.Integer({
    // Stripe's minimum is 30 minutes from the session's creation, and the expiry counts from the
    // purchase's, a moment earlier (or longer, for a retry under the same key): one minute of margin.
    minimum: 31,
    maximum: 1440,
    default: 60,
    description:
      "How long a Stripe Checkout Session stays open unpaid, counted from its purchase (31–1440: Stripe allows 30 minutes to 24 hours from the session's creation, a moment later); its purchase then fails with `checkout_expired`.",
  }),
  CATALOG_FILE: Type.Optional(
    Type.String({
      minLength: 1,
      description:
        'A JSON file `{ "packages": [{ "package_id", "name", "price_cents", "currency_amount", "currency"? }] }`, validated at start. Unset: the seed\'s three packs.',
    }),
  ),
  IDEMPOTENCY_KEY_TTL_HOURS: Type.Integer({
    minimum: 24,
    maximum: 24 * 30,
    default: 24,
    description: 'How long an Idempotency-Key is remembered (24–720; at least a day, like Stripe).',
  }),
  RECONCILE_INTERVAL_SECONDS: Type.Integer({
    minimum: 0,
    maximum: 86_400,
    default: 0,
    description: 'Run reconciliation in the server every this many seconds; `0` turns the timer off.',
  }),
  RECONCILE_AFTER_SECONDS: Type.Integer({
    minimum: 1,
    maximum: 86_400,
    default: 300,
    description: 'Reconciliation finishes purchases left unfinished for longer than this.',
  }),
  API_KEYS: Type.Optional(
    Type.String({
      pattern: '^[A-Za-z0-9_.~-]{24,200}(,[A-Za-z0-9_.~-]{24,200})*$',
      description:
        'Comma-separated API keys, 24–200 characters each (several, so they can be rotated). Unset: the service is open (development only).',
    }),
  ),
  CLIENT_TOKEN_SECRETS: Type.Optional(
    Type.String({
      pattern: '^[\\x21-\\x2b\\x2d-\\x7e]{32,512}(,[\\x21-\\x2b\\x2d-\\x7e]{32,512})*$',
      description:
        'Comma-separated secrets for client tokens, 32–512 printable characters each (no spaces or commas): the first signs, all verify, so a secret is rotated by putting the new one first and removing the old one once its tokens expired. Never logged or echoed. Unset: development signs with a random secret made at each start; production requires it.',
    }),
  ),
  CLIENT_TOKEN_TTL_SECONDS: Type.Integer({
    minimum: 30,
    maximum: 86_400,
    default: 900,
    description: 'How long a client token is valid (30–86400).',
  }),
  CLIENT_TOKENS_MAY_SPEND: Type.Boolean({
    default: false,
    description: "`true` lets a client token call `spend-currency` for its player; otherwise only the shop's backend may, with an API key.",
  }),
  CORS_ORIGINS: Type.Optional(
    Type.String({
      pattern: '^https?://[^,\\s]+(,https?://[^,\\s]+)*$',
      description: 'Comma-separated origins a browser front end may call from, e.g. `https://shop.example.com`. Unset: none.',
    }),
  ),
  TRUST_PROXY: Type.Optional(
    Type.String({
      pattern: `^(\\d{1,2}|${PROXY_ADDRESS}(,${PROXY_ADDRESS})*)$`,
      description:
        "Behind a load balancer: which proxies to believe about the client's address (X-Forwarded-For), as a number of hops (`1` for one load balancer) or comma-separated addresses/CIDRs. Unset: none, so callers cannot pick their own IP to dodge the per-IP limit.",
    }),
  ),
  RATE_LIMIT_PER_MINUTE: Type.Integer({
    minimum: 1,
    maximum: 1_000_000,
    default: 1200,
    description: "Requests per minute per API key, per client token's player, or per IP for a caller without a valid credential.",
  }),
  MAX_EVENT_LOOP_DELAY_MS: Type.Union([Type.Literal(0), Type.Integer({ minimum: 10, maximum: 60_000 })], {
    default: 1000,
    description: 'Shed load (503 with `Retry-After`) when the event loop lags more than this; `0` turns load shedding off.',
  }),
  REQUEST_TIMEOUT_MS: Type.Integer({
    minimum: 1000,
    maximum: 600_000,
    default: 30_000,
    description: 'How long a client may take to send its whole request, headers and body; a slower one gets 408 and is disconnected.',
  }),
  MAX_CONNECTIONS: Type.Integer({
    minimum: 0,
    maximum: 1_000_000,
    default: 10_000,
    description:
      "Connections held open at once; one more is closed as it arrives, so slow or idle clients cannot use up the process's file descriptors and memory. `0` = no cap.",
  }),
  SHUTDOWN_GRACE_MS: Type.Integer({
    minimum: 1000,
    maximum: 600_000,
    default: 90_000,
    description: 'On SIGTERM, how long in-flight requests get to finish before the process exits anyway.',
  }),
  GAME_WEBHOOK_URL: Type.Optional(
    Type.String({
      pattern: '^https?://[^\\s]+$',
      description:
        'Where the game server receives signed notifications of every money event ([notifications.md](notifications.md)). Unset: none sent; the feed still fills.',
    }),
  ),
  GAME_WEBHOOK_SECRET: Type.Optional(
    Type.String({
      pattern: '^whsec_[A-Za-z0-9+/]{16,}={0,2}$',
      description:
        'The Standard Webhooks secret the game server verifies with: `whsec_` + the base64 of 16 or more random bytes. Required with `GAME_WEBHOOK_URL`.',
    }),
  ),
  GAME_WEBHOOK_EVENTS: Type.Optional(
    Type.String({
      pattern: `^${NOTIFICATION_TYPE}(,${NOTIFICATION_TYPE})*$`,
      description: 'Comma-separated notification types to send; the others stay in the feed. Unset: all types.',
    }),
  ),
  GAME_WEBHOOK_TIMEOUT_MS: Type.Integer({
    minimum: 1000,
    maximum: 60_000,
    default: 10_000,
    description: 'How long the game server gets to answer one delivery attempt.',
  }),
});
export type Config = Static<typeof ConfigSchema>;

/** Variables whose values must never be echoed back, even in an error. */
const SECRET_VARIABLES = new Set([
  'STRIPE_SECRET_KEY',
  'STRIPE_WEBHOOK_SECRET',
  'API_KEYS',
  'CLIENT_TOKEN_SECRETS',
  'DATABASE_URL',
  'REDIS_URL',
  'GAME_WEBHOOK_SECRET',
]);

const hints: Partial<Record<keyof Config, string>> = {
  NODE_ENV: 'one of development, production, test',
  PORT: 'an integer from 0 to 65535',
  DATABASE_POOL_SIZE: 'an integer from 1 to 1000',
  DATABASE_PREPARED_STATEMENTS: 'true or false',
  SQLITE_SYNCHRONOUS: 'FULL (every commit survives a power cut) or NORMAL (faster; a power cut can lose the last commits)',
  REDIS_URL: 'a Redis URL such as redis://127.0.0.1:6379',
  REDIS_KEY_PREFIX: '1 to 64 characters of A-Z a-z 0-9 _ : . -',
  LOG_LEVEL: 'one of fatal, error, warn, info, debug, trace, silent',
  STRIPE_SECRET_KEY: 'a Stripe secret key (sk_test_…, sk_live_… or rk_…)',
  STRIPE_API_BASE: 'a base URL such as http://127.0.0.1:12111',
  STRIPE_MAX_NETWORK_RETRIES: 'an integer from 0 to 10',
  STRIPE_TIMEOUT_MS: 'an integer number of milliseconds from 100 to 120000',
  STRIPE_WEBHOOK_SECRET: 'a webhook signing secret (whsec_…)',
  STRIPE_PUBLISHABLE_KEY: 'a Stripe publishable key (pk_test_… or pk_live_…)',
  IDEMPOTENCY_KEY_TTL_HOURS: 'an integer number of hours from 24 to 720',
  RECONCILE_INTERVAL_SECONDS: 'an integer number of seconds from 0 (off) to 86400',
  RECONCILE_AFTER_SECONDS: 'an integer number of seconds from 1 to 86400',
  API_KEYS: 'a comma-separated list of keys, each 24 to 200 characters of A-Z a-z 0-9 _ . ~ -',
  CLIENT_TOKEN_SECRETS: 'a comma-separated list of secrets, each 32 to 512 printable ASCII characters without spaces or commas',
  CLIENT_TOKEN_TTL_SECONDS: 'an integer number of seconds from 30 to 86400',
  CLIENT_TOKENS_MAY_SPEND: 'true or false',
  CORS_ORIGINS: 'a comma-separated list of origins such as https://shop.example.com',
  CHECKOUT_RETURN_ORIGINS: 'a comma-separated list of https origins (no path) such as https://shop.example.com',
  CHECKOUT_EXPIRY_MINUTES: 'an integer number of minutes from 31 to 1440',
  RATE_LIMIT_PER_MINUTE: 'an integer from 1 to 1000000',
  TRUST_PROXY: 'a number of proxy hops (such as 1) or comma-separated proxy addresses or CIDRs',
  MAX_EVENT_LOOP_DELAY_MS: '0 (off) or an integer number of milliseconds from 10 to 60000',
  REQUEST_TIMEOUT_MS: 'an integer number of milliseconds from 1000 to 600000',
  MAX_CONNECTIONS: 'an integer from 0 (no cap) to 1000000',
  SHUTDOWN_GRACE_MS: 'an integer number of milliseconds from 1000 to 600000',
  GAME_WEBHOOK_URL: 'an http(s) URL such as https://game.example.com/coinshop-events',
  GAME_WEBHOOK_SECRET: 'a Standard Webhooks secret: whsec_ followed by the base64 of at least 16 random bytes',
  GAME_WEBHOOK_EVENTS: `a comma-separated list of ${NOTIFICATION_TYPES.join(', ')}`,
  GAME_WEBHOOK_TIMEOUT_MS: 'an integer number of milliseconds from 1000 to 60000',
};

/** What production refuses to run without, and why. */
const PRODUCTION_REQUIRES: [keyof Config, string][] = [
  ['API_KEYS', "without it anyone who can reach the service could spend players' money"],
  ['STRIPE_SECRET_KEY', 'the simulated gateway is for development'],
  ['STRIPE_WEBHOOK_SECRET', 'without it payments finished outside the API are never credited'],
  ['CLIENT_TOKEN_SECRETS', 'without it each replica would sign client tokens with its own random secret, lost at every restart'],
];

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Reads configuration from an environment (process.env by default). Empty strings count as unset.
 * Throws a ConfigError whose message is one line naming the first bad variable.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(ConfigSchema.properties)) {
    const value = env[key];
    if (value !== undefined && value.trim() !== '') raw[key] = value.trim();
  }
  const converted = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, raw));
  const error = Value.Errors(ConfigSchema, converted).First();
  if (error) {
    const variable = error.path.split('/')[1] ?? error.path;
    const got = SECRET_VARIABLES.has(variable) ? '' : ` (got ${JSON.stringify(raw[variable])})`;
    const hint = hints[variable as keyof Config] ?? error.message.toLowerCase();
    throw new ConfigError(variable, `Invalid configuration: ${variable} must be ${hint}${got}`);
  }
  const config = converted as Config;
  if (env['HEAP_GROWTH_PERCENT'] !== undefined) {
    // V8 reads its heap settings as node flags at start; one changed in a running process is not supported.
    throw new ConfigError(
      'HEAP_GROWTH_PERCENT',
      'Invalid configuration: HEAP_GROWTH_PERCENT is not read; give node --heap-growing-percent=N instead (docs/operations.md, Memory)',
    );
  }
  const publishableMode = /^pk_(test|live)_/.exec(config.STRIPE_PUBLISHABLE_KEY ?? '')?.[1];
  if (publishableMode !== undefined) {
    // A card Stripe.js makes can only be charged by the same Stripe account, in the same mode.
    const secretMode = /^(?:sk|rk)_(test|live)_/.exec(config.STRIPE_SECRET_KEY ?? '')?.[1];
    if (secretMode === undefined) {
      throw new ConfigError(
        'STRIPE_PUBLISHABLE_KEY',
        'Invalid configuration: STRIPE_PUBLISHABLE_KEY needs STRIPE_SECRET_KEY (the simulated gateway cannot charge cards made by Stripe.js)',
      );
    }
    if (secretMode !== publishableMode) {
      throw new ConfigError(
        'STRIPE_PUBLISHABLE_KEY',
        `Invalid configuration: STRIPE_PUBLISHABLE_KEY is a ${publishableMode} key but STRIPE_SECRET_KEY is a ${secretMode} key`,
      );
    }
  }
  if (config.GAME_WEBHOOK_URL !== undefined) {
    if (!URL.canParse(config.GAME_WEBHOOK_URL)) {
      throw new ConfigError('GAME_WEBHOOK_URL', `Invalid configuration: GAME_WEBHOOK_URL must be ${hints.GAME_WEBHOOK_URL}`);
    }
    if (config.GAME_WEBHOOK_SECRET === undefined) {
      throw new ConfigError(
        'GAME_WEBHOOK_SECRET',
        'Invalid configuration: GAME_WEBHOOK_SECRET is required with GAME_WEBHOOK_URL (the game server verifies every notification with it)',
      );
    }
  }
  if (config.GAME_WEBHOOK_SECRET !== undefined && Buffer.from(config.GAME_WEBHOOK_SECRET.slice('whsec_'.length), 'base64').length < 16) {
    throw new ConfigError('GAME_WEBHOOK_SECRET', `Invalid configuration: GAME_WEBHOOK_SECRET must be ${hints.GAME_WEBHOOK_SECRET}`);
  }
  for (const origin of config.CHECKOUT_RETURN_ORIGINS?.split(',') ?? []) {
    if (!URL.canParse(origin) || new URL(origin).origin !== origin) {
      throw new ConfigError(
        'CHECKOUT_RETURN_ORIGINS',
        `Invalid configuration: CHECKOUT_RETURN_ORIGINS must be ${hints.CHECKOUT_RETURN_ORIGINS} (got ${JSON.stringify(origin)})`,
      );
    }
  }
  if (config.NODE_ENV === 'production') {
    for (const [variable, why] of PRODUCTION_REQUIRES) {
      if (config[variable] === undefined) {
        throw new ConfigError(variable, `Invalid configuration: ${variable} is required when NODE_ENV=production (${why})`);
      }
    }
  }
  return config;
}

/** Reads `.env` from the working directory into process.env, if there is one (real variables win). */
export function loadDotEnv(): void {
  try {
    process.loadEnvFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
