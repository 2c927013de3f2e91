import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { SimulatedObjectNotFound, SimulationRefused, type PaymentSimulation, type SimulatedCheckoutPage } from '../../gateway/types.js';
import { webPage } from '../../plugins/protection.js';

/** The cards the page offers: the first pays. Stripe's test cards, so no real card is ever asked for. */
const CARDS: readonly (readonly [string, string])[] = [
  ['pm_card_visa', 'Visa 4242 — pays'],
  ['pm_card_threeDSecure2Required', 'Visa 3220 — 3-D Secure, then pays'],
  ['pm_card_chargeDeclined', 'Visa 0002 — declined'],
  ['pm_card_chargeDeclinedInsufficientFunds', 'Visa 9995 — insufficient funds'],
];

const escape = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

function money(cents: number, currency: string): string {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: currency.toUpperCase() }).format(cents / 100);
}

function page(view: SimulatedCheckoutPage, declined: string | undefined): string {
  const { session } = view;
  const open = session.status === 'open';
  const cards = CARDS.map(
    ([token, label], i) =>
      `<label class="choice"><input type="radio" name="card" value="${token}"${i === 0 ? ' checked' : ''}> ${escape(label)}</label>`,
  ).join('\n        ');
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Pay ${escape(view.productName)} — test Checkout</title>
  <link rel="stylesheet" href="/checkout/checkout.css">
</head>
<body>
  <header>
    <h1>Pay ${escape(money(view.amountCents, view.currency))}</h1>
    <p class="mode">Simulated Stripe Checkout: a development stand-in for Stripe's hosted page. No money moves.</p>
  </header>
  <main>
    <section aria-labelledby="order-heading">
      <h2 id="order-heading">${escape(view.productName)}</h2>
      <p id="price">${escape(money(view.amountCents, view.currency))}</p>
      ${declined ? `<p class="status" role="alert" data-kind="error">Your card was declined (${escape(declined)}). Try another card.</p>` : ''}
      ${
        open
          ? `<form method="post" action="/checkout/pay/${encodeURIComponent(session.id)}">
        <fieldset>
        <legend>Test card</legend>
        ${cards}
        </fieldset>
        <div class="actions">
          <button type="submit" name="action" value="pay">Pay ${escape(money(view.amountCents, view.currency))}</button>
          <button type="submit" name="action" value="cancel" class="secondary">Cancel</button>
        </div>
      </form>`
          : `<p class="status" role="status">This Checkout Session is ${session.status === 'complete' ? 'paid' : 'expired'}.</p>`
      }
    </section>
  </main>
</body>
</html>
`;
}

/** Stripe replaces `{CHECKOUT_SESSION_ID}` in the return URL with the session's id. */
const returnUrl = (url: string, sessionId: string) => url.replaceAll('{CHECKOUT_SESSION_ID}', sessionId);

const origins = (view: SimulatedCheckoutPage) => [
  ...new Set(
    [view.successUrl, view.cancelUrl].map((u) => (URL.canParse(u) ? new URL(u).origin : undefined)).filter((o) => o !== undefined),
  ),
];

/**
 * DEVELOPMENT ONLY, on the simulated gateway: coinshop plays Stripe's hosted Checkout page, so the
 * Checkout flow runs end to end offline. It shows the pack and price and the test cards (one that
 * pays selected); Pay completes the session (its webhooks credit the purchase) and Cancel leaves it
 * open, each then sending the browser to the session's return URL, as Stripe does. A plain HTML form:
 * the page runs no script. Hidden from the OpenAPI document, like the checkout page.
 */
const simulatedCheckoutPage: FastifyPluginAsyncTypebox<{ simulator: PaymentSimulation }> = async (app, { simulator }) => {
  // This plugin is its own context: helmet's page headers go on its answers only.
  await webPage(app);
  const Params = Type.Object({ session_id: Type.String({ minLength: 1, maxLength: 255 }) });
  const Form = Type.Object({
    action: Type.Union([Type.Literal('pay'), Type.Literal('cancel')]),
    card: Type.Optional(Type.Union(CARDS.map(([token]) => Type.Literal(token)))),
  });
  // The page's form posts as HTML forms do; this parser serves only this plugin's routes.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(String(body))));
  });

  const policy = (view: SimulatedCheckoutPage) =>
    [
      "default-src 'none'",
      "style-src 'self'",
      // The form posts here, then Stripe-style redirects to the return URL's origin.
      `form-action 'self' ${origins(view).join(' ')}`.trim(),
      "base-uri 'none'",
      "frame-ancestors 'none'",
    ].join('; ');
  const send = (reply: import('fastify').FastifyReply, view: SimulatedCheckoutPage, declined?: string) =>
    reply
      .header('content-security-policy', policy(view))
      .header('cache-control', 'no-store')
      .type('text/html; charset=utf-8')
      .send(page(view, declined));
  const notFound = (reply: import('fastify').FastifyReply) =>
    reply.code(404).header('cache-control', 'no-store').type('text/plain; charset=utf-8').send('No such Checkout Session');

  app.get('/checkout/pay/:session_id', { schema: { hide: true, params: Params } }, async (request, reply) => {
    const view = simulator.checkoutPage(request.params.session_id);
    return view ? send(reply, view) : notFound(reply);
  });

  app.post('/checkout/pay/:session_id', { schema: { hide: true, params: Params, body: Form } }, async (request, reply) => {
    const { session_id } = request.params;
    const view = simulator.checkoutPage(session_id);
    if (!view) return notFound(reply);
    if (request.body.action === 'cancel') return reply.redirect(returnUrl(view.cancelUrl, session_id), 303);
    try {
      const { declined } = await simulator.finishCheckout(session_id, 'complete', request.body.card ?? 'pm_card_visa');
      if (declined) return send(reply.code(402), view, declined);
    } catch (err) {
      if (!(err instanceof SimulationRefused || err instanceof SimulatedObjectNotFound)) throw err;
      // Paid or expired meanwhile: the page says which.
      const now = simulator.checkoutPage(session_id);
      return now ? send(reply.code(409), now) : notFound(reply);
    }
    return reply.redirect(returnUrl(view.successUrl, session_id), 303);
  });
};

export default simulatedCheckoutPage;
