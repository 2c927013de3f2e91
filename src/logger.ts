import type { FastifyServerOptions } from 'fastify';
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
