import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CheckoutSettings, DevSession } from '../../../schemas/checkout.js';
import { CreateCustomerRequest } from '../../../schemas/customer.js';
import { ref } from '../../../schemas/index.js';
import { webPage } from '../../plugins/protection.js';
import { createCustomer } from '../../services/customers.js';

const PAGE_FOLDER = join('public', 'checkout');

/**
 * The folder holding the page's files: the first ancestor of this module that has `public/checkout`.
 * That is the project root both from `src/` (tsx) and from `dist/src/` (npm start, the Docker image).
 */
export function checkoutFolder(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, PAGE_FOLDER, 'index.html'))) return join(dir, PAGE_FOLDER);
    if (dirname(dir) === dir) throw new Error(`The checkout page's files (${PAGE_FOLDER}/) are missing above ${from}`);
  }
}

/** Exactly what the page loads: itself, its module and stylesheet, the API, and Stripe.js when it is used. */
export function checkoutContentSecurityPolicy(withStripe: boolean): string {
  const stripeScripts = withStripe ? ' https://js.stripe.com https://*.js.stripe.com' : '';
  return [
    "default-src 'none'",
    `script-src 'self'${stripeScripts}`,
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src 'self'${withStripe ? ' https://api.stripe.com' : ''}`,
    // Elements' card field and 3-D Secure challenges are Stripe frames.
    `frame-src ${withStripe ? 'https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com' : "'none'"}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/**
 * A small checkout page a shop can copy (plain HTML, one ES module, CSS): sign up, save a card, buy
 * a pack, see the balance and history, finish 3-D Secure. It calls the public API like any client;
 * these routes are hidden from the OpenAPI document and, like the docs, need no API key (they are
 * still rate limited).
 */
const checkoutRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const folder = checkoutFolder();
  // The files are small and fixed for the life of the process: read once.
  const files = {
    page: readFileSync(join(folder, 'index.html')),
    script: readFileSync(join(folder, 'checkout.js')),
    style: readFileSync(join(folder, 'checkout.css')),
  };
  const publishableKey = app.config.STRIPE_PUBLISHABLE_KEY ?? null;
  const policy = checkoutContentSecurityPolicy(publishableKey !== null);
  const hidden = { hide: true };

  await app.register(async (page) => {
    await webPage(page);
    page.get('/checkout', { schema: hidden }, async (_request, reply) =>
      reply.header('content-security-policy', policy).header('cache-control', 'no-cache').type('text/html; charset=utf-8').send(files.page),
    );
  });
  app.get('/checkout/checkout.js', { schema: hidden }, async (_request, reply) =>
    reply.header('cache-control', 'no-cache').type('text/javascript; charset=utf-8').send(files.script),
  );
  app.get('/checkout/checkout.css', { schema: hidden }, async (_request, reply) =>
    reply.header('cache-control', 'no-cache').type('text/css; charset=utf-8').send(files.style),
  );

  // DEVELOPMENT ONLY (NODE_ENV=development): anyone who can reach the server may sign a player up here
  // and gets that player's client token, with no API key. It does not exist in production or test
  // mode, where the shop's backend mints the token (POST /stripe/client-tokens) and hands it to the
  // page in its URL fragment (/checkout#token=…).
  const devSession = app.config.NODE_ENV === 'development';
  if (devSession) {
    app.log.warn(
      'NODE_ENV=development: POST /checkout/dev-session lets anyone sign a player up and get their client token without an API key.',
    );
    app.post(
      '/checkout/dev-session',
      { schema: { ...hidden, body: ref(CreateCustomerRequest), response: { 200: DevSession } } },
      async (request): Promise<DevSession> => {
        const customer = await createCustomer(app, request.body, { userId: randomUUID() });
        return {
          user_id: customer.user_id,
          stripe_customer_id: customer.stripe_customer_id,
          ...(await app.clientTokens.mint(customer.user_id)),
        };
      },
    );
  }

  // The page's mode.
  app.get(
    '/checkout/settings',
    { schema: { ...hidden, response: { 200: CheckoutSettings } } },
    async (_request, reply): Promise<CheckoutSettings> => {
      reply.header('cache-control', 'no-store');
      return { gateway: app.payments.kind, publishable_key: publishableKey, auth_required: app.authRequired, dev_session: devSession };
    },
  );
};

export default checkoutRoutes;
