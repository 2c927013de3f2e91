// coinshop's checkout page: sign a player up, save a card, buy coins, finish 3-D Secure; or pay on
// Stripe Checkout's hosted page (wallets, local payment methods, no saved card) and come back.
// Plain ES module, no dependencies; Stripe.js is loaded from Stripe only when the server gives a
// publishable key. Copy it and change API_BASE (and CORS_ORIGINS on the server) to host it elsewhere.

/** Where coinshop's API is: this page's own origin. */
const API_BASE = '';

/**
 * The one credential every API call sends, as `Authorization: Bearer …`: a short-lived client token
 * for this one player, never a server API key (anyone who opens the page could read that). It comes
 * from the shop's backend in the page's URL fragment (`/checkout#token=…`, see `loadCredential`),
 * or, on a development server, from POST /checkout/dev-session when the player signs up.
 */
let credential = null;

/** Filled in from the server before anything else runs. */
let settings = { gateway: 'simulated', publishable_key: null, auth_required: false, dev_session: false };

const state = { userId: null, paymentMethodId: null, packages: [], buying: false };

const $ = (id) => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`missing #${id}`);
  return element;
};

// ---------------------------------------------------------------------------------------------
// The API: every call goes through `api`.

/**
 * Calls coinshop. Resolves (never rejects) to `{ ok, status, data }` or `{ ok: false, status,
 * problem }`, where `problem` is the RFC 9457 document (its `detail` is a message for people).
 * `status` 0 means no answer arrived (network failure).
 */
async function api(method, path, { body, idempotencyKey } = {}) {
  const headers = { accept: 'application/json, application/problem+json' };
  if (credential !== null) headers.authorization = `Bearer ${credential}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey;
  let response;
  try {
    response = await fetch(API_BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
    });
  } catch {
    return { ok: false, status: 0, problem: { code: 'network_error', detail: 'The shop could not be reached. Check your connection.' } };
  }
  const data = await response.json().catch(() => null);
  if (response.ok) return { ok: true, status: response.status, data };
  const problem =
    data && typeof data.detail === 'string'
      ? data
      : { code: 'unexpected_response', detail: `The shop answered with HTTP ${response.status}.` };
  return { ok: false, status: response.status, problem };
}

/** Idempotency-Keys of attempts that may still be retried, by request (path and body). */
const openAttempts = new Map();

/**
 * A POST that changes something, sent with an Idempotency-Key. The same request sent again before
 * its attempt settled (no answer, 5xx, 409 still running, 429) reuses the key, so a retry can never
 * charge or create twice; once an answer settles it, the same request is a new attempt.
 */
async function postOnce(path, body) {
  const signature = `${path} ${JSON.stringify(body)}`;
  const key = openAttempts.get(signature) ?? newIdempotencyKey();
  openAttempts.set(signature, key);
  const result = await api('POST', path, { body, idempotencyKey: key });
  const unsettled = result.status === 0 || result.status >= 500 || result.status === 409 || result.status === 429;
  if (!unsettled) openAttempts.delete(signature);
  return { ...result, unsettled };
}

function newIdempotencyKey() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * A client token handed over by the shop's backend in the URL fragment (`#token=…`; a fragment is
 * never sent to any server). It is taken out of the address bar at once, so it is not kept in the
 * history or a bookmark, and the player it is for is read from its `sub` claim.
 */
async function loadCredential() {
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  if (token === null) return;
  history.replaceState(null, '', location.pathname + location.search);
  const userId = playerOf(token);
  if (userId === null) {
    announce('The link to this page is broken: its token cannot be read. Ask the shop for a new link.', 'error');
    return;
  }
  credential = token;
  state.userId = userId;
}

/**
 * The player who last bought coins in this browser (their id only: never a token), so a link made
 * for someone else (login CSRF: an attacker's token in a link, buying coins for the attacker with
 * the victim's card) is not followed without asking.
 */
const LAST_PLAYER = 'coinshop.checkout.player';

function lastPlayer() {
  try {
    return localStorage.getItem(LAST_PLAYER);
  } catch {
    return null;
  }
}

function rememberPlayer(userId) {
  try {
    localStorage.setItem(LAST_PLAYER, userId);
  } catch {
    // Storage is off (a private window): every link then only shows whom it is for.
  }
}

/**
 * Before anything is done with a token from a link: reads whom it is for and shows it; if it is not
 * the player who last bought here, asks first. Resolves to whether the page may act for them.
 */
async function confirmPlayer() {
  const customer = await api('GET', `/stripe/customer/${encodeURIComponent(state.userId)}`);
  if (!customer.ok) {
    announce(describeProblem(customer.problem, customer.status), 'error');
    return false;
  }
  const who = `${customer.data.name} (${customer.data.email})`;
  const previous = lastPlayer();
  if (previous !== null && previous !== state.userId) {
    const question = $('switch-player');
    $('switch-player-text').textContent =
      `This link is for another player than the one who last bought coins in this browser: ${who}. Buy coins as ${customer.data.name}?`;
    $('switch-player-yes').textContent = `Yes, buy as ${customer.data.name}`;
    question.hidden = false;
    // The page is ready: it waits for the player's answer.
    document.body.dataset.ready = 'true';
    const yes = await new Promise((resolve) => {
      $('switch-player-yes').onclick = () => resolve(true);
      $('switch-player-no').onclick = () => resolve(false);
    });
    question.hidden = true;
    if (!yes) {
      credential = null;
      state.userId = null;
      announce(`Nothing was done for ${customer.data.name}. Open the link your shop gave you to buy coins for yourself.`, 'info');
      return false;
    }
  }
  rememberPlayer(state.userId);
  signedIn(state.userId, `Buying coins for ${who}. Player ID: ${state.userId}`);
  return true;
}

/** The player (`sub`) a client token is for, or null. The server checks the token; this only reads it. */
function playerOf(token) {
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// What the player sees.

/** Says something in the live region; `retry` offers a button that repeats the failed step. */
function announce(message, kind = 'info', retry = null) {
  const status = $('status');
  status.textContent = message;
  status.dataset.kind = kind;
  const button = $('retry');
  button.hidden = retry === null;
  button.onclick = retry;
}

/** A problem document as a sentence for people. */
function describeProblem(problem, status) {
  if (status === 401) return `The shop refused the request: ${problem.detail}`;
  if (status === 0 || status >= 500) return `${problem.detail} It is safe to try again: you will not be charged twice.`;
  return problem.detail;
}

function money(cents, currency = 'usd') {
  return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency.toUpperCase() }).format(cents / 100);
}

const coins = (n) => `${new Intl.NumberFormat().format(n)} coins`;

const STATUS_WORDS = {
  completed: 'paid',
  failed: 'declined',
  pending: 'waiting for the bank',
  requires_action: 'waiting for you to confirm',
  partially_refunded: 'partly refunded',
  refunded: 'refunded',
  disputed: 'disputed',
  dispute_won: 'dispute won',
  dispute_lost: 'dispute lost',
};

function focusHeading(id) {
  $(id).focus();
}

function setBuyingEnabled() {
  const ready = state.userId !== null && state.paymentMethodId !== null;
  for (const button of document.querySelectorAll('#packs button.saved-card')) button.disabled = !ready;
  // Stripe Checkout needs no saved card: the customer picks a payment method on Stripe's page.
  for (const button of document.querySelectorAll('#packs button.stripe-checkout')) button.disabled = state.userId === null;
}

function renderPackages() {
  const list = $('packs');
  list.replaceChildren();
  for (const pack of state.packages) {
    const item = document.createElement('li');
    const name = document.createElement('h3');
    name.textContent = pack.name;
    const what = document.createElement('p');
    what.id = `pack-${pack.package_id}`;
    what.textContent = `${coins(pack.currency_amount)} for ${money(pack.price_cents, pack.currency)}`;
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = `Buy ${pack.name}`;
    button.setAttribute('aria-describedby', what.id);
    button.className = 'saved-card';
    button.addEventListener('click', () => buy(pack));
    const hosted = document.createElement('button');
    hosted.type = 'button';
    hosted.className = 'stripe-checkout secondary';
    hosted.textContent = `Pay for ${pack.name} with Stripe Checkout`;
    hosted.setAttribute('aria-describedby', what.id);
    hosted.addEventListener('click', () => payWithCheckout(pack));
    item.append(name, what, button, hosted);
    list.append(item);
  }
  setBuyingEnabled();
}

async function refreshAccount() {
  if (state.userId === null) return;
  const id = encodeURIComponent(state.userId);
  const [customer, history] = await Promise.all([api('GET', `/stripe/customer/${id}`), api('GET', `/stripe/transactions/${id}`)]);
  if (customer.ok) $('balance').textContent = coins(customer.data.currency_balance);
  if (history.ok) {
    const list = $('history');
    list.replaceChildren();
    for (const t of history.data.transactions) {
      const item = document.createElement('li');
      item.dataset.status = t.status;
      const when = new Date(t.timestamp).toLocaleString();
      item.textContent = `${t.package_name}: ${coins(t.currency_purchased)} for ${money(t.amount_paid, t.currency)} — ${STATUS_WORDS[t.status] ?? t.status}, ${when}`;
      list.append(item);
    }
    if (history.data.transactions.length === 0) {
      const empty = document.createElement('li');
      empty.className = 'empty';
      empty.textContent = 'No purchases yet.';
      list.append(empty);
    }
  }
  if (!customer.ok) announce(describeProblem(customer.problem, customer.status), 'error', refreshAccount);
  else if (!history.ok) announce(describeProblem(history.problem, history.status), 'error', refreshAccount);
}

// ---------------------------------------------------------------------------------------------
// The steps.

async function signUp(event) {
  event.preventDefault();
  const email = $('email');
  const name = $('name');
  for (const input of [email, name]) input.removeAttribute('aria-invalid');
  const invalid = [email, name].find((input) => !input.checkValidity() || input.value.trim() === '');
  if (invalid) {
    invalid.setAttribute('aria-invalid', 'true');
    invalid.focus();
    announce(invalid === email ? 'Enter a valid email address.' : 'Enter your name.', 'error');
    return;
  }
  announce('Signing you up…');
  // A development server signs the player up and hands over their client token in one step.
  const viaDevSession = credential === null && settings.dev_session;
  const path = viaDevSession ? '/checkout/dev-session' : '/stripe/create-customer';
  const result = await postOnce(path, { email: email.value.trim(), name: name.value.trim() });
  if (!result.ok) {
    announce(describeProblem(result.problem, result.status), 'error', result.unsettled ? () => signUp(event) : null);
    return;
  }
  if (viaDevSession) credential = result.data.token;
  rememberPlayer(result.data.user_id);
  signedIn(result.data.user_id, `Signed up as ${name.value.trim()}. Player ID: ${result.data.user_id}`);
  focusHeading('card-heading');
  announce(`Welcome, ${name.value.trim()}! Now save a card.`, 'success');
  if (state.packages.length === 0) await loadPackages();
  await refreshAccount();
}

/** The player is known: the sign-up step is done, the card step opens. */
function signedIn(userId, text) {
  state.userId = userId;
  $('signup-fields').disabled = true;
  const player = $('player');
  player.textContent = text;
  player.hidden = false;
  $('card-fields').disabled = false;
  setBuyingEnabled();
}

async function loadPackages() {
  const packages = await api('GET', '/stripe/packages');
  if (!packages.ok) {
    announce(describeProblem(packages.problem, packages.status), 'error');
    return false;
  }
  state.packages = packages.data.packages;
  renderPackages();
  return true;
}

/** Stripe.js and its card Element, when the server gave a publishable key. */
let stripe = null;
let cardElement = null;

function loadStripeJs() {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = 'https://js.stripe.com/v3';
    script.onload = () => resolve();
    script.onerror = () => reject(new Error('Stripe.js could not be loaded'));
    document.head.append(script);
  });
}

/** The PaymentMethod id to save: made by Stripe.js from the card Element, or the chosen test card. */
async function paymentMethodToSave() {
  if (settings.publishable_key === null) return { id: $('test-card').value };
  if (stripe === null) return { error: 'Card entry is unavailable: Stripe.js could not be loaded. Reload the page to try again.' };
  const { paymentMethod, error } = await stripe.createPaymentMethod({
    type: 'card',
    card: cardElement,
    billing_details: { name: $('name').value.trim(), email: $('email').value.trim() },
  });
  return error ? { error: error.message } : { id: paymentMethod.id };
}

async function saveCard(event) {
  event.preventDefault();
  announce('Saving your card…');
  const method = await paymentMethodToSave();
  if (method.error !== undefined) {
    announce(method.error, 'error');
    return;
  }
  const result = await postOnce('/stripe/attach-payment-method', { user_id: state.userId, payment_method_id: method.id });
  if (!result.ok) {
    announce(describeProblem(result.problem, result.status), 'error', result.unsettled ? () => saveCard(event) : null);
    return;
  }
  state.paymentMethodId = method.id;
  const saved = $('saved-card');
  saved.textContent =
    settings.publishable_key === null ? `Card saved: ${$('test-card').selectedOptions[0]?.textContent ?? method.id}.` : 'Card saved.';
  saved.hidden = false;
  setBuyingEnabled();
  announce('Card saved. Choose a coin pack.', 'success');
  focusHeading('packs-heading');
}

async function buy(pack) {
  // One purchase at a time: a second click while one is under way (or waiting for the bank) is ignored.
  // The buttons stay focusable (aria-busy, not disabled), so keyboard focus is not lost.
  if (state.buying) return;
  state.buying = true;
  $('packs').setAttribute('aria-busy', 'true');
  try {
    await purchase(pack);
  } finally {
    state.buying = false;
    $('packs').removeAttribute('aria-busy');
  }
}

async function purchase(pack) {
  announce(`Buying ${pack.name}…`);
  const result = await postOnce('/stripe/purchase-currency', { user_id: state.userId, package_id: pack.package_id });
  if (result.ok) {
    announce(
      `Payment complete: ${coins(result.data.currency_purchased)} added. Your balance is ${coins(result.data.new_balance)}.`,
      'success',
    );
  } else if (result.status === 402 && result.problem.code === 'authentication_required') {
    await authenticate(result.problem);
  } else {
    const declined = result.status === 400 && result.problem.transaction_id !== undefined;
    const message = declined
      ? `Payment declined: ${result.problem.detail}. Nothing was charged; try another card.`
      : describeProblem(result.problem, result.status);
    announce(message, 'error', result.unsettled ? () => buy(pack) : null);
  }
  await refreshAccount();
}

/**
 * What the page needs again when Stripe Checkout sends the player back: kept in this tab's
 * sessionStorage (never in a URL, which Stripe would keep) for that one trip, and removed on return.
 */
const CHECKOUT_TRIP = 'coinshop.checkout.trip';

/** Stripe Checkout: coinshop opens a session, the browser goes to Stripe's page, and comes back to this page. */
async function payWithCheckout(pack) {
  if (state.buying) return;
  state.buying = true;
  $('packs').setAttribute('aria-busy', 'true');
  try {
    announce(`Opening Stripe Checkout for ${pack.name}…`);
    const back = `${location.origin}${location.pathname}`;
    const result = await postOnce('/stripe/checkout-sessions', {
      user_id: state.userId,
      package_id: pack.package_id,
      success_url: `${back}?checkout=paid&session_id={CHECKOUT_SESSION_ID}`,
      cancel_url: `${back}?checkout=canceled`,
    });
    if (!result.ok) {
      announce(describeProblem(result.problem, result.status), 'error', result.unsettled ? () => payWithCheckout(pack) : null);
      return;
    }
    try {
      sessionStorage.setItem(
        CHECKOUT_TRIP,
        JSON.stringify({ token: credential, userId: state.userId, transactionId: result.data.transaction_id }),
      );
    } catch {
      // Storage is off: on return the page asks for the shop's link again; the purchase is credited all the same.
    }
    announce('Taking you to Stripe Checkout…');
    location.assign(result.data.checkout_url);
  } finally {
    state.buying = false;
    $('packs').removeAttribute('aria-busy');
  }
}

/** Back from Stripe Checkout (`?checkout=paid|canceled`): the trip's player and purchase, or null. */
function returnFromCheckout() {
  const outcome = new URLSearchParams(location.search).get('checkout');
  if (outcome !== 'paid' && outcome !== 'canceled') return null;
  history.replaceState(null, '', location.pathname);
  let trip;
  try {
    trip = JSON.parse(sessionStorage.getItem(CHECKOUT_TRIP) ?? 'null');
    sessionStorage.removeItem(CHECKOUT_TRIP);
  } catch {
    // Storage is off, or what it held is not ours: the page starts afresh.
    trip = null;
  }
  if (trip === null || typeof trip.userId !== 'string' || typeof trip.transactionId !== 'string') return null;
  if (credential === null && typeof trip.token === 'string') credential = trip.token;
  if (state.userId === null) state.userId = trip.userId;
  return state.userId === trip.userId ? { outcome, transactionId: trip.transactionId } : null;
}

/** 3-D Secure: the customer confirms with their bank, then the purchase is looked up again. */
async function authenticate(required) {
  if (settings.publishable_key !== null) {
    if (stripe === null) {
      announce('This card needs 3-D Secure, but Stripe.js could not be loaded. Reload the page to try again.', 'error');
      return;
    }
    announce('Your bank asks you to confirm this payment…');
    const { error } = await stripe.handleNextAction({ clientSecret: required.client_secret });
    if (error) announce(error.message, 'error');
    await settle(required.transaction_id);
    return;
  }
  if (settings.gateway !== 'simulated') {
    announce('This card needs 3-D Secure, which needs Stripe.js: the server has no STRIPE_PUBLISHABLE_KEY.', 'error');
    return;
  }
  const panel = $('authentication');
  panel.hidden = false;
  announce('Your bank asks you to confirm this payment (3-D Secure).', 'info');
  focusHeading('authentication-heading');
  const outcome = await new Promise((resolve) => {
    $('authenticate-succeed').onclick = () => resolve('succeed');
    $('authenticate-fail').onclick = () => resolve('fail');
  });
  panel.hidden = true;
  announce('Checking with your bank…');
  const path = `/simulator/payment-intents/${encodeURIComponent(required.payment_intent_id)}/authenticate`;
  const simulated = await api('POST', path, { body: { outcome } });
  if (!simulated.ok) {
    announce(describeProblem(simulated.problem, simulated.status), 'error');
    return;
  }
  await settle(required.transaction_id);
  focusHeading('packs-heading');
}

/** Looks the purchase up (which brings it up to date from Stripe) and says how it ended. */
async function settle(transactionId) {
  const result = await api('GET', `/stripe/purchases/${encodeURIComponent(transactionId)}`);
  if (!result.ok) {
    announce(describeProblem(result.problem, result.status), 'error', () => settle(transactionId));
    return;
  }
  const purchase = result.data;
  if (purchase.status === 'completed') {
    announce(`Payment confirmed: ${coins(purchase.currency_purchased)} added.`, 'success');
  } else if (purchase.status === 'failed') {
    announce('Payment not completed: the bank did not confirm it. Nothing was charged.', 'error');
  } else {
    announce('The bank has not confirmed the payment yet. Your coins are added as soon as it does.', 'info', () => settle(transactionId));
  }
  await refreshAccount();
}

// ---------------------------------------------------------------------------------------------
// Start.

async function start() {
  $('signup-form').addEventListener('submit', signUp);
  $('card-form').addEventListener('submit', saveCard);

  const loaded = await api('GET', '/checkout/settings');
  if (!loaded.ok) {
    $('mode').textContent = 'The shop is unavailable.';
    announce(describeProblem(loaded.problem, loaded.status), 'error');
    return;
  }
  settings = loaded.data;
  await loadCredential();
  const trip = returnFromCheckout();

  if (settings.publishable_key !== null) {
    $('mode').textContent = settings.publishable_key.startsWith('pk_live_')
      ? 'Your card details go straight to Stripe.'
      : 'Stripe test mode: use a Stripe test card number such as 4242 4242 4242 4242.';
    $('stripe-card-field').hidden = false;
    try {
      await loadStripeJs();
      stripe = window.Stripe(settings.publishable_key);
      cardElement = stripe.elements().create('card');
      cardElement.mount('#card-element');
    } catch (err) {
      announce(`Card entry is unavailable: ${err.message}. Reload the page to try again.`, 'error');
    }
  } else {
    $('mode').textContent =
      settings.gateway === 'simulated'
        ? 'Test shop: payments are simulated, no money moves. Pick one of the test cards below.'
        : 'Stripe test mode with test cards (no publishable key is configured).';
    $('test-card-field').hidden = false;
  }
  if (settings.auth_required && credential === null && state.userId === null) {
    if (settings.dev_session) {
      $('mode').textContent += ' Sign up to see the coin packs.';
      document.body.dataset.ready = 'true';
      return;
    }
    $('mode').textContent +=
      " This page needs a client token from the shop's backend (open it as /checkout#token=…): its requests will be refused.";
  }

  if (state.userId !== null) {
    // The sign-up step is closed while the page learns (or asks) whom the link is for.
    $('signup-fields').disabled = true;
    const [confirmed] = await Promise.all([confirmPlayer(), loadPackages()]);
    if (confirmed && trip !== null) {
      // The purchase, looked up by its transaction id (which also brings it up to date from Stripe).
      if (trip.outcome === 'paid') await settle(trip.transactionId);
      else announce('Checkout canceled: nothing was charged.', 'info');
    }
    document.body.dataset.ready = 'true';
    if (confirmed) await refreshAccount();
    return;
  }
  if (!(await loadPackages())) return;
  document.body.dataset.ready = 'true';
}

start();
