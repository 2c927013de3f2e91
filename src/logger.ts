import type { FastifyBaseLogger, FastifyServerOptions } from 'fastify';
import type { Bindings, ChildLoggerOptions } from 'pino';
import type { Config } from './config.js';
import type { LogDestination } from './log-destination.js';

/** Paths pino blanks in every log line: credentials, card ids and Stripe secrets. */
export const redactPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["stripe-signature"]',
  'err.raw',
  'err.headers',
  'err.cause.raw',
  'err.cause.headers',
  'client_secret',
  'payment_method_id',
  'paymentMethodId',
  '*.client_secret',
  '*.payment_method_id',
  '*.paymentMethodId',
];

function prettyWhenInteractive(): { target: string } | undefined {
  if (!process.stdout.isTTY) return undefined;
  try {
    import.meta.resolve('pino-pretty');
    return { target: 'pino-pretty' };
  } catch {
    return undefined;
  }
}

/** pino as in production: JSON lines, redacted, written to stdout in the background (see LogDestination); pretty only on an interactive terminal. */
export function loggerOptions(config: Pick<Config, 'LOG_LEVEL'>, destination: LogDestination): FastifyServerOptions['logger'] {
  const transport = prettyWhenInteractive();
  return {
    level: config.LOG_LEVEL,
    redact: { paths: redactPaths, censor: '[redacted]' },
    ...(transport ? { transport } : { stream: destination }),
  };
}

type Method = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * A request's logger, made the first time something logs through it. Fastify gives every request a
 * child of the app's logger bound to the request's id, and pino builds one by serialising the
 * binding and running it through the redaction paths — on every request, though a request that
 * completes logs its line through the app's logger (see OneLinePerRequest in app.ts) and never
 * through its own. Only requests that log more (an error, a refused payment) make the child.
 */
export class RequestLogger implements FastifyBaseLogger {
  #made: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
    private readonly options: ChildLoggerOptions,
  ) {}

  get #logger(): FastifyBaseLogger {
    return (this.#made ??= this.parent.child(this.bindings, this.options));
  }

  get level(): string {
    return this.#made?.level ?? this.options.level ?? this.parent.level;
  }

  set level(level: string) {
    this.#logger.level = level;
  }

  #log(method: Method, args: unknown[]): void {
    const logger = this.#logger;
    Reflect.apply(logger[method], logger, args);
  }

  fatal(...args: unknown[]): void {
    this.#log('fatal', args);
  }
  error(...args: unknown[]): void {
    this.#log('error', args);
  }
  warn(...args: unknown[]): void {
    this.#log('warn', args);
  }
  info(...args: unknown[]): void {
    this.#log('info', args);
  }
  debug(...args: unknown[]): void {
    this.#log('debug', args);
  }
  trace(...args: unknown[]): void {
    this.#log('trace', args);
  }
  silent(..._args: unknown[]): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#logger.child(bindings, options);
  }
}
