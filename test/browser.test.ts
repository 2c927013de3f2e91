import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { BrowserContext, Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { ARTIFACTS, chromiumMissing, launchChromium } from './support/browser.js';
import { startFakeStripe } from './support/fake-stripe.js';
import { buildTestApp } from './support/helper.js';

/** coinshop listening on a free loopback port (simulated gateway, a new database of the engine under test). */
async function listeningCoinshop(t: Test, env: Record<string, string> = {}) {
  const app = await buildTestApp(t, { env });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

type Json = Record<string, unknown>;
/** The server's own answer, with the shop backend's API key when the server has one. */
async function apiGet(url: string, apiKey?: string): Promise<Json> {
  const response = await fetch(url, apiKey === undefined ? {} : { headers: { authorization: `Bearer ${apiKey}` } });
  return (await response.json()) as Json;
}

/** A new tab on the checkout page, with what it logs: CSP violations, script errors, Authorization headers sent. */
async function openCheckout(
  context: BrowserContext,
  base: string,
  options: { ready?: boolean; fragment?: string; beforeLoad?: (page: Page) => Promise<unknown> } = {},
) {
  const page = await context.newPage();
  const cspViolations: string[] = [];
  const scriptErrors: string[] = [];
  const sentAuthorization: string[] = [];
  page.on('request', (request) => {
    const header = request.headers()['authorization'];
    if (header !== undefined) sentAuthorization.push(header);
  });
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  page.on('pageerror', (error) => scriptErrors.push(error.message));
  await options.beforeLoad?.(page);
  await page.goto(`${base}/checkout${options.fragment ?? ''}`);
  if (options.ready !== false) {
    await page
      .locator('body[data-ready="true"]')
      .waitFor()
      .catch(async (err: Error) => {
        throw new Error(`the page did not get ready; the page at ${page.url()} is: ${(await page.content()).slice(0, 600)}`, {
          cause: err,
        });
      });
  }
  return { page, cspViolations, scriptErrors, sentAuthorization };
}

// Code run inside the page is given as strings: this project's TypeScript has no DOM types.

/** Waits until the status region says `expected`, and returns all it says. */
async function statusSays(page: Page, expected: string | RegExp): Promise<string> {
  const status = page.getByRole('status');
  await status
    .filter({ hasText: expected })
    .waitFor()
    .catch(async (err: Error) => {
      throw new Error(
        `the status region never said ${String(expected)}; the page at ${page.url()} is: ${(await page.content()).slice(0, 600)}`,
        { cause: err },
      );
    });
  return (await status.textContent()) ?? '';
}

async function signUp(page: Page, name = 'Ada Lovelace', email = 'ada@example.com'): Promise<string> {
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Name').fill(name);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await statusSays(page, `Welcome, ${name}! Now save a card.`);
  const player = (await page.locator('#player').textContent()) ?? '';
  const userId = /Player ID: (\S+)$/.exec(player)?.[1];
  if (userId === undefined) throw new Error(`no player id shown: ${player}`);
  return userId;
}

async function saveTestCard(page: Page, token: string) {
  await page.getByLabel('Test card').selectOption(token);
  await page.getByRole('button', { name: 'Save card' }).click();
  await statusSays(page, 'Card saved. Choose a coin pack.');
}

const balanceShows = (page: Page, text: string) =>
  page
    .locator('#balance')
    .filter({ hasText: new RegExp(`^${text}$`) })
    .waitFor();
const historyLines = async (page: Page) =>
  (await page.locator('#history li').allTextContents()).map((line) => line.replace(/, [^,]+, [^,]+$/, ''));

/** The shop backend's key on the servers that have API_KEYS; the page must never send it. */
const API_KEY = 'ck_test_browser_0123456789abcdef';

const missing = chromiumMissing();
if (missing !== undefined) {
  t.fail(missing);
} else {
  // Chromium starts once for the file; each test opens its own tab.
  t.setTimeout(300_000);
  let context: BrowserContext;
  let base: string;
  t.before(async () => {
    base = await listeningCoinshop(t);
    context = await launchChromium(t);
  });

  t.test('the checkout page signs a player up, saves pm_card_visa, buys a pack and shows the balance and history', async (t) => {
    const { page, cspViolations, scriptErrors } = await openCheckout(context, base);
    t.teardown(() => page.close());
    await page.setViewportSize({ width: 720, height: 900 });
    t.match(await page.locator('#mode').textContent(), /payments are simulated/);
    t.same(await page.getByRole('button', { name: /^Buy / }).allTextContents(), [
      'Buy Starter Pack',
      'Buy Popular Pack',
      'Buy Premium Pack',
    ]);
    t.same(await page.locator('#packs p').allTextContents(), ['100 coins for $10.00', '300 coins for $25.00', '700 coins for $50.00']);
    t.ok(await page.getByRole('button', { name: 'Buy Starter Pack' }).isDisabled(), 'no buying before a card is saved');

    const userId = await signUp(page);
    await saveTestCard(page, 'pm_card_visa');
    t.equal(await page.locator('#saved-card').textContent(), 'Card saved: Visa — pays.');
    await page.getByRole('button', { name: 'Buy Popular Pack' }).click();
    t.equal(await statusSays(page, /^Payment complete/), 'Payment complete: 300 coins added. Your balance is 300 coins.');
    await balanceShows(page, '300 coins');
    t.same(await historyLines(page), ['Popular Pack: 300 coins for $25.00 — paid']);
    // From the top, so the sticky status bar sits in its place.
    await page.evaluate('window.scrollTo(0, 0)');
    await page.screenshot({ path: join(ARTIFACTS, 'checkout-after-purchase.png'), fullPage: true });

    t.equal((await apiGet(`${base}/stripe/customer/${userId}`))['currency_balance'], 300, 'the server holds the balance the page shows');
    t.match(await apiGet(`${base}/stripe/transactions/${userId}`), { transactions: [{ package_id: 'package_2', status: 'completed' }] });
    t.same(cspViolations, [], 'the page needs nothing its CSP blocks');
    t.same(scriptErrors, []);
  });

  t.test('a declined card shows its decline message in the status region, and another card then pays', async (t) => {
    const { page } = await openCheckout(context, base);
    t.teardown(() => page.close());
    const userId = await signUp(page, 'Grace Hopper', 'grace@example.com');
    await saveTestCard(page, 'pm_card_chargeDeclined');
    await page.getByRole('button', { name: 'Buy Starter Pack' }).click();
    t.equal(await statusSays(page, /^Payment declined/), 'Payment declined: Card was declined. Nothing was charged; try another card.');
    t.equal(await page.getByRole('status').getAttribute('data-kind'), 'error');

    await saveTestCard(page, 'pm_card_chargeDeclinedInsufficientFunds');
    await page.getByRole('button', { name: 'Buy Starter Pack' }).click();
    t.equal(
      await statusSays(page, /^Payment declined: Insufficient/),
      'Payment declined: Insufficient funds. Nothing was charged; try another card.',
    );

    await saveTestCard(page, 'pm_card_mastercard');
    await page.getByRole('button', { name: 'Buy Starter Pack' }).click();
    await statusSays(page, 'Payment complete: 100 coins added. Your balance is 100 coins.');
    await balanceShows(page, '100 coins');
    t.same(await historyLines(page), [
      'Starter Pack: 100 coins for $10.00 — paid',
      'Starter Pack: 100 coins for $10.00 — declined',
      'Starter Pack: 100 coins for $10.00 — declined',
    ]);
    t.match(await apiGet(`${base}/stripe/transactions/${userId}`), {
      transactions: [
        { status: 'completed' },
        { status: 'failed', failure_code: 'insufficient_funds' },
        { status: 'failed', failure_code: 'card_declined' },
      ],
    });
  });

  t.test('3-D Secure completes through the page (simulated bank) and credits; a refused one credits nothing', async (t) => {
    const { page, cspViolations } = await openCheckout(context, base);
    t.teardown(() => page.close());
    const userId = await signUp(page, 'Alan Turing', 'alan@example.com');
    await saveTestCard(page, 'pm_card_threeDSecure2Required');

    await page.getByRole('button', { name: 'Buy Premium Pack' }).click();
    await statusSays(page, 'Your bank asks you to confirm this payment (3-D Secure).');
    const panel = page.getByRole('region', { name: 'Confirm with your bank' });
    t.ok(await panel.isVisible());
    t.equal(await page.evaluate<string>('document.activeElement.id'), 'authentication-heading', 'focus moves to the bank step');
    await panel.getByRole('button', { name: 'Confirm payment' }).click();
    t.equal(await statusSays(page, /^Payment confirmed/), 'Payment confirmed: 700 coins added.');
    await balanceShows(page, '700 coins');
    t.ok(await panel.isHidden());

    await page.getByRole('button', { name: 'Buy Starter Pack' }).click();
    await panel.getByRole('button', { name: 'Refuse payment' }).click();
    t.equal(await statusSays(page, /^Payment not completed/), 'Payment not completed: the bank did not confirm it. Nothing was charged.');
    await page.locator('#history li').nth(1).waitFor();
    t.same(await historyLines(page), ['Starter Pack: 100 coins for $10.00 — declined', 'Premium Pack: 700 coins for $50.00 — paid']);
    t.equal((await apiGet(`${base}/stripe/customer/${userId}`))['currency_balance'], 700);
    t.same(cspViolations, []);
  });

  t.test('a purchase whose answer is lost is retried with the same Idempotency-Key and charged once', async (t) => {
    const { page } = await openCheckout(context, base);
    t.teardown(() => page.close());
    const userId = await signUp(page, 'Katherine Johnson', 'katherine@example.com');
    await saveTestCard(page, 'pm_card_visa');
    const keys: string[] = [];
    page.on('request', (request) => {
      if (request.url().endsWith('/stripe/purchase-currency')) keys.push(request.headers()['idempotency-key'] ?? '');
    });
    // The purchase reaches coinshop and succeeds, but the connection drops before the page hears.
    let reachedServer = 0;
    await page.route(
      '**/stripe/purchase-currency',
      async (route) => {
        reachedServer = (await route.fetch()).status();
        await route.abort('connectionreset');
      },
      { times: 1 },
    );
    await page.getByRole('button', { name: 'Buy Starter Pack' }).click();
    t.equal(
      await statusSays(page, /could not be reached/),
      'The shop could not be reached. Check your connection. It is safe to try again: you will not be charged twice.',
    );
    t.equal(reachedServer, 200, 'coinshop did charge');
    await page.getByRole('button', { name: 'Try again' }).click();
    await statusSays(page, 'Payment complete: 100 coins added. Your balance is 100 coins.');
    t.equal(keys.length, 2);
    t.equal(keys[0], keys[1], 'the retry sends the same Idempotency-Key');
    t.match(keys[0], /^[0-9a-f-]{36}$/);
    t.match(await apiGet(`${base}/stripe/transactions/${userId}`), { transactions: [{ status: 'completed' }] });
    t.equal(((await apiGet(`${base}/stripe/transactions/${userId}`))['transactions'] as unknown[]).length, 1, 'one purchase, charged once');

    // A double click is one purchase.
    await page.getByRole('button', { name: 'Buy Starter Pack' }).dblclick();
    await statusSays(page, 'Payment complete: 100 coins added. Your balance is 200 coins.');
    await balanceShows(page, '200 coins');
    t.equal(keys.length, 3, 'one request for the double click');
    t.not(keys[2], keys[0], 'a new purchase is a new attempt with a new key');
    t.equal(((await apiGet(`${base}/stripe/transactions/${userId}`))['transactions'] as unknown[]).length, 2);
  });

  t.test('keyboard only, at 375 px: every control is labelled, focus is visible, and nothing scrolls sideways', async (t) => {
    const { page } = await openCheckout(context, base);
    t.teardown(() => page.close());
    await page.setViewportSize({ width: 375, height: 740 });

    t.same(await page.locator('h1').allTextContents(), ['Buy coins']);
    t.same(await page.locator('h2:visible').allTextContents(), ['1. Player', '2. Card', '3. Coin packs', 'Your coins']);
    const unlabelled = await page.evaluate<string[]>(
      `Array.from(document.querySelectorAll('input, select, textarea'))
        .filter((el) => el.labels.length === 0 && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
        .map((el) => el.id)`,
    );
    t.same(unlabelled, [], 'every form control has a label');
    t.equal(await page.getByRole('status').getAttribute('aria-live'), 'polite');

    const focused = () =>
      page.evaluate<{ id: string; outline: boolean }>(`(() => {
        const el = document.activeElement;
        const style = getComputedStyle(el);
        return { id: el.id || el.textContent.trim(), outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2 };
      })()`);
    await page.keyboard.press('Tab');
    t.same(await focused(), { id: 'email', outline: true });
    await page.keyboard.type('mary@example.com');
    await page.keyboard.press('Tab');
    t.same(await focused(), { id: 'name', outline: true });
    await page.keyboard.type('Mary Jackson');
    await page.keyboard.press('Enter');
    await statusSays(page, 'Welcome, Mary Jackson! Now save a card.');
    t.equal((await focused()).id, 'card-heading', 'focus moves on to the card step');
    await page.keyboard.press('Tab');
    t.same(await focused(), { id: 'test-card', outline: true });
    await page.keyboard.press('Tab');
    t.same(await focused(), { id: 'Save card', outline: true });
    await page.keyboard.press('Enter');
    await statusSays(page, 'Card saved. Choose a coin pack.');
    await page.keyboard.press('Tab');
    t.same(await focused(), { id: 'Buy Starter Pack', outline: true });
    await page.keyboard.press('Space');
    await statusSays(page, 'Payment complete: 100 coins added. Your balance is 100 coins.');
    await balanceShows(page, '100 coins');

    const widths = await page.evaluate<{ scroll: number; viewport: number }>(
      '({ scroll: document.documentElement.scrollWidth, viewport: window.innerWidth })',
    );
    t.equal(widths.viewport, 375);
    t.ok(widths.scroll <= widths.viewport, `no horizontal scroll at 375 px (content ${widths.scroll} px wide)`);
    await page.evaluate('window.scrollTo(0, 0)');
    await page.screenshot({ path: join(ARTIFACTS, 'checkout-375px.png'), fullPage: true });
  });

  t.test('Swagger UI at /docs: "Try it out" and "Execute" on listPackages renders the three packs', async (t) => {
    const page = await context.newPage();
    t.teardown(() => page.close());
    await page.goto(`${base}/docs`);
    const operation = page.locator('#operations-Catalog-listPackages');
    await operation.locator('.opblock-summary').click();
    await operation.getByRole('button', { name: 'Try it out' }).click();
    await operation.getByRole('button', { name: 'Execute' }).click();
    const body = operation.locator('.live-responses-table .response-col_description pre').first();
    await body.waitFor();
    const rendered = JSON.parse((await body.textContent()) ?? '') as { packages: { package_id: string; name: string }[] };
    t.same(
      rendered.packages.map((p) => [p.package_id, p.name]),
      [
        ['package_1', 'Starter Pack'],
        ['package_2', 'Popular Pack'],
        ['package_3', 'Premium Pack'],
      ],
    );
    t.same(rendered, await apiGet(`${base}/stripe/packages`), 'what Swagger UI shows is what the API answers');
    t.equal(await operation.locator('.live-responses-table tr.response .response-col_status').first().textContent(), '200');
    await page.screenshot({ path: join(ARTIFACTS, 'swagger-ui-list-packages.png'), fullPage: true });
  });

  t.test('with a publishable key the page asks Stripe.js for the card, and says so clearly when Stripe.js cannot load', async (t) => {
    const stripe = await startFakeStripe({ latencyMs: 0 });
    t.teardown(() => stripe.close());
    const withStripe = await listeningCoinshop(t, {
      STRIPE_SECRET_KEY: 'sk_test_coinshop',
      STRIPE_API_BASE: stripe.url,
      STRIPE_MAX_NETWORK_RETRIES: '0',
      STRIPE_PUBLISHABLE_KEY: 'pk_test_coinshop',
    });
    // This machine has no way out; fail Stripe.js at once instead of waiting for DNS.
    const stripeJs: string[] = [];
    const { page, cspViolations } = await openCheckout(context, withStripe, {
      beforeLoad: (page) =>
        page.route('https://js.stripe.com/**', (route) => (stripeJs.push(route.request().url()), route.abort('internetdisconnected'))),
    });
    t.teardown(() => page.close());
    const posted: string[] = [];
    page.on('request', (request) => request.method() === 'POST' && posted.push(new URL(request.url()).pathname));

    t.same(stripeJs, ['https://js.stripe.com/v3'], 'the page loads Stripe.js, and its CSP lets it');
    t.same(cspViolations, []);
    t.equal(await page.locator('#mode').textContent(), 'Stripe test mode: use a Stripe test card number such as 4242 4242 4242 4242.');
    t.equal(
      await page.getByRole('status').textContent(),
      'Card entry is unavailable: Stripe.js could not be loaded. Reload the page to try again.',
    );
    t.ok(await page.getByRole('group', { name: 'Card details' }).isVisible(), 'the card field is where Elements mounts');
    t.notOk(await page.getByLabel('Test card').isVisible(), 'no test tokens in Stripe mode');

    await signUp(page, 'Dorothy Vaughan', 'dorothy@example.com');
    await page.getByRole('button', { name: 'Save card' }).click();
    await statusSays(page, 'Card entry is unavailable: Stripe.js could not be loaded. Reload the page to try again.');
    t.same(posted, ['/checkout/dev-session'], 'no card id is made up and attached without Stripe.js');
  });

  t.test('with API_KEYS (development) the page signs up through /checkout/dev-session and buys with a client token alone', async (t) => {
    const guarded = await listeningCoinshop(t, { API_KEYS: API_KEY });
    const { page, cspViolations, scriptErrors, sentAuthorization } = await openCheckout(context, guarded);
    t.teardown(() => page.close());
    t.match(await page.locator('#mode').textContent(), /Sign up to see the coin packs\.$/);
    const userId = await signUp(page, 'Margaret Hamilton', 'margaret@example.com');
    await saveTestCard(page, 'pm_card_visa');
    await page.getByRole('button', { name: 'Buy Popular Pack' }).click();
    await statusSays(page, 'Payment complete: 300 coins added. Your balance is 300 coins.');
    await balanceShows(page, '300 coins');
    t.equal(
      (await apiGet(`${guarded}/stripe/customer/${userId}`, API_KEY))['currency_balance'],
      300,
      'the server holds the balance the page shows',
    );

    t.ok(sentAuthorization.length >= 5, `${sentAuthorization.length} API calls carried a credential`);
    t.notOk(
      sentAuthorization.some((header) => header.includes(API_KEY)),
      'the page never sent the API key',
    );
    const tokens = new Set(sentAuthorization.map((header) => /^Bearer ([\w-]+\.[\w-]+\.[\w-]+)$/.exec(header)?.[1]));
    t.equal(tokens.size, 1, 'one client token for every call');
    const [token] = [...tokens];
    t.match(
      JSON.parse(Buffer.from(String(token).split('.')[1] ?? '', 'base64url').toString('utf8')),
      { sub: userId, aud: 'coinshop' },
      "it is this player's",
    );
    t.same(cspViolations, []);
    t.same(scriptErrors, []);
  });

  t.test("outside development the shop's backend mints the token and hands it over in the URL fragment", async (t) => {
    const guarded = await listeningCoinshop(t, { NODE_ENV: 'test', API_KEYS: API_KEY });
    const backend = (path: string, body: object) =>
      fetch(`${guarded}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const { user_id: userId } = (await (await backend('/stripe/create-customer', { email: 'mary@example.com', name: 'Mary' })).json()) as {
      user_id: string;
    };
    const { token } = (await (await backend('/stripe/client-tokens', { user_id: userId })).json()) as { token: string };
    t.equal(
      (await backend('/checkout/dev-session', { email: 'x@example.com', name: 'X' })).status,
      404,
      'no dev-session outside development',
    );

    const { page, cspViolations, scriptErrors, sentAuthorization } = await openCheckout(context, guarded, { fragment: `#token=${token}` });
    t.teardown(() => page.close());
    t.equal(page.url(), `${guarded}/checkout`, 'the token is taken out of the address bar');
    t.equal(await page.locator('#player').textContent(), `Buying coins for Mary (mary@example.com). Player ID: ${userId}`);
    t.ok(await page.getByLabel('Email').isDisabled(), 'no sign-up: the shop already knows the player');
    await saveTestCard(page, 'pm_card_visa');
    await page.getByRole('button', { name: 'Buy Starter Pack' }).click();
    await statusSays(page, 'Payment complete: 100 coins added. Your balance is 100 coins.');
    await balanceShows(page, '100 coins');
    t.equal((await apiGet(`${guarded}/stripe/customer/${userId}`, API_KEY))['currency_balance'], 100);
    t.ok(sentAuthorization.length >= 5);
    t.same(new Set(sentAuthorization), new Set([`Bearer ${token}`]), 'only the client token, never the API key');
    t.same(cspViolations, []);
    t.same(scriptErrors, []);
  });

  t.test("a link with another player's token (login CSRF): the page says whom it buys for and asks before switching to them", async (t) => {
    const guarded = await listeningCoinshop(t, { NODE_ENV: 'test', API_KEYS: API_KEY });
    const backend = async (path: string, body: object) =>
      (await (
        await fetch(`${guarded}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        })
      ).json()) as Record<string, string>;
    const mary = await backend('/stripe/create-customer', { email: 'mary@example.com', name: 'Mary' });
    const mallory = await backend('/stripe/create-customer', { email: 'mallory@example.com', name: 'Mallory' });
    const tokenOf = async (userId: string | undefined) => (await backend('/stripe/client-tokens', { user_id: String(userId) }))['token'];

    // Mary buys here first: the browser remembers her (her id only, never a token).
    const own = await openCheckout(context, guarded, { fragment: `#token=${await tokenOf(mary['user_id'])}` });
    t.equal(await own.page.locator('#player').textContent(), `Buying coins for Mary (mary@example.com). Player ID: ${mary['user_id']}`);
    t.ok(await own.page.locator('#switch-player').isHidden(), 'her own link asks nothing');
    await own.page.close();

    // Then she follows a link made by Mallory, with Mallory's token.
    const forged = await openCheckout(context, guarded, { fragment: `#token=${await tokenOf(mallory['user_id'])}` });
    t.teardown(() => forged.page.close());
    const question = forged.page.locator('#switch-player');
    await question.waitFor();
    t.equal(
      (await question.locator('p').textContent())?.trim(),
      'This link is for another player than the one who last bought coins in this browser: Mallory (mallory@example.com). Buy coins as Mallory?',
    );
    t.ok(await forged.page.getByRole('button', { name: 'Save card' }).isDisabled(), 'no card can be saved before she answers');
    t.ok(await forged.page.getByRole('button', { name: 'Buy Starter Pack' }).isDisabled(), 'nothing can be bought');
    const sentBeforeAnswer = forged.sentAuthorization.length;
    await forged.page.getByRole('button', { name: 'No, not me' }).click();
    await statusSays(forged.page, 'Nothing was done for Mallory. Open the link your shop gave you to buy coins for yourself.');
    t.ok(await question.isHidden());
    t.ok(await forged.page.locator('#player').isHidden(), 'the page buys for no one');
    t.ok(await forged.page.getByRole('button', { name: 'Buy Starter Pack' }).isDisabled(), 'and still nothing can be bought');
    t.equal(forged.sentAuthorization.length, sentBeforeAnswer, 'and sends nothing more with that token');

    // Someone who really is Mallory says yes, and may buy.
    const really = await openCheckout(context, guarded, { fragment: `#token=${await tokenOf(mallory['user_id'])}` });
    t.teardown(() => really.page.close());
    await really.page.getByRole('button', { name: 'Yes, buy as Mallory' }).click();
    t.equal(
      await really.page.locator('#player').textContent(),
      `Buying coins for Mallory (mallory@example.com). Player ID: ${mallory['user_id']}`,
    );
    t.ok(await really.page.getByRole('button', { name: 'Save card' }).isEnabled());
    t.same(really.scriptErrors, []);
    t.same(really.cspViolations, []);
  });

  t.test(
    'Pay with Stripe Checkout (offline): the simulated hosted page pays and returns with the new balance; Cancel charges nothing',
    async (t) => {
      const { page, cspViolations, scriptErrors } = await openCheckout(context, base);
      t.teardown(() => page.close());
      const hostedViolations: string[] = [];
      page.on('console', (message) => {
        if (/Content Security Policy/i.test(message.text())) hostedViolations.push(message.text());
      });
      const userId = await signUp(page, 'Mary Jackson', 'mary@example.com');
      t.ok(
        await page.getByRole('button', { name: 'Buy Popular Pack', exact: true }).isDisabled(),
        'the saved-card flow still needs a card',
      );
      const checkout = page.getByRole('button', { name: 'Pay for Popular Pack with Stripe Checkout' });
      t.ok(await checkout.isEnabled(), 'Stripe Checkout needs no saved card');

      await checkout.click();
      await page.waitForURL(/\/checkout\/pay\/cs_sim_/);
      t.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Pay $25.00');
      t.equal(await page.locator('#order-heading').textContent(), 'Popular Pack');
      t.ok(await page.getByLabel('Visa 4242 — pays').isChecked(), 'the card that pays is selected');
      await page.screenshot({ path: join(ARTIFACTS, 'simulated-stripe-checkout.png'), fullPage: true });
      await page.getByRole('button', { name: 'Pay $25.00' }).click();
      await page.waitForURL(/\/checkout$/);
      await page.locator('body[data-ready="true"]').waitFor();
      t.equal(await statusSays(page, /^Payment confirmed/), 'Payment confirmed: 300 coins added.');
      await balanceShows(page, '300 coins');
      t.same(await historyLines(page), ['Popular Pack: 300 coins for $25.00 — paid']);
      t.equal((await apiGet(`${base}/stripe/customer/${userId}`))['currency_balance'], 300);

      // Cancel: back on the page, nothing charged; the purchase waits for the session to expire.
      await page.getByRole('button', { name: 'Pay for Starter Pack with Stripe Checkout' }).click();
      await page.waitForURL(/\/checkout\/pay\/cs_sim_/);
      await page.getByRole('button', { name: 'Cancel' }).click();
      await page.waitForURL(/\/checkout$/);
      t.equal(await statusSays(page, /^Checkout canceled/), 'Checkout canceled: nothing was charged.');
      await balanceShows(page, '300 coins');
      t.equal((await apiGet(`${base}/stripe/customer/${userId}`))['currency_balance'], 300, 'nothing charged');
      t.match(await apiGet(`${base}/stripe/transactions/${userId}`), {
        transactions: [{ package_id: 'package_1', status: 'pending' }, { status: 'completed' }],
      });
      t.same(cspViolations, [], 'the checkout page needs nothing its CSP blocks');
      t.same(hostedViolations, [], 'nor does the hosted page, its form post or its redirect');
      t.same(scriptErrors, []);
    },
  );

  t.test('with API_KEYS and no token (outside development) the page says what it needs and shows the 401 problem', async (t) => {
    const guarded = await listeningCoinshop(t, { NODE_ENV: 'test', API_KEYS: API_KEY });
    const { page, cspViolations, sentAuthorization } = await openCheckout(context, guarded, { ready: false });
    t.teardown(() => page.close());
    t.equal(await statusSays(page, /refused/), 'The shop refused the request: Missing API key: send Authorization: Bearer <key>');
    t.match(await page.locator('#mode').textContent(), /needs a client token from the shop's backend \(open it as \/checkout#token=…\)/);
    t.same(await page.locator('#packs li').count(), 0);
    t.same(sentAuthorization, [], 'no credential is sent');
    t.same(cspViolations, []);
  });
}
