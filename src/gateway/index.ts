import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { ConfigError, type Config } from '../config.js';
import { SimulatedGateway } from './simulated.js';
import { createStripeClient, StripeGateway } from './stripe.js';
import type { PaymentsGateway } from './types.js';

/** STRIPE_SECRET_KEY selects Stripe; without it, the offline simulation. */
export function createGateway(config: Config): PaymentsGateway {
  if (!config.STRIPE_SECRET_KEY) {
    if (config.STRIPE_API_BASE) {
      throw new ConfigError(
        'STRIPE_API_BASE',
        'Invalid configuration: STRIPE_API_BASE is set but STRIPE_SECRET_KEY is not (the simulated gateway calls no server)',
      );
    }
    return new SimulatedGateway({ webhookSecret: config.STRIPE_WEBHOOK_SECRET });
  }
  return new StripeGateway(
    createStripeClient({
      secretKey: config.STRIPE_SECRET_KEY,
      apiBase: config.STRIPE_API_BASE,
      maxNetworkRetries: config.STRIPE_MAX_NETWORK_RETRIES,
      timeoutMs: config.STRIPE_TIMEOUT_MS,
    }),
    config.STRIPE_WEBHOOK_SECRET,
  );
}

declare module 'fastify' {
  interface FastifyInstance {
    payments: PaymentsGateway;
  }
}

/** Decorates the app with its payments gateway: the one given (tests), or the one the config selects. */
export default fp(
  async function paymentsGateway(app: FastifyInstance, options: { config: Config; gateway?: PaymentsGateway | undefined }) {
    const gateway = options.gateway ?? createGateway(options.config);
    if (gateway.kind === 'simulated') {
      app.log.warn(
        'No STRIPE_SECRET_KEY: payments are SIMULATED (Stripe test-card outcomes, no money moves). Set STRIPE_SECRET_KEY to use Stripe.',
      );
    }
    app.decorate('payments', gateway);
  },
  { name: 'payments-gateway' },
);
