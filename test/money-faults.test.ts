/**
 * Property-based test of the money path under faults, through the real stripe SDK against the
 * project's Stripe-compatible server: random purchases (some answered `processing`, some refused on
 * the first call, some whose answer is lost after Stripe charged), same-key retries, lookups,
 * 3-D Secure (and paying after it failed), operator refunds (some whose answer is lost), Dashboard
 * refunds, refunds that fail later, disputes, spends, reconciliation, and Stripe's webhooks delivered
 * late, out of order and several times at once; the game server fails some notifications.
 *
 * The oracle is Stripe's own state once everything has been delivered and reconciled: every
 * PaymentIntent that succeeded is credited once and the others never; each purchase's coins are what
 * its refunds and disputes at Stripe leave; every balance equals its ledger; and the game, after
 * dedupe, holds exactly the outbox, whose coins add up to each player's balance.
 *
 * Reproduce a failure with FC_SEED=<seed> FC_PATH=<path>; change the run count with FC_NUM_RUNS.
 */
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import type { LightMyRequestResponse } from 'fastify';
import Stripe from 'stripe';
import t from 'tap';
import { buildApp } from '../src/app.js';
import { reconcile } from '../src/services/reconcile.js';
import { startFakeStripe, webhookRequest, type FakeStripe } from './support/fake-stripe.js';
import { dueNow, startGameServer, type Behaviour, type GameServer } from './support/game-server.js';
import { attachCard, canonical, createCustomer, testConfig, type Json } from './support/helper.js';
import { dropFreshSchema } from './support/database.js';

const SECRET = 'whsec_test_money_faults';
type PackageId = 'package_1' | 'package_2';
const CARDS = ['pm_card_visa', 'pm_card_refundFail', 'pm_card_threeDSecure2Required', 'pm_card_chargeDeclined'] as const;

type Action =
  | { kind: 'purchase'; user: number; pkg: PackageId; keyed: boolean; fault: 'none' | 'processing' | 'refuse' | 'lose' }
  | { kind: 'checkout'; user: number; pkg: PackageId; keyed: boolean; fault: 'none' | 'refuse' | 'lose' }
  | { kind: 'payCheckout'; pick: number; delayed: boolean }
  | { kind: 'settleDelayedCheckout'; pick: number; outcome: 'succeed' | 'fail' }
  | { kind: 'lapseCheckout'; pick: number }
  | { kind: 'retry'; pick: number }
  | { kind: 'lookup'; pick: number }
  | { kind: 'finishProcessing'; pick: number; outcome: 'succeed' | 'fail' }
  | { kind: 'authenticate'; pick: number; outcome: 'succeed' | 'fail' }
  | { kind: 'payAfterFailure'; pick: number }
  | { kind: 'refund'; pick: number; cents: number | null; fault: 'none' | 'lose' }
  | { kind: 'retryRefund'; pick: number }
  | { kind: 'dashboardRefund'; pick: number; cents: number | null }
  | { kind: 'failRefund'; pick: number }
  /** `inquiry`: a bank's question (no money moves) rather than a chargeback. */
  | { kind: 'dispute'; pick: number; inquiry: boolean }
  | { kind: 'closeDispute'; pick: number; outcome: 'won' | 'lost' }
  | { kind: 'deliver'; pick: number; copies: number }
  | { kind: 'spend'; user: number; amount: number }
  | { kind: 'reconcile' };

const pick = fc.nat({ max: 30 });
const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('purchase' as const),
      // Mostly the players whose cards are charged (pm_card_visa, pm_card_refundFail).
      user: fc.oneof({ weight: 3, arbitrary: fc.nat({ max: 1 }) }, { weight: 1, arbitrary: fc.nat({ max: 3 }) }),
      pkg: fc.constantFrom<PackageId>('package_1', 'package_2'),
      keyed: fc.boolean(),
      fault: fc.constantFrom('none' as const, 'none' as const, 'processing' as const, 'refuse' as const, 'lose' as const),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('checkout' as const),
      user: fc.nat({ max: 3 }),
      pkg: fc.constantFrom<PackageId>('package_1', 'package_2'),
      keyed: fc.boolean(),
      fault: fc.constantFrom('none' as const, 'none' as const, 'refuse' as const, 'lose' as const),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('payCheckout' as const), pick, delayed: fc.boolean() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('settleDelayedCheckout' as const),
      pick,
      outcome: fc.constantFrom('succeed' as const, 'fail' as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('lapseCheckout' as const), pick }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('retry' as const), pick }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('lookup' as const), pick }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('finishProcessing' as const),
      pick,
      outcome: fc.constantFrom('succeed' as const, 'fail' as const),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('authenticate' as const),
      pick,
      outcome: fc.constantFrom('succeed' as const, 'fail' as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('payAfterFailure' as const), pick }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('refund' as const),
      pick,
      cents: fc.option(fc.integer({ min: 1, max: 1500 }), { nil: null }),
      fault: fc.constantFrom('none' as const, 'lose' as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('retryRefund' as const), pick }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('dashboardRefund' as const),
      pick,
      cents: fc.option(fc.integer({ min: 1, max: 1500 }), { nil: null }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('failRefund' as const), pick }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('dispute' as const), pick, inquiry: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('closeDispute' as const), pick, outcome: fc.constantFrom('won' as const, 'lost' as const) }),
  },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('deliver' as const), pick, copies: fc.integer({ min: 1, max: 3 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('spend' as const), user: fc.nat({ max: 3 }), amount: fc.integer({ min: 1, max: 400 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reconcile' as const) }) },
);

const scenario = fc.record({
  actions: fc.array(action, { minLength: 8, maxLength: 40, size: 'medium' }),
  /** How the game server answers its first notifications (then it accepts). */
  game: fc.array(fc.constantFrom<Behaviour>('accept', 'fail', 'close', 'accept'), { maxLength: 8 }),
  /** The order the held webhook events are delivered in at the end. */
  drain: fc.array(fc.nat({ max: 50 }), { maxLength: 10 }),
  /** Whether the endpoint hears refund.created (older API versions, or not subscribed to it). */
  refundCreated: fc.boolean(),
});
type Scenario = typeof scenario extends fc.Arbitrary<infer S> ? S : never;

const stats = {
  runs: 0,
  paid: 0,
  processing: 0,
  refused: 0,
  lost: 0,
  refunds: 0,
  failedRefunds: 0,
  disputes: 0,
  inquiries: 0,
  notifications: 0,
  checkoutPaid: 0,
};

const CHECKOUT_RETURN = {
  success_url: 'https://shop.example.com/done?session_id={CHECKOUT_SESSION_ID}',
  cancel_url: 'https://shop.example.com/coins',
};

class Violation extends Error {}

const sameJson = (a: string, b: string) => canonical(JSON.parse(a)) === canonical(JSON.parse(b));

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Violation(message);
}

interface Sent {
  key: string | undefined;
  url: string;
  body: Json;
  status: number;
  answer: string;
}

class Run {
  readonly purchases: { txn: string; user: string }[] = [];
  readonly keyed: Sent[] = [];
  readonly refundKeys: Sent[] = [];
  readonly delivered = new Set<string>();
  readonly trace: string[] = [];
  #n = 0;

  constructor(
    readonly app: FastifyInstance,
    readonly stripe: FakeStripe,
    readonly sdk: Stripe,
    readonly users: string[],
    readonly refundCreated: boolean,
  ) {}

  async send(url: string, body: Json, key?: string): Promise<LightMyRequestResponse> {
    return this.app.inject({ method: 'POST', url, payload: body, ...(key ? { headers: { 'idempotency-key': key } } : {}) });
  }

  /** The PaymentIntents at Stripe that a purchase of ours made. */
  intentsOf(txn: string) {
    return [...this.stripe.paymentIntents.values()].filter((pi) => pi.metadata['transaction_id'] === txn);
  }

  chosen<T>(list: T[], index: number): T | undefined {
    return list.length === 0 ? undefined : list[index % list.length];
  }

  async step(a: Action) {
    this.trace.push(JSON.stringify(a));
    switch (a.kind) {
      case 'purchase': {
        const user = this.users[a.user % this.users.length]!;
        const paymentIntents = { method: 'POST', path: /^\/v1\/payment_intents$/ };
        if (a.fault === 'processing') this.stripe.holdProcessing(1);
        if (a.fault === 'refuse') this.stripe.failNext(1, 429, paymentIntents);
        if (a.fault === 'lose') this.stripe.loseNextAnswer(1, paymentIntents);
        const key = a.keyed ? `purchase-${++this.#n}` : undefined;
        const body = { user_id: user, package_id: a.pkg };
        const response = await this.send('/stripe/purchase-currency', body, key);
        this.stripe.holdProcessing(0);
        const answer = response.json<Json>();
        check([200, 400, 402, 424, 502].includes(response.statusCode), `purchase answered ${response.statusCode}: ${response.body}`);
        check(typeof answer['transaction_id'] === 'string', `purchase answer without a transaction id: ${response.body}`);
        if (response.statusCode === 424) stats.refused++;
        if (a.fault === 'lose') stats.lost++;
        if (a.fault === 'processing') stats.processing++;
        this.purchases.push({ txn: answer['transaction_id'], user });
        if (key) this.keyed.push({ key, url: '/stripe/purchase-currency', body, status: response.statusCode, answer: response.body });
        return;
      }
      case 'checkout': {
        const user = this.users[a.user % this.users.length]!;
        const sessions = { method: 'POST', path: /^\/v1\/checkout\/sessions$/ };
        if (a.fault === 'refuse') this.stripe.failNext(1, 400, sessions);
        if (a.fault === 'lose') this.stripe.loseNextAnswer(1, sessions);
        const key = a.keyed ? `checkout-${++this.#n}` : undefined;
        const body = { user_id: user, package_id: a.pkg, ...CHECKOUT_RETURN };
        const response = await this.send('/stripe/checkout-sessions', body, key);
        const answer = response.json<Json>();
        check([200, 424, 502].includes(response.statusCode), `checkout answered ${response.statusCode}: ${response.body}`);
        check(typeof answer['transaction_id'] === 'string', `checkout answer without a transaction id: ${response.body}`);
        this.purchases.push({ txn: answer['transaction_id'], user });
        if (key) this.keyed.push({ key, url: '/stripe/checkout-sessions', body, status: response.statusCode, answer: response.body });
        return;
      }
      case 'payCheckout': {
        const session = this.chosen(
          [...this.stripe.checkoutSessions.values()].filter((x) => x.status === 'open'),
          a.pick,
        );
        if (session) this.stripe.payCheckoutSession(session.id, { delayed: a.delayed });
        return;
      }
      case 'settleDelayedCheckout': {
        const delayed = [...this.stripe.checkoutSessions.values()].filter(
          (x) => x.payment_intent !== null && this.stripe.paymentIntents.get(x.payment_intent)?.status === 'processing',
        );
        const session = this.chosen(delayed, a.pick);
        if (session) this.stripe.settleDelayedCheckout(session.id, a.outcome);
        return;
      }
      case 'lapseCheckout': {
        const session = this.chosen(
          [...this.stripe.checkoutSessions.values()].filter((x) => x.status === 'open'),
          a.pick,
        );
        if (session) this.stripe.lapseCheckoutSession(session.id);
        return;
      }
      case 'retry': {
        const sent = this.chosen(this.keyed, a.pick);
        if (!sent) return;
        const response = await this.send(sent.url, sent.body, sent.key);
        if (sent.status < 500) {
          check(
            response.statusCode === sent.status && sameJson(response.body, sent.answer),
            `a final answer (${sent.status}) was not replayed: ${response.statusCode} ${response.body}`,
          );
        } else {
          check([200, 400, 402, 409, 424, 502].includes(response.statusCode), `retry answered ${response.statusCode}: ${response.body}`);
          if (response.statusCode < 500) Object.assign(sent, { status: response.statusCode, answer: response.body });
        }
        return;
      }
      case 'lookup': {
        const p = this.chosen(this.purchases, a.pick);
        if (p) check((await this.app.inject({ method: 'GET', url: `/stripe/purchases/${p.txn}` })).statusCode === 200, 'lookup failed');
        return;
      }
      case 'finishProcessing': {
        const pi = this.chosen(
          [...this.stripe.paymentIntents.values()].filter((x) => x.status === 'processing'),
          a.pick,
        );
        if (pi) this.stripe.finishProcessing(pi.id, a.outcome);
        return;
      }
      case 'authenticate': {
        const pi = this.chosen(
          [...this.stripe.paymentIntents.values()].filter((x) => x.status === 'requires_action'),
          a.pick,
        );
        if (pi) this.stripe.authenticate(pi.id, a.outcome);
        return;
      }
      case 'payAfterFailure': {
        const failed = [...this.stripe.paymentIntents.values()].filter(
          (x) => x.status === 'requires_payment_method' && x.last_payment_error?.code === 'payment_intent_authentication_failure',
        );
        const pi = this.chosen(failed, a.pick);
        if (pi) this.stripe.payAfterFailure(pi.id);
        return;
      }
      case 'refund': {
        const p = this.chosen(this.purchases, a.pick);
        if (!p) return;
        if (a.fault === 'lose') this.stripe.loseNextAnswer(1, { method: 'POST', path: /^\/v1\/refunds$/ });
        const key = `refund-${++this.#n}`;
        const body = a.cents === null ? {} : { amount_cents: a.cents };
        const url = `/stripe/purchases/${p.txn}/refund`;
        const response = await this.send(url, body, key);
        check([200, 409, 502].includes(response.statusCode), `refund answered ${response.statusCode}: ${response.body}`);
        if (response.statusCode === 200) stats.refunds++;
        this.refundKeys.push({ key, url, body, status: response.statusCode, answer: response.body });
        return;
      }
      case 'retryRefund': {
        const sent = this.chosen(this.refundKeys, a.pick);
        if (!sent) return;
        const response = await this.send(sent.url, sent.body, sent.key);
        if (sent.status < 500)
          check(
            response.statusCode === sent.status && sameJson(response.body, sent.answer),
            `a refund's final answer was not replayed: first ${sent.status} ${sent.answer}, then ${response.statusCode} ${response.body}`,
          );
        else check([200, 409, 502].includes(response.statusCode), `refund retry answered ${response.statusCode}: ${response.body}`);
        return;
      }
      case 'dashboardRefund': {
        const charge = this.chosen(
          [...this.stripe.charges.values()].filter((c) => c.amount_refunded < c.amount),
          a.pick,
        );
        if (!charge) return;
        await this.sdk.refunds
          .create({ charge: charge.id, ...(a.cents === null ? {} : { amount: Math.min(a.cents, charge.amount - charge.amount_refunded) }) })
          .catch(() => undefined);
        return;
      }
      case 'failRefund': {
        // Only refunds of a card that behaves like pm_card_refundFail can fail: the picked one, or the
        // next of them that can (picking among all and giving up on the others, a run of 30 scenarios
        // has been seen to fail none).
        const succeeded = [...this.stripe.refunds.values()].filter((r) => r.status === 'succeeded');
        for (let i = 0; i < succeeded.length; i++) {
          const refund = succeeded[(a.pick + i) % succeeded.length]!;
          try {
            this.stripe.failRefund(refund.id);
            stats.failedRefunds++;
            return;
          } catch {
            // Not a refund that can fail: try the next.
          }
        }
        return;
      }
      case 'dispute': {
        const pi = this.chosen(
          [...this.stripe.paymentIntents.values()].filter((x) => x.status === 'succeeded'),
          a.pick,
        );
        if (!pi) return;
        try {
          this.stripe.dispute(pi.id, { inquiry: a.inquiry });
          stats[a.inquiry ? 'inquiries' : 'disputes']++;
        } catch {
          // Its last dispute is still open.
        }
        return;
      }
      case 'closeDispute': {
        const open = [...this.stripe.disputes.values()].filter(
          (d) => d.status === 'needs_response' || d.status === 'warning_needs_response',
        );
        const dispute = this.chosen(open, a.pick);
        if (dispute) this.stripe.closeDispute(dispute.id, dispute.status === 'warning_needs_response' ? 'warning_closed' : a.outcome);
        return;
      }
      case 'deliver': {
        const event = this.chosen(this.stripe.events, a.pick);
        if (!event) return;
        await Promise.all(Array.from({ length: a.copies }, () => this.deliver(event)));
        return;
      }
      case 'spend': {
        const user = this.users[a.user % this.users.length]!;
        const response = await this.send('/stripe/spend-currency', { user_id: user, amount: a.amount, item_id: 'sword' });
        check([200, 400].includes(response.statusCode), `spend answered ${response.statusCode}: ${response.body}`);
        return;
      }
      case 'reconcile':
        await reconcile({ store: this.app.store, payments: this.app.payments, log: this.app.log }, { olderThanMs: 0, keyTtlHours: 24 });
        return;
    }
  }

  async deliver(event: FakeStripe['events'][number]) {
    if (event.type === 'refund.created' && !this.refundCreated) {
      this.delivered.add(event.id);
      return;
    }
    const { payload, headers } = webhookRequest(event, SECRET);
    const response = await this.app.inject({ method: 'POST', url: '/stripe/webhook', headers, payload });
    check(response.statusCode === 200, `webhook ${event.type} answered ${response.statusCode}: ${response.body}`);
    this.delivered.add(event.id);
  }

  /** Everything Stripe would still send, then reconciliation and a lookup of every purchase. */
  async settle(drain: number[]) {
    const held = () => this.stripe.events.filter((e) => !this.delivered.has(e.id));
    for (const n of drain) {
      const event = this.chosen(held(), n);
      if (event) await this.deliver(event);
    }
    for (const event of held()) await this.deliver(event);
    for (const event of [...this.stripe.events].reverse()) await this.deliver(event);
    await reconcile({ store: this.app.store, payments: this.app.payments, log: this.app.log }, { olderThanMs: 0, keyTtlHours: 24 });
    for (const p of this.purchases) await this.app.inject({ method: 'GET', url: `/stripe/purchases/${p.txn}` });
  }

  /** Stripe's state, once settled, against the database. */
  async compare() {
    const store = this.app.store;
    check(
      (await store.balanceMismatches()).length === 0,
      `balances differ from their ledger: ${JSON.stringify(await store.balanceMismatches())}`,
    );
    check((await store.unbalancedJournals()).length === 0, 'unbalanced journals');
    for (const { txn } of this.purchases) {
      const row = await store.findPurchase(txn);
      check(row !== undefined, `purchase ${txn} is not recorded`);
      const intents = this.intentsOf(txn);
      check(intents.length <= 1, `purchase ${txn} made ${intents.length} PaymentIntents at Stripe`);
      const pi = intents[0];
      const credits = await store.db
        .selectFrom('ledger_journals')
        .select(['reference'])
        .where('transaction_id', '=', txn)
        .where('kind', '=', 'purchase')
        .execute();
      if (pi?.status === 'succeeded') {
        stats.paid++;
        if (row.payment_method_id === 'checkout') stats.checkoutPaid++;
        check(row.payment_intent_id === pi.id, `purchase ${txn} does not know its PaymentIntent ${pi.id} (has ${row.payment_intent_id})`);
        check(
          credits.length === 1 && credits[0]?.reference === pi.id,
          `paid purchase ${txn} (${row.status}) has ${credits.length} credits`,
        );
        const charge = pi.latest_charge === null ? undefined : this.stripe.charges.get(pi.latest_charge);
        const refunded = [...this.stripe.refunds.values()]
          .filter((r) => r.payment_intent === pi.id && r.status === 'succeeded')
          .reduce((n, r) => n + r.amount, 0);
        const disputes = [...this.stripe.disputes.values()].filter((d) => d.charge === charge?.id);
        const heldBack = disputes.some((d) => d.status === 'needs_response' || d.status === 'lost');
        const expected = heldBack ? 0 : row.coins - Math.floor((row.coins * Math.min(refunded, row.amount_cents)) / row.amount_cents);
        const held = await store.journalTotal(txn, ['purchase', 'refund', 'refund_reversal', 'dispute', 'dispute_reversal']);
        check(
          held === expected,
          `purchase ${txn} (${row.status}, ${row.refunded_cents} refunded) holds ${held} coins; at Stripe ${refunded} of ${row.amount_cents} refunded, ` +
            `disputes ${JSON.stringify(disputes.map((d) => d.status))}: expected ${expected}`,
        );
        check(
          row.refunded_cents === Math.min(refunded, row.amount_cents),
          `purchase ${txn} shows ${row.refunded_cents} refunded, Stripe ${refunded}`,
        );
      } else {
        check(credits.length === 0, `unpaid purchase ${txn} (${row.status}, Stripe ${pi?.status ?? 'none'}) was credited`);
        check(!['succeeded', 'partially_refunded', 'refunded'].includes(row.status), `unpaid purchase ${txn} is ${row.status}`);
      }
    }
  }

  /** The notifications: numbered per player without gaps, adding up to the balance, and all of them at the game. */
  async compareNotifications(game: GameServer) {
    const store = this.app.store;
    const deadline = Date.now() + 20_000;
    for (;;) {
      const pending = await store.db.selectFrom('notifications').select('id').where('status', '!=', 'delivered').execute();
      if (pending.length === 0) break;
      check(Date.now() < deadline, `${pending.length} notifications not delivered`);
      await dueNow(store);
      this.app.notifier?.wake();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const outbox = await store.db.selectFrom('notifications').select(['id', 'user_id', 'user_seq', 'data']).orderBy('seq').execute();
    stats.notifications += outbox.length;
    check(
      [...game.accepted().keys()].sort().join() ===
        outbox
          .map((n) => n.id)
          .sort()
          .join(),
      `the game holds ${game.accepted().size} notifications, the outbox ${outbox.length}`,
    );
    for (const user of this.users) {
      const mine = outbox.filter((n) => n.user_id === user);
      check(
        mine.every((n, i) => Number(n.user_seq) === i + 1),
        `${user}'s notifications are not numbered 1..${mine.length}`,
      );
      const coins = mine.reduce((sum, n) => sum + Number((JSON.parse(n.data) as { coins: number }).coins), 0);
      const balance = (await store.findCustomer(user))?.currency_balance;
      check(coins === balance, `${user}'s notifications add up to ${coins} coins, the balance is ${balance}`);
    }
  }
}

async function runScenario(s: Scenario) {
  const stripe = await startFakeStripe();
  const sdk = new Stripe('sk_test_coinshop', { host: '127.0.0.1', port: stripe.port, protocol: 'http', maxNetworkRetries: 0 });
  const game = await startGameServer();
  game.plan(...s.game);
  const app = await buildApp({
    config: await testConfig({
      STRIPE_SECRET_KEY: 'sk_test_coinshop',
      STRIPE_API_BASE: stripe.url,
      STRIPE_MAX_NETWORK_RETRIES: '0',
      STRIPE_WEBHOOK_SECRET: SECRET,
      CHECKOUT_RETURN_ORIGINS: 'https://shop.example.com',
      GAME_WEBHOOK_URL: game.url,
      GAME_WEBHOOK_SECRET: game.secret,
      GAME_WEBHOOK_TIMEOUT_MS: '1000',
    }),
  });
  let run: Run | undefined;
  try {
    await app.ready();
    const users: string[] = [];
    for (const [i, card] of CARDS.entries()) {
      const { user_id } = await createCustomer(app, { email: `p${i}@example.com`, name: `Player ${i}` });
      check((await attachCard(app, user_id, card)).statusCode === 200, `attach ${card}`);
      users.push(user_id);
    }
    run = new Run(app, stripe, sdk, users, s.refundCreated);
    for (const a of s.actions) await run.step(a);
    await run.settle(s.drain);
    await run.compare();
    await run.compareNotifications(game);
    stats.runs++;
  } catch (err) {
    if (err instanceof Error && run) err.message += `\n  actions:\n    ${run.trace.join('\n    ')}`;
    throw err;
  } finally {
    await app.close();
    await dropFreshSchema(app.config.DATABASE_URL);
    await game.close();
    await stripe.close();
  }
}

// Each run starts a Stripe-compatible server, a game server and an app: minutes in all on PostgreSQL.
t.setTimeout(900_000);

/**
 * A counterexample the property found, shrunk by hand and kept as a fixed case: a purchase refunded
 * in full, then disputed (a chargeback; nothing left to hold back, so its status stayed `refunded`),
 * then the refund failed at the bank. The failed refund made it `succeeded` again and gave the coins
 * back, with the chargeback still open: the player held 100 coins for a payment the bank was taking
 * back.
 */
const CHARGEBACK_ON_A_REFUND_THAT_FAILS: Scenario = {
  actions: [
    { kind: 'purchase', user: 1, pkg: 'package_1', keyed: false, fault: 'none' },
    { kind: 'refund', pick: 0, cents: null, fault: 'none' },
    { kind: 'dispute', pick: 0, inquiry: false },
    { kind: 'failRefund', pick: 0 },
  ],
  game: [],
  drain: [],
  refundCreated: false,
};

t.test('counterexample: a chargeback on a purchase refunded in full holds its coins once the refund fails', async (t) => {
  await runScenario(CHARGEBACK_ON_A_REFUND_THAT_FAILS);
  t.pass('Stripe and coinshop agree');
});

t.test(
  'under faults, Stripe and coinshop agree once everything is delivered: credited once, refunds and disputes reflected once, the game told of all',
  async (t) => {
    const numRuns = Number(process.env['FC_NUM_RUNS'] ?? 30);
    const seed = process.env['FC_SEED'] === undefined ? undefined : Number(process.env['FC_SEED']);
    const path = process.env['FC_PATH'];
    // The fixed case above counts runs too.
    const runsBefore = stats.runs;
    await fc.assert(fc.asyncProperty(scenario, runScenario), {
      numRuns,
      // A failure is reported within five minutes, shrunk as far as it got, rather than shrunk for longer
      // than tap waits (a run stopped before numRuns fails the run count below).
      interruptAfterTimeLimit: 300_000,
      ...(seed !== undefined ? { seed } : {}),
      ...(path !== undefined ? { path } : {}),
    });
    t.comment(`fast-check: ${JSON.stringify(stats)}`);
    t.ok(stats.runs - runsBefore >= (path === undefined ? numRuns : 1), `${stats.runs - runsBefore} runs`);
    if (path === undefined && numRuns >= 30) {
      for (const name of [
        'paid',
        'processing',
        'refused',
        'lost',
        'refunds',
        'failedRefunds',
        'disputes',
        'inquiries',
        'notifications',
        'checkoutPaid',
      ] as const) {
        t.ok(stats[name] > 0, `the generator reached ${name} (${stats[name]})`);
      }
    }
  },
);
