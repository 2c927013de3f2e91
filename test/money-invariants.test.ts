/**
 * Property-based test of the money invariants: random interleavings of purchases (with and without
 * Idempotency-Keys, retried, keys reused for another body), spends, operator refunds, refunds made in
 * the Stripe Dashboard (known to coinshop only by webhook), disputes and their outcomes, 3-D Secure
 * completions, lookups, card changes and webhook deliveries that are held back, duplicated and
 * reordered. After every step the database is compared with a model the test keeps from what it did
 * and what it was told; after every run the ledger invariants are checked, every held event is
 * delivered, the result is compared with the gateway's own state, and every event is delivered again.
 *
 * Reproduce a failure with FC_SEED=<seed> FC_PATH=<path> (both printed by fast-check); change the run
 * count with FC_NUM_RUNS.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import fc from 'fast-check';
import t from 'tap';
import { buildApp } from '../src/app.js';
import { SimulatedGateway } from '../src/gateway/simulated.js';
import { RefundRejected } from '../src/gateway/types.js';
import type { PurchaseStatus } from '../src/store/schema.js';
import type { Store } from '../src/store/store.js';
import { attachCard, canonical, createCustomer, get, json, testConfig, type Json } from './support/helper.js';
import { dropFreshSchema } from './support/database.js';

// ---------------------------------------------------------------------------------------------
// What the test generates

const PACKAGES = {
  package_1: { coins: 100, cents: 1000 },
  package_2: { coins: 300, cents: 2500 },
  package_3: { coins: 700, cents: 5000 },
} as const;
type PackageId = keyof typeof PACKAGES;
const PACKAGE_IDS: readonly PackageId[] = ['package_1', 'package_2', 'package_3'];

type Card = 'pm_card_visa' | 'pm_card_chargeDeclined' | 'pm_card_threeDSecure2Required';

/** Few keys, shared by every idempotent route, so that retries, replays and reuse all happen. */
const KEY_POOL = ['key-a', 'key-b', 'key-c', 'key-d'] as const;

type Action =
  | { kind: 'purchase'; user: number; pkg: PackageId; key: number | null; hold: boolean }
  | { kind: 'retry'; pick: number }
  /** `share`: a percentage of the model's balance instead of a fixed amount (so spends that fit happen). */
  | { kind: 'spend'; user: number; amount: number; share: number | null; key: number | null }
  | { kind: 'refund'; pick: number; any: boolean; cents: number | null; key: number | null; hold: boolean }
  /** A refund made in the Stripe Dashboard: coinshop only hears of it through charge.refunded. */
  | { kind: 'dashboardRefund'; pick: number; any: boolean; cents: number | null; hold: boolean }
  | { kind: 'authenticate'; pick: number; any: boolean; outcome: 'succeed' | 'fail'; hold: boolean }
  | { kind: 'dispute'; pick: number; any: boolean; hold: boolean }
  | { kind: 'closeDispute'; pick: number; any: boolean; outcome: 'won' | 'lost'; hold: boolean }
  | { kind: 'deliver'; pick: number }
  | { kind: 'lookup'; pick: number; any: boolean }
  | { kind: 'attach'; user: number; card: Card };

interface Scenario {
  cards: Card[];
  actions: Action[];
  /** The order in which still-held events are delivered at the end (picks; the rest newest first). */
  drain: number[];
}

const pick = fc.nat({ max: 40 });
/** Mostly pick a target the action makes sense for; sometimes any target (the refusals). */
const any = fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) });
const key = fc.option(fc.nat({ max: KEY_POOL.length - 1 }), { nil: null, freq: 3 });
const card = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Card>('pm_card_visa') },
  { weight: 1, arbitrary: fc.constant<Card>('pm_card_chargeDeclined') },
  { weight: 2, arbitrary: fc.constant<Card>('pm_card_threeDSecure2Required') },
);
const user = fc.nat({ max: 2 });

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('purchase' as const),
      user,
      pkg: fc.constantFrom(...PACKAGE_IDS),
      key,
      hold: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('retry' as const), pick }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('spend' as const),
      user,
      amount: fc.oneof(fc.integer({ min: 1, max: 150 }), fc.integer({ min: 1, max: 1200 })),
      share: fc.option(fc.oneof(fc.integer({ min: 1, max: 100 }), fc.constant(100)), { nil: null, freq: 3 }),
      key,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('refund' as const),
      pick,
      any,
      cents: fc.option(fc.oneof(fc.integer({ min: 1, max: 120 }), fc.integer({ min: 1, max: 5200 })), { nil: null }),
      key,
      hold: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('dashboardRefund' as const),
      pick,
      any,
      cents: fc.option(fc.oneof(fc.integer({ min: 1, max: 120 }), fc.integer({ min: 1, max: 5200 })), { nil: null }),
      hold: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('authenticate' as const),
      pick,
      any,
      outcome: fc.constantFrom('succeed' as const, 'fail' as const),
      hold: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('dispute' as const), pick, any, hold: fc.boolean() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('closeDispute' as const),
      pick,
      any,
      outcome: fc.constantFrom('won' as const, 'lost' as const),
      hold: fc.boolean(),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('deliver' as const), pick }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('lookup' as const), pick, any }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('attach' as const), user, card }) },
);

const scenario: fc.Arbitrary<Scenario> = fc.record({
  cards: fc.array(card, { minLength: 2, maxLength: 3 }),
  actions: fc.array(action, { minLength: 1, maxLength: 30, size: 'max' }),
  drain: fc.array(fc.nat({ max: 20 }), { maxLength: 6 }),
});

// ---------------------------------------------------------------------------------------------
// The model: what the database must hold, from what the test did and what it was told

const PAID: ReadonlySet<PurchaseStatus> = new Set<PurchaseStatus>([
  'succeeded',
  'partially_refunded',
  'refunded',
  'disputed',
  'dispute_won',
  'dispute_lost',
]);
const REFUNDABLE: ReadonlySet<PurchaseStatus> = new Set<PurchaseStatus>(['succeeded', 'partially_refunded']);

type GatewayStatus = 'succeeded' | 'requires_action' | 'failed';

interface ModelUser {
  label: string;
  id: string;
  card: Card;
  /** Coins spent (successful spends). A balance is never stored in the model: see `balanceOf`. */
  spent: number;
}

interface ModelPurchase {
  label: string;
  txn: string;
  user: ModelUser;
  pkg: PackageId;
  coins: number;
  cents: number;
  pi: string;
  /** At the simulated gateway (what the test caused there). */
  gw: GatewayStatus;
  gwRefunded: number;
  dispute: ModelDispute | undefined;
  /** In coinshop: what it must show, given what it has been told so far (in the order it was told). */
  status: PurchaseStatus;
  /** The largest cumulative refund coinshop has learnt of. */
  refundedCents: number;
  /** Coinshop has learnt that the payment succeeded. */
  credited: boolean;
  /** The dispute as coinshop knows it (a `closed` event tells it both that it opened and how it ended). */
  disputeSeen: 'none' | 'open' | 'won' | 'lost';
  /**
   * The refund objects coinshop knows, by id: its own refunds, and every refund of the charge once a
   * charge.refunded showed more refunded than these add up to (it then lists them from the gateway).
   */
  knownRefunds: Map<string, number>;
}

interface ModelDispute {
  label: string;
  id: string;
  purchase: ModelPurchase;
  state: 'open' | 'won' | 'lost';
}

interface KeyRecord {
  key: string;
  url: string;
  body: Json;
  status: number;
  response: unknown;
}

interface CapturedEvent {
  label: string;
  id: string;
  type: string;
  object: Json;
  payload: string;
  signature: string;
  delivered: boolean;
}

/** Cents of the refund objects coinshop knows for a purchase. */
const knownCents = (p: ModelPurchase) => [...p.knownRefunds.values()].reduce((sum, cents) => sum + cents, 0);

const viewStatus = (s: PurchaseStatus) => (s === 'succeeded' ? 'completed' : s);

function field(object: Json, name: string): unknown {
  return object[name];
}
function str(object: Json, name: string): string {
  const value = field(object, name);
  if (typeof value !== 'string') throw new Violation(`expected a string ${name} in ${JSON.stringify(object)}`);
  return value;
}
function num(object: Json, name: string): number {
  const value = field(object, name);
  if (typeof value !== 'number') throw new Violation(`expected a number ${name} in ${JSON.stringify(object)}`);
  return value;
}
function isJson(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
function obj(object: Json, name: string): Json {
  const value = field(object, name);
  if (!isJson(value)) throw new Violation(`expected an object ${name} in ${JSON.stringify(object)}`);
  return value;
}

class Violation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Violation';
  }
}

/** What the generator reached, over all runs (so a generator that stopped reaching a path is noticed). */
const stats = {
  runs: 0,
  actions: 0,
  purchasesPaid: 0,
  purchases3ds: 0,
  purchasesDeclined: 0,
  replays: 0,
  keyReused422: 0,
  spends: 0,
  insufficient: 0,
  refunds: 0,
  partialRefunds: 0,
  refundRefused: 0,
  dashboardRefunds: 0,
  authenticated: 0,
  authFailed: 0,
  disputes: 0,
  disputesWon: 0,
  disputesLost: 0,
  heldEvents: 0,
  outOfOrder: 0,
  duplicates: 0,
  lookupsSettled: 0,
  negativeBalances: 0,
  simRefused: 0,
  ms: 0,
};

// ---------------------------------------------------------------------------------------------
// One run

class Run {
  readonly users: ModelUser[] = [];
  readonly purchases: ModelPurchase[] = [];
  readonly disputes: ModelDispute[] = [];
  readonly events: CapturedEvent[] = [];
  readonly keys = new Map<string, KeyRecord>();
  readonly trace: string[] = [];
  /** Problems found where throwing would have turned into a 500 (inside the gateway's webhook call). */
  readonly deferred: Violation[] = [];
  private hold = false;
  private inFlight: { user: ModelUser; pkg: PackageId; card: Card } | undefined;
  private readonly store: Store;
  private readonly gateway: SimulatedGateway;

  constructor(private readonly app: FastifyInstance) {
    this.store = app.store;
    if (!(app.payments instanceof SimulatedGateway)) throw new Error('the test app must use the simulated gateway');
    this.gateway = app.payments;
    this.gateway.onWebhook(async (payload, signature) => {
      try {
        await this.captured(payload, signature);
      } catch (err) {
        this.deferred.push(err instanceof Violation ? err : new Violation(String(err)));
      }
    });
  }

  check(condition: boolean, message: string): asserts condition {
    if (!condition) throw new Violation(message);
  }

  // Requests

  async send(method: 'GET' | 'POST', url: string, body?: Json, idempotencyKey?: string): Promise<LightMyRequestResponse> {
    return this.app.inject({
      method,
      url,
      ...(body !== undefined ? { payload: body } : {}),
      ...(idempotencyKey !== undefined ? { headers: { 'idempotency-key': idempotencyKey } } : {}),
    });
  }

  expectStatus(response: LightMyRequestResponse, status: number, code: string | undefined, what: string): Json {
    const body = json(response);
    this.check(
      response.statusCode === status && (code === undefined || body['code'] === code),
      `${what}: expected ${status}${code ? ` ${code}` : ''}, got ${response.statusCode} ${response.body}`,
    );
    return body;
  }

  /**
   * A request with an Idempotency-Key the model has seen: the same request replays the first answer,
   * another is refused with 422. Either way nothing changes. Returns false when the key is new.
   */
  async keyed(keyIndex: number | null, url: string, body: Json, what: string): Promise<{ handled: boolean; key: string | undefined }> {
    if (keyIndex === null) return { handled: false, key: undefined };
    const key = KEY_POOL[keyIndex % KEY_POOL.length];
    if (key === undefined) return { handled: false, key: undefined };
    const record = this.keys.get(key);
    if (!record) return { handled: false, key };
    const response = await this.send('POST', url, body, key);
    if (record.url === url && canonical(record.body) === canonical(body)) {
      await this.expectReplay(record, response, what);
    } else {
      this.expectStatus(
        response,
        422,
        'idempotency_key_reused',
        `${what} reusing ${key} (first used for ${record.url} ${JSON.stringify(record.body)})`,
      );
      this.check(response.headers['idempotent-replayed'] === undefined, `${what}: a 422 must not say it was replayed`);
      stats.keyReused422++;
      this.trace.push(`    → 422 idempotency_key_reused`);
    }
    return { handled: true, key };
  }

  async expectReplay(record: KeyRecord, response: LightMyRequestResponse, what: string) {
    this.check(
      response.statusCode === record.status,
      `${what}: replay of ${record.key} answered ${response.statusCode}, the first answer was ${record.status}: ${response.body}`,
    );
    this.check(response.headers['idempotent-replayed'] === 'true', `${what}: replay of ${record.key} lacks idempotent-replayed: true`);
    this.check(
      canonical(response.json()) === canonical(record.response),
      `${what}: replay of ${record.key} answered ${response.body}, the first answer was ${JSON.stringify(record.response)}`,
    );
    stats.replays++;
    this.trace.push(`    → replayed ${record.status}`);
  }

  remember(key: string | undefined, url: string, body: Json, response: LightMyRequestResponse) {
    if (key === undefined) return;
    this.keys.set(key, { key, url, body, status: response.statusCode, response: response.json() });
  }

  /** Events the gateway emits during `fn`, checked against how many it must emit. */
  async emitting<T>(hold: boolean, expected: number, what: string, fn: () => Promise<T>): Promise<{ result: T; events: CapturedEvent[] }> {
    const before = this.events.length;
    this.hold = hold;
    let result: T;
    try {
      result = await fn();
    } finally {
      this.hold = false;
    }
    const events = this.events.slice(before);
    this.check(events.length === expected, `${what}: the gateway emitted ${events.length} events, expected ${expected}`);
    return { result, events };
  }

  // Webhooks

  private async captured(payload: string, signature: string) {
    const parsed: unknown = JSON.parse(payload);
    if (!isJson(parsed)) throw new Violation(`event payload is not an object: ${payload}`);
    const event: CapturedEvent = {
      label: `E${this.events.length}`,
      id: str(parsed, 'id'),
      type: str(parsed, 'type'),
      object: obj(obj(parsed, 'data'), 'object'),
      payload,
      signature,
      delivered: false,
    };
    this.events.push(event);
    if (event.type.startsWith('payment_intent.')) this.registerCharge(event);
    if (this.hold) {
      stats.heldEvents++;
      this.trace.push(`    ${event.label} ${event.type} held`);
    } else {
      await this.deliver(event, 'inline');
    }
  }

  /** A PaymentIntent event for a purchase the model does not know yet: the purchase being made now. */
  private registerCharge(event: CapturedEvent) {
    const metadata = obj(event.object, 'metadata');
    const txn = str(metadata, 'transaction_id');
    if (this.purchases.some((p) => p.txn === txn)) return;
    const inFlight = this.inFlight;
    this.check(inFlight !== undefined, `${event.label} ${event.type} for an unknown purchase ${txn} while no purchase was being made`);
    const pack = PACKAGES[inFlight.pkg];
    this.check(
      str(metadata, 'user_id') === inFlight.user.id &&
        str(metadata, 'package_id') === inFlight.pkg &&
        str(metadata, 'coins') === String(pack.coins) &&
        num(event.object, 'amount') === pack.cents,
      `${event.label}: the PaymentIntent does not describe the purchase being made (${inFlight.user.label} ${inFlight.pkg}): ${event.payload}`,
    );
    const gw: GatewayStatus =
      inFlight.card === 'pm_card_visa' ? 'succeeded' : inFlight.card === 'pm_card_chargeDeclined' ? 'failed' : 'requires_action';
    const stripeStatus = gw === 'failed' ? 'requires_payment_method' : gw;
    this.check(
      str(event.object, 'status') === stripeStatus,
      `${event.label}: ${inFlight.card} gave a PaymentIntent in ${str(event.object, 'status')}`,
    );
    this.purchases.push({
      label: `P${this.purchases.length}`,
      txn,
      user: inFlight.user,
      pkg: inFlight.pkg,
      coins: pack.coins,
      cents: pack.cents,
      pi: str(event.object, 'id'),
      gw,
      gwRefunded: 0,
      dispute: undefined,
      status: 'pending',
      refundedCents: 0,
      credited: false,
      disputeSeen: 'none',
      knownRefunds: new Map(),
    });
  }

  /** Delivers an event to POST /stripe/webhook: the first time it is processed, after that a duplicate. */
  async deliver(event: CapturedEvent, how: string) {
    const response = await this.app.inject({
      method: 'POST',
      url: '/stripe/webhook',
      headers: { 'content-type': 'application/json', 'stripe-signature': event.signature },
      payload: event.payload,
    });
    const body = this.expectStatus(response, 200, undefined, `delivering ${event.label} ${event.type}`);
    const first = !event.delivered;
    const expected = first ? 'processed' : 'duplicate';
    this.check(
      body['received'] === true && body['outcome'] === expected,
      `${how} delivery of ${event.label} ${event.type} (${first ? 'first' : 'again'}): expected outcome ${expected}, got ${response.body}`,
    );
    if (!first) {
      stats.duplicates++;
      this.trace.push(`    ${event.label} ${event.type} ${how} again → duplicate`);
      return;
    }
    if (this.events.some((e) => e.delivered && this.events.indexOf(e) > this.events.indexOf(event))) stats.outOfOrder++;
    event.delivered = true;
    this.trace.push(
      `    ${event.label} ${event.type}${event.type.startsWith('charge.dispute') ? ` (${str(event.object, 'status')})` : ''} ${how} → processed`,
    );
    await this.applyEvent(event);
  }

  /** What coinshop learns when it lists a charge's refunds: every refund at the gateway now. */
  private async learnRefunds(p: ModelPurchase) {
    for (const refund of await this.gateway.listRefunds(p.pi)) p.knownRefunds.set(refund.id, refund.amount);
  }

  private async applyEvent(event: CapturedEvent) {
    const o = event.object;
    switch (event.type) {
      case 'payment_intent.succeeded':
      case 'payment_intent.requires_action':
      case 'payment_intent.payment_failed': {
        const p = this.purchaseByTxn(str(obj(o, 'metadata'), 'transaction_id'));
        const status = str(o, 'status');
        if (status === 'succeeded') this.settleSucceeded(p);
        else if (status === 'requires_action') this.settleRequiresAction(p);
        else this.settleFailed(p);
        return;
      }
      case 'charge.refunded': {
        const p = this.purchaseByPi(str(o, 'payment_intent'));
        const figure = num(o, 'amount_refunded');
        if (figure > knownCents(p)) await this.learnRefunds(p);
        this.settleRefunded(p, Math.max(figure, knownCents(p)));
        return;
      }
      case 'charge.dispute.created':
      case 'charge.dispute.closed':
        this.settleDispute(this.purchaseByPi(str(o, 'payment_intent')), str(o, 'status'));
        return;
      default:
        throw new Violation(`unexpected event type ${event.type}`);
    }
  }

  purchaseByTxn(txn: string): ModelPurchase {
    const p = this.purchases.find((x) => x.txn === txn);
    if (!p) throw new Violation(`no purchase ${txn} in the model`);
    return p;
  }

  purchaseByPi(pi: string): ModelPurchase {
    const p = this.purchases.find((x) => x.pi === pi);
    if (!p) throw new Violation(`no purchase with PaymentIntent ${pi} in the model`);
    return p;
  }

  // The model's settlement. Coins are a function of what coinshop knows, never of the order it learnt
  // it in (as src/services/settlement.ts and webhooks.ts promise): a paid purchase is worth its coins,
  // less the refunded share rounded down in the player's favour; nothing while a dispute is open or
  // once it is lost; the refunded share again once it is won.

  /** What a purchase is worth to its player now. */
  static net(coins: number, cents: number, paid: boolean, refunded: number, dispute: ModelPurchase['disputeSeen']): number {
    if (!paid || dispute === 'open' || dispute === 'lost') return 0;
    return coins - Math.floor((coins * Math.min(refunded, cents)) / cents);
  }

  balanceOf(u: ModelUser): number {
    let balance = -u.spent;
    for (const p of this.purchases) {
      if (p.user === u) balance += Run.net(p.coins, p.cents, p.credited, p.refundedCents, p.disputeSeen);
    }
    return balance;
  }

  settleSucceeded(p: ModelPurchase) {
    if (p.status === 'pending' || p.status === 'requires_action' || p.status === 'failed') {
      p.status = 'succeeded';
      p.credited = true;
    }
  }

  settleRequiresAction(p: ModelPurchase) {
    if (p.status === 'pending') p.status = 'requires_action';
  }

  settleFailed(p: ModelPurchase) {
    if (p.status === 'pending' || p.status === 'requires_action') p.status = 'failed';
  }

  /** What coinshop learns from Stripe about a purchase (purchase call, lookup). */
  settleFromGateway(p: ModelPurchase) {
    if (p.gw === 'succeeded') this.settleSucceeded(p);
    else if (p.gw === 'requires_action') this.settleRequiresAction(p);
    else this.settleFailed(p);
  }

  /** A cumulative refund amount: a larger one than known moves the purchase on, a smaller one is old news. */
  settleRefunded(p: ModelPurchase, cumulative: number) {
    this.settleSucceeded(p);
    if (cumulative <= p.refundedCents) return;
    const refunded = Math.min(cumulative, p.cents);
    if (REFUNDABLE.has(p.status)) p.status = refunded >= p.cents ? 'refunded' : 'partially_refunded';
    p.refundedCents = refunded;
  }

  settleDispute(p: ModelPurchase, disputeStatus: string) {
    this.settleSucceeded(p);
    if (REFUNDABLE.has(p.status)) p.status = 'disputed';
    if (disputeStatus === 'won' || disputeStatus === 'lost') p.disputeSeen = disputeStatus;
    else if (p.disputeSeen === 'none') p.disputeSeen = 'open';
    if (disputeStatus === 'won' && p.status === 'disputed') p.status = 'dispute_won';
    if (disputeStatus === 'lost' && p.status === 'disputed') p.status = 'dispute_lost';
  }

  // Actions

  async setup(cards: Card[]) {
    for (const [i, c] of cards.entries()) {
      const customer = await createCustomer(this.app, { email: `player${i}@example.com`, name: `Player ${i}` });
      const attached = await attachCard(this.app, customer.user_id, c);
      this.check(attached.statusCode === 200, `attaching ${c}: ${attached.statusCode} ${attached.body}`);
      this.users.push({ label: `u${i}`, id: customer.user_id, card: c, spent: 0 });
    }
  }

  private userAt(index: number): ModelUser {
    const u = this.users[index % this.users.length];
    if (!u) throw new Error('no users');
    return u;
  }

  private choose<T>(likely: T[], all: T[], index: number, anyTarget: boolean): T | undefined {
    const from = anyTarget || likely.length === 0 ? all : likely;
    return from.length === 0 ? undefined : from[index % from.length];
  }

  async step(a: Action, index: number) {
    stats.actions++;
    switch (a.kind) {
      case 'purchase':
        return this.purchase(a, index);
      case 'retry':
        return this.retry(a, index);
      case 'spend':
        return this.spend(a, index);
      case 'refund':
        return this.refund(a, index);
      case 'dashboardRefund':
        return this.dashboardRefund(a, index);
      case 'authenticate':
        return this.authenticate(a, index);
      case 'dispute':
        return this.openDispute(a, index);
      case 'closeDispute':
        return this.closeDispute(a, index);
      case 'deliver': {
        const event = this.events[a.pick % Math.max(1, this.events.length)];
        this.trace.push(`#${index} deliver ${event ? `${event.label} ${event.type}` : '(no events yet)'}`);
        if (event) await this.deliver(event, 'redelivery');
        return;
      }
      case 'lookup':
        return this.lookup(a, index);
      case 'attach': {
        const u = this.userAt(a.user);
        this.trace.push(`#${index} attach ${u.label} ${a.card}`);
        const response = await attachCard(this.app, u.id, a.card);
        this.expectStatus(response, 200, undefined, `attach ${a.card}`);
        u.card = a.card;
        return;
      }
    }
  }

  async purchase(a: Extract<Action, { kind: 'purchase' }>, index: number) {
    const u = this.userAt(a.user);
    const url = '/stripe/purchase-currency';
    const body = { user_id: u.id, package_id: a.pkg };
    const what = `#${index} purchase ${u.label} ${a.pkg}`;
    this.trace.push(`${what}${a.key === null ? '' : ` key=${KEY_POOL[a.key]}`}${a.hold ? ' (events held)' : ''} [card ${u.card}]`);
    const keyed = await this.keyed(a.key, url, body, what);
    if (keyed.handled) return;
    this.inFlight = { user: u, pkg: a.pkg, card: u.card };
    let response: LightMyRequestResponse;
    let events: CapturedEvent[];
    try {
      ({ result: response, events } = await this.emitting(a.hold, 1, what, () => this.send('POST', url, body, keyed.key)));
    } finally {
      this.inFlight = undefined;
    }
    const event = events[0];
    this.check(event !== undefined && event.type.startsWith('payment_intent.'), `${what}: no PaymentIntent event`);
    const p = this.purchaseByTxn(str(obj(event.object, 'metadata'), 'transaction_id'));
    this.settleFromGateway(p);
    if (PAID.has(p.status)) {
      const result = this.expectStatus(response, 200, undefined, what);
      this.check(
        result['transaction_id'] === p.txn && result['currency_purchased'] === p.coins && result['new_balance'] === this.balanceOf(u),
        `${what}: expected ${p.txn} +${p.coins} coins, new_balance ${this.balanceOf(u)}; got ${response.body}`,
      );
      stats.purchasesPaid++;
    } else if (p.status === 'requires_action') {
      const result = this.expectStatus(response, 402, 'authentication_required', what);
      this.check(
        result['transaction_id'] === p.txn && result['payment_intent_id'] === p.pi,
        `${what}: 402 should name ${p.txn} and ${p.pi}: ${response.body}`,
      );
      stats.purchases3ds++;
    } else {
      const result = this.expectStatus(response, 400, 'card_declined', what);
      this.check(result['transaction_id'] === p.txn, `${what}: the decline should name ${p.txn}: ${response.body}`);
      stats.purchasesDeclined++;
    }
    this.trace.push(`    → ${response.statusCode} ${p.label} (${p.pi}) ${p.status}, ${u.label} balance ${this.balanceOf(u)}`);
    this.remember(keyed.key, url, body, response);
  }

  async retry(a: Extract<Action, { kind: 'retry' }>, index: number) {
    const records = [...this.keys.values()];
    const record = records[a.pick % Math.max(1, records.length)];
    this.trace.push(`#${index} retry ${record ? `${record.key} ${record.url} ${JSON.stringify(record.body)}` : '(no keyed request yet)'}`);
    if (!record) return;
    const response = await this.send('POST', record.url, record.body, record.key);
    await this.expectReplay(record, response, `#${index} retry`);
  }

  async spend(a: Extract<Action, { kind: 'spend' }>, index: number) {
    const u = this.userAt(a.user);
    const url = '/stripe/spend-currency';
    const before = this.balanceOf(u);
    const amount = a.share !== null && before > 0 ? Math.max(1, Math.floor((before * a.share) / 100)) : a.amount;
    const body = { user_id: u.id, amount, item_id: 'sword' };
    const what = `#${index} spend ${u.label} ${amount}`;
    this.trace.push(`${what}${a.key === null ? '' : ` key=${KEY_POOL[a.key]}`} [model balance ${before}]`);
    const keyed = await this.keyed(a.key, url, body, what);
    if (keyed.handled) return;
    const { result: response } = await this.emitting(false, 0, what, () => this.send('POST', url, body, keyed.key));
    if (before >= amount) {
      const result = this.expectStatus(response, 200, undefined, what);
      u.spent += amount;
      this.check(
        result['currency_spent'] === amount && result['new_balance'] === before - amount,
        `${what}: expected new_balance ${before - amount}, got ${response.body}`,
      );
      stats.spends++;
    } else {
      this.expectStatus(response, 400, 'insufficient_balance', what);
      stats.insufficient++;
    }
    this.trace.push(`    → ${response.statusCode}, ${u.label} balance ${this.balanceOf(u)}`);
    this.remember(keyed.key, url, body, response);
  }

  async refund(a: Extract<Action, { kind: 'refund' }>, index: number) {
    const p = this.choose(
      this.purchases.filter((x) => REFUNDABLE.has(x.status)),
      this.purchases,
      a.pick,
      a.any,
    );
    const what = `#${index} refund ${p ? `${p.label} [${p.status}, ${p.gwRefunded}/${p.cents} refunded]` : '(no purchase yet)'} ${a.cents ?? 'all'}`;
    this.trace.push(`${what}${a.key === null ? '' : ` key=${KEY_POOL[a.key]}`}${a.hold ? ' (events held)' : ''}`);
    if (!p) return;
    const url = `/stripe/purchases/${p.txn}/refund`;
    const body: Json = a.cents === null ? {} : { amount_cents: a.cents };
    const keyed = await this.keyed(a.key, url, body, what);
    if (keyed.handled) return;
    const remaining = p.cents - p.gwRefunded;
    const amount = a.cents ?? remaining;
    const outcome = !REFUNDABLE.has(p.status) ? 'invalid_state' : remaining === 0 || amount > remaining ? 'refund_rejected' : 'ok';
    const { result: response, events } = await this.emitting(a.hold, outcome === 'ok' ? 1 : 0, what, () =>
      this.send('POST', url, body, keyed.key),
    );
    if (outcome === 'ok') {
      p.gwRefunded += amount;
      // coinshop keeps the refund Stripe answered with: the newest of the charge's refunds.
      const made = (await this.gateway.listRefunds(p.pi)).at(-1);
      if (made) p.knownRefunds.set(made.id, made.amount);
      const event = events[0];
      this.check(
        event !== undefined && event.type === 'charge.refunded' && num(event.object, 'amount_refunded') === p.gwRefunded,
        `${what}: expected a charge.refunded event for ${p.gwRefunded} cents`,
      );
      this.settleRefunded(p, p.gwRefunded);
      const view = this.expectStatus(response, 200, undefined, what);
      this.check(
        view['status'] === viewStatus(p.status) && view['amount_refunded'] === p.refundedCents,
        `${what}: expected ${viewStatus(p.status)} with ${p.refundedCents} refunded, got ${response.body}`,
      );
      if (p.gwRefunded < p.cents) stats.partialRefunds++;
      stats.refunds++;
    } else {
      this.expectStatus(response, 409, outcome, what);
      stats.refundRefused++;
    }
    this.trace.push(`    → ${response.statusCode} ${p.label} ${p.status}, ${p.user.label} balance ${this.balanceOf(p.user)}`);
    this.remember(keyed.key, url, body, response);
  }

  async dashboardRefund(a: Extract<Action, { kind: 'dashboardRefund' }>, index: number) {
    // Stripe refuses to refund a disputed charge, so the test never asks for that.
    const undisputed = this.purchases.filter((x) => x.dispute === undefined);
    const p = this.choose(
      undisputed.filter((x) => x.gw === 'succeeded' && x.gwRefunded < x.cents),
      undisputed,
      a.pick,
      a.any,
    );
    const what = `#${index} dashboard refund ${p ? `${p.label} [gateway ${p.gw}, ${p.gwRefunded}/${p.cents} refunded; ${p.status}]` : '(nothing to refund)'} ${a.cents ?? 'all'}`;
    this.trace.push(`${what}${a.hold ? ' (events held)' : ''}`);
    if (!p) return;
    const remaining = p.cents - p.gwRefunded;
    const amount = a.cents ?? remaining;
    const allowed = p.gw === 'succeeded' && remaining > 0 && amount <= remaining;
    const { result } = await this.emitting(a.hold, allowed ? 1 : 0, what, async () => {
      try {
        return await this.gateway.refund({
          paymentIntentId: p.pi,
          amountCents: a.cents ?? undefined,
          idempotencyKey: `dashboard-${index}-${p.pi}`,
        });
      } catch (err) {
        if (err instanceof RefundRejected) return undefined;
        throw err;
      }
    });
    this.check(
      (result !== undefined) === allowed,
      `${what}: the gateway ${result ? 'refunded' : 'refused'}, expected it to ${allowed ? 'refund' : 'refuse'}`,
    );
    if (allowed) {
      p.gwRefunded += amount;
      this.check(
        result?.amountRefunded === p.gwRefunded,
        `${what}: the gateway says ${result?.amountRefunded} refunded, expected ${p.gwRefunded}`,
      );
      stats.dashboardRefunds++;
    }
    this.trace.push(
      `    → ${allowed ? `${p.gwRefunded} refunded at the gateway` : 'refused'}; ${p.label} ${p.status}, ${p.user.label} balance ${this.balanceOf(p.user)}`,
    );
  }

  async authenticate(a: Extract<Action, { kind: 'authenticate' }>, index: number) {
    const p = this.choose(
      this.purchases.filter((x) => x.gw === 'requires_action'),
      this.purchases,
      a.pick,
      a.any,
    );
    const what = `#${index} authenticate ${p ? `${p.label} [gateway ${p.gw}]` : '(no purchase yet)'} ${a.outcome}`;
    this.trace.push(`${what}${a.hold ? ' (events held)' : ''}`);
    if (!p) return;
    const allowed = p.gw === 'requires_action';
    const { result: response } = await this.emitting(a.hold, allowed ? 1 : 0, what, () =>
      this.send('POST', `/simulator/payment-intents/${p.pi}/authenticate`, { outcome: a.outcome }),
    );
    if (allowed) {
      p.gw = a.outcome === 'succeed' ? 'succeeded' : 'failed';
      const result = this.expectStatus(response, 200, undefined, what);
      const view = obj(result, 'purchase');
      this.check(view['status'] === viewStatus(p.status), `${what}: expected the purchase ${viewStatus(p.status)}, got ${response.body}`);
      if (a.outcome === 'succeed') stats.authenticated++;
      else stats.authFailed++;
    } else {
      this.expectStatus(response, 409, 'invalid_state', what);
      stats.simRefused++;
    }
    this.trace.push(`    → ${response.statusCode} ${p.label} ${p.status}, ${p.user.label} balance ${this.balanceOf(p.user)}`);
  }

  async openDispute(a: Extract<Action, { kind: 'dispute' }>, index: number) {
    // One dispute per charge, as in Stripe.
    const undisputed = this.purchases.filter((x) => x.dispute === undefined);
    const p = this.choose(
      undisputed.filter((x) => x.gw === 'succeeded'),
      undisputed,
      a.pick,
      a.any,
    );
    const what = `#${index} dispute ${p ? `${p.label} [gateway ${p.gw}, ${p.status}]` : '(nothing to dispute)'}`;
    this.trace.push(`${what}${a.hold ? ' (events held)' : ''}`);
    if (!p) return;
    const allowed = p.gw === 'succeeded';
    const { result: response } = await this.emitting(a.hold, allowed ? 1 : 0, what, () =>
      this.send('POST', `/simulator/payment-intents/${p.pi}/dispute`),
    );
    if (allowed) {
      const result = this.expectStatus(response, 200, undefined, what);
      const dispute: ModelDispute = { label: `D${this.disputes.length}`, id: str(result, 'dispute_id'), purchase: p, state: 'open' };
      this.disputes.push(dispute);
      p.dispute = dispute;
      const view = obj(result, 'purchase');
      this.check(view['status'] === viewStatus(p.status), `${what}: expected the purchase ${viewStatus(p.status)}, got ${response.body}`);
      stats.disputes++;
      this.trace.push(`    → 200 ${dispute.label} on ${p.label} ${p.status}, ${p.user.label} balance ${this.balanceOf(p.user)}`);
    } else {
      this.expectStatus(response, 409, 'invalid_state', what);
      stats.simRefused++;
      this.trace.push(`    → 409`);
    }
  }

  async closeDispute(a: Extract<Action, { kind: 'closeDispute' }>, index: number) {
    const d = this.choose(
      this.disputes.filter((x) => x.state === 'open'),
      this.disputes,
      a.pick,
      a.any,
    );
    const what = `#${index} close ${d ? `${d.label} on ${d.purchase.label} [${d.state}]` : '(no dispute yet)'} ${a.outcome}`;
    this.trace.push(`${what}${a.hold ? ' (events held)' : ''}`);
    if (!d) return;
    const allowed = d.state === 'open';
    const p = d.purchase;
    const { result: response } = await this.emitting(a.hold, allowed ? 1 : 0, what, () =>
      this.send('POST', `/simulator/disputes/${d.id}/close`, { outcome: a.outcome }),
    );
    if (allowed) {
      d.state = a.outcome;
      const result = this.expectStatus(response, 200, undefined, what);
      const view = obj(result, 'purchase');
      this.check(view['status'] === viewStatus(p.status), `${what}: expected the purchase ${viewStatus(p.status)}, got ${response.body}`);
      if (a.outcome === 'won') stats.disputesWon++;
      else stats.disputesLost++;
    } else {
      this.expectStatus(response, 409, 'invalid_state', what);
      stats.simRefused++;
    }
    this.trace.push(`    → ${response.statusCode} ${p.label} ${p.status}, ${p.user.label} balance ${this.balanceOf(p.user)}`);
  }

  async lookup(a: Extract<Action, { kind: 'lookup' }>, index: number) {
    // Most interesting: a purchase coinshop still thinks unfinished whose outcome the gateway knows.
    const unfinished = this.purchases.filter((x) => x.status === 'requires_action' || x.status === 'pending');
    const stale = unfinished.filter((x) => x.gw !== 'requires_action');
    const p = this.choose(stale.length > 0 ? stale : unfinished, this.purchases, a.pick, a.any);
    const what = `#${index} lookup ${p ? `${p.label} [${p.status}, gateway ${p.gw}]` : '(no purchase yet)'}`;
    this.trace.push(what);
    if (!p) return;
    const before = p.status;
    const { result: response } = await this.emitting(false, 0, what, () => get(this.app, `/stripe/purchases/${p.txn}`));
    if (p.status === 'pending' || p.status === 'requires_action') this.settleFromGateway(p);
    if (p.status !== before) stats.lookupsSettled++;
    const view = this.expectStatus(response, 200, undefined, what);
    this.check(
      view['status'] === viewStatus(p.status) &&
        view['payment_intent_id'] === p.pi &&
        view['amount_refunded'] === p.refundedCents &&
        view['currency_purchased'] === p.coins,
      `${what}: expected ${viewStatus(p.status)} ${p.pi} with ${p.refundedCents} refunded, got ${response.body}`,
    );
    this.trace.push(`    → ${p.status}, ${p.user.label} balance ${this.balanceOf(p.user)}`);
  }

  // Checks

  /** The database against the model, after every step. */
  async compareWithModel(when: string) {
    const deferred = this.deferred.shift();
    if (deferred) throw deferred;
    const db = this.store.db;
    const customers = await db.selectFrom('customers').select(['user_id', 'currency_balance']).execute();
    this.check(customers.length === this.users.length, `${when}: ${customers.length} customers, expected ${this.users.length}`);
    for (const u of this.users) {
      const row = customers.find((c) => c.user_id === u.id);
      this.check(row !== undefined, `${when}: customer ${u.label} is gone`);
      const expected = this.balanceOf(u);
      this.check(row.currency_balance === expected, `${when}: ${u.label} has ${row.currency_balance} coins, the model says ${expected}`);
      if (row.currency_balance < 0) stats.negativeBalances++;
    }
    const rows = await db.selectFrom('purchases').selectAll().execute();
    this.check(
      rows.length === this.purchases.length,
      `${when}: ${rows.length} purchases recorded, the model made ${this.purchases.length} (a replay or refused request must not create one)`,
    );
    for (const p of this.purchases) {
      const row = rows.find((r) => r.transaction_id === p.txn);
      this.check(row !== undefined, `${when}: purchase ${p.label} (${p.txn}) is not recorded`);
      this.check(
        row.status === p.status && row.refunded_cents === p.refundedCents && row.payment_intent_id === p.pi && row.user_id === p.user.id,
        `${when}: ${p.label} is ${row.status} with ${row.refunded_cents} cents refunded (PI ${row.payment_intent_id}); ` +
          `the model says ${p.status} with ${p.refundedCents} (PI ${p.pi})`,
      );
    }
  }

  /** The ledger invariants, from the database only. */
  async checkLedger(when: string) {
    const db = this.store.db;
    const mismatches = await this.store.balanceMismatches();
    this.check(mismatches.length === 0, `${when}: balances differ from their ledger: ${JSON.stringify(mismatches)}`);
    const unbalanced = await this.store.unbalancedJournals();
    this.check(unbalanced.length === 0, `${when}: journals whose entries do not sum to zero: ${JSON.stringify(unbalanced)}`);

    // A spend never takes a balance below zero.
    const spends = await db
      .selectFrom('ledger_entries')
      .innerJoin('ledger_journals', 'ledger_journals.id', 'ledger_entries.journal_id')
      .select(['ledger_journals.reference', 'ledger_entries.balance_after', 'ledger_entries.amount'])
      .where('ledger_journals.kind', '=', 'spend')
      .where('ledger_entries.account', 'like', 'player:%')
      .execute();
    for (const s of spends) {
      this.check(
        s.balance_after !== null && s.balance_after >= 0,
        `${when}: spend ${s.reference} of ${-s.amount} left the balance at ${s.balance_after}`,
      );
    }
    const expectedSpends = this.users.reduce((n, u) => n + u.spent, 0);
    this.check(
      -spends.reduce((n, s) => n + s.amount, 0) === expectedSpends,
      `${when}: spend journals total ${-spends.reduce((n, s) => n + s.amount, 0)} coins, the successful spends ${expectedSpends}`,
    );

    // Below zero only after coins were clawed back (a refund or a dispute) from that player.
    const clawbacks = await db
      .selectFrom('ledger_journals')
      .select('user_id')
      .where('kind', 'in', ['refund', 'dispute'])
      .groupBy('user_id')
      .execute();
    const clawed = new Set(clawbacks.map((c) => c.user_id));
    const customers = await db.selectFrom('customers').select(['user_id', 'currency_balance']).execute();
    for (const c of customers) {
      this.check(
        c.currency_balance >= 0 || clawed.has(c.user_id),
        `${when}: ${c.user_id} is at ${c.currency_balance} without any clawback`,
      );
    }

    // Each paid purchase credited exactly once; an unpaid one never.
    const credits = await db
      .selectFrom('ledger_journals')
      .select(['transaction_id', 'reference', (eb) => eb.fn.countAll<number>().as('n')])
      .where('kind', '=', 'purchase')
      .groupBy(['transaction_id', 'reference'])
      .execute();
    const purchases = await db.selectFrom('purchases').select(['transaction_id', 'status', 'payment_intent_id', 'coins']).execute();
    for (const row of purchases) {
      const found = credits.filter((c) => c.transaction_id === row.transaction_id);
      const count = found.reduce((n, c) => n + Number(c.n), 0);
      const expected = PAID.has(row.status) ? 1 : 0;
      this.check(
        count === expected,
        `${when}: purchase ${row.transaction_id} (${row.status}) has ${count} purchase journals, expected ${expected}`,
      );
      if (expected === 1) {
        this.check(
          found[0]?.reference === row.payment_intent_id,
          `${when}: purchase ${row.transaction_id} credited under ${found[0]?.reference}`,
        );
      }
    }
    this.check(
      credits.every((c) => purchases.some((p) => p.transaction_id === c.transaction_id)),
      `${when}: a purchase journal names no purchase`,
    );

    // Every event delivered is recorded once.
    const recorded = await db.selectFrom('webhook_events').select('event_id').execute();
    const delivered = this.events.filter((e) => e.delivered).map((e) => e.id);
    this.check(
      recorded.length === delivered.length &&
        new Set(recorded.map((r) => r.event_id)).size === recorded.length &&
        delivered.every((id) => recorded.some((r) => r.event_id === id)),
      `${when}: webhook_events holds ${recorded.length} events, ${delivered.length} distinct events were delivered`,
    );

    // Each balance is the sum of the entries GET /stripe/ledger shows, and each entry's balance_after adds up.
    for (const u of this.users) {
      const entries: { amount: number; balance_after: number }[] = [];
      let balance: unknown;
      let cursor: string | undefined;
      do {
        const page = this.expectStatus(
          await get(this.app, `/stripe/ledger/${u.id}?limit=200${cursor ? `&cursor=${cursor}` : ''}`),
          200,
          undefined,
          `${when}: GET ledger of ${u.label}`,
        );
        balance ??= page['currency_balance'];
        const list = page['entries'];
        this.check(Array.isArray(list), `${when}: ledger page without entries`);
        for (const e of list) {
          this.check(isJson(e), `${when}: a ledger entry is not an object`);
          entries.push({ amount: num(e, 'amount'), balance_after: num(e, 'balance_after') });
        }
        const next = page['next_cursor'];
        cursor = typeof next === 'string' ? next : undefined;
      } while (cursor);
      const sum = entries.reduce((n, e) => n + e.amount, 0);
      this.check(balance === sum, `${when}: ${u.label}'s balance is ${String(balance)}, its ledger entries sum to ${sum}`);
      this.check(balance === this.balanceOf(u), `${when}: ${u.label}'s balance is ${String(balance)}, the model says ${this.balanceOf(u)}`);
      let running = 0;
      for (const e of [...entries].reverse()) {
        running += e.amount;
        this.check(
          e.balance_after === running,
          `${when}: ${u.label}'s ledger entry says balance_after ${e.balance_after}, the entries before it sum to ${running}`,
        );
      }
    }
  }

  /**
   * Once every event has been delivered, coinshop agrees with the gateway, and each player's balance
   * is what their payments, refunds, disputes and spends come to — computed from the gateway's side
   * alone, whatever order coinshop learnt things in.
   */
  async checkAgainstGateway(when: string) {
    const coins = new Map<ModelUser, number>(this.users.map((u) => [u, -u.spent]));
    for (const p of this.purchases) {
      const outcome = await this.gateway.retrievePayment(p.pi);
      const gw: GatewayStatus =
        outcome.status === 'succeeded' ? 'succeeded' : outcome.status === 'requires_action' ? 'requires_action' : 'failed';
      this.check(gw === p.gw, `${when}: the gateway says ${p.label} is ${outcome.status}, the test expected ${p.gw}`);
      const dispute = p.dispute ? p.dispute.state : 'none';
      coins.set(p.user, (coins.get(p.user) ?? 0) + Run.net(p.coins, p.cents, gw === 'succeeded', p.gwRefunded, dispute));
      // The status is a history (a refund before the dispute leaves `refunded`), the figures are not.
      const refundStatus = p.gwRefunded === p.cents ? 'refunded' : p.gwRefunded > 0 ? 'partially_refunded' : 'succeeded';
      const disputeStatus = dispute === 'none' ? undefined : dispute === 'open' ? 'disputed' : `dispute_${dispute}`;
      const allowed: string[] =
        gw !== 'succeeded'
          ? [gw]
          : disputeStatus === undefined
            ? [refundStatus]
            : p.gwRefunded === p.cents
              ? [disputeStatus, 'refunded']
              : [disputeStatus];
      const row = await this.store.findPurchase(p.txn);
      this.check(
        row !== undefined && allowed.includes(row.status) && row.refunded_cents === p.gwRefunded,
        `${when}: ${p.label} is ${row?.status} with ${row?.refunded_cents} cents refunded; at the gateway it is ${gw}, ` +
          `${p.gwRefunded}/${p.cents} cents refunded, dispute ${dispute}: expected ${allowed.join(' or ')} with ${p.gwRefunded}`,
      );
    }
    for (const [u, expected] of coins) {
      const row = await this.store.findCustomer(u.id);
      this.check(
        row?.currency_balance === expected,
        `${when}: ${u.label} has ${row?.currency_balance} coins; their payments, refunds, disputes and spends at the gateway come to ${expected}`,
      );
    }
  }

  async finish(drain: number[]) {
    await this.checkLedger('after the actions');
    // Deliver what was held back: first in the generated order, then the rest newest first.
    const held = () => this.events.filter((e) => !e.delivered);
    for (const n of drain) {
      const pending = held();
      const event = pending[n % Math.max(1, pending.length)];
      if (!event) break;
      this.trace.push(`drain ${event.label}`);
      await this.deliver(event, 'late');
      await this.compareWithModel(`draining ${event.label}`);
    }
    for (const event of held().reverse()) {
      this.trace.push(`drain ${event.label}`);
      await this.deliver(event, 'late');
      await this.compareWithModel(`draining ${event.label}`);
    }
    await this.checkLedger('after every event was delivered');
    await this.checkAgainstGateway('after every event was delivered');
    // Stripe redelivers: every event once more, oldest last. Nothing may change.
    for (const event of [...this.events].reverse()) await this.deliver(event, 'final redelivery');
    await this.compareWithModel('after redelivering every event');
    await this.checkLedger('after redelivering every event');
  }
}

async function runScenario(s: Scenario) {
  const app = await buildApp({ config: await testConfig() });
  let run: Run | undefined;
  try {
    await app.ready();
    run = new Run(app);
    await run.setup(s.cards);
    for (const [i, a] of s.actions.entries()) {
      await run.step(a, i);
      await run.compareWithModel(`after step #${i} (${a.kind})`);
    }
    await run.finish(s.drain);
    stats.runs++;
  } catch (err) {
    if (err instanceof Violation && run) {
      err.message = `${err.message}\n  trace (model labels: u=user, P=purchase, D=dispute, E=webhook event):\n    ${run.trace.join('\n    ')}`;
    }
    throw err;
  } finally {
    await app.close();
    await dropFreshSchema(app.config.DATABASE_URL);
  }
}

/**
 * The counterexample the property found (shrunk), kept as a fixed case so it fails every time rather
 * than on a lucky seed. A refund made outside coinshop (Stripe Dashboard) whose charge.refunded event
 * arrives after the dispute events: the dispute takes the coins, the refund then takes none ("after
 * a dispute took the coins, refunds take none"), and winning the dispute gives all of them back —
 * the player keeps 100 coins for a payment refunded in full. Delivered in Stripe's order (refund
 * first) the same events end at 0 coins, so the result depends on delivery order, which
 * src/services/webhooks.ts promises it does not.
 */
const REFUND_LEARNT_AFTER_WON_DISPUTE: Scenario = {
  cards: ['pm_card_visa', 'pm_card_visa'],
  actions: [
    { kind: 'purchase', user: 0, pkg: 'package_1', key: null, hold: false },
    { kind: 'dashboardRefund', pick: 0, any: false, cents: null, hold: true },
    { kind: 'dispute', pick: 0, any: false, hold: false },
    { kind: 'closeDispute', pick: 0, any: false, outcome: 'won', hold: false },
  ],
  drain: [],
};

t.test('counterexample: a refund learnt after a won dispute is never taken back', async (t) => {
  await runScenario(REFUND_LEARNT_AFTER_WON_DISPUTE);
  t.pass('the refunded coins were taken back');
});

t.test('random interleavings keep every balance equal to its ledger and credit every paid purchase once', async (t) => {
  const numRuns = Number(process.env['FC_NUM_RUNS'] ?? 100);
  const seed = process.env['FC_SEED'] === undefined ? undefined : Number(process.env['FC_SEED']);
  const path = process.env['FC_PATH'];
  const started = Date.now();
  // The fixed cases above count runs too.
  const runsBefore = stats.runs;
  await fc.assert(fc.asyncProperty(scenario, runScenario), {
    numRuns,
    // A failure is reported within five minutes, shrunk as far as it got, rather than shrunk for longer
    // than tap waits (a run stopped before numRuns fails the run count below).
    interruptAfterTimeLimit: 300_000,
    ...(seed !== undefined ? { seed } : {}),
    ...(path !== undefined ? { path } : {}),
  });
  stats.ms = Date.now() - started;
  t.comment(`fast-check: ${JSON.stringify(stats)}`);
  t.ok(stats.runs - runsBefore >= numRuns, `${stats.runs - runsBefore} runs, ${stats.actions} actions`);
  // The generator must reach every path it is meant to, or a green run proves little. (A lookup that
  // settles a 3-D Secure purchase whose webhook is still held is too rare to require in 100 runs.)
  if (path === undefined && numRuns >= 100) {
    for (const name of [
      'purchasesPaid',
      'purchases3ds',
      'purchasesDeclined',
      'replays',
      'keyReused422',
      'spends',
      'insufficient',
      'refunds',
      'partialRefunds',
      'refundRefused',
      'dashboardRefunds',
      'authenticated',
      'authFailed',
      'disputes',
      'disputesWon',
      'disputesLost',
      'heldEvents',
      'outOfOrder',
      'duplicates',
      'negativeBalances',
    ] as const) {
      t.ok(stats[name] > 0, `the generator reached ${name} (${stats[name]})`);
    }
  }
});
