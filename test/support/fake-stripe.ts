/**
 * A local, in-memory server that speaks enough of Stripe's v1 wire protocol for the real `stripe`
 * SDK to run against it unchanged: form-encoded bodies with bracket notation, Bearer test keys,
 * Stripe's JSON objects and error envelopes, and Stripe's idempotency rules (replay, parameter
 * mismatch, key in use). PaymentIntent outcomes follow Stripe's documented test PaymentMethods.
 *
 * Beyond the API it plays the parts Stripe plays outside a request: the browser's 3-D Secure step
 * (`authenticate`), a cardholder's bank days later (`dispute`, `closeDispute`), and webhook delivery
 * (`events`, each a snapshot of its object, and `webhookRequest`, which signs one as Stripe does).
 *
 * Used by tests and by the load benchmark: every lookup is a Map access, latency is one setTimeout.
 */
import http from 'node:http';
import { createHmac, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { TEST_CARDS, type TestCardBehaviour } from '../../src/gateway/test-cards.js';

export interface FakeStripeOptions {
  /** Added delay before every response, in milliseconds. */
  latencyMs?: number;
}

export interface RecordedRequest {
  method: string;
  /** The path without its query string, e.g. `/v1/payment_intents`. */
  path: string;
  idempotencyKey: string | undefined;
  /** The form body (POST) or query (GET), parsed into nested objects; `x[0]` keys become arrays. */
  body: Record<string, unknown>;
}

export interface StoredCustomer {
  id: string;
  object: 'customer';
  address: null;
  balance: number;
  created: number;
  currency: null;
  default_source: null;
  delinquent: boolean;
  description: string | null;
  discount: null;
  email: string | null;
  invoice_prefix: string;
  invoice_settings: {
    custom_fields: null;
    default_payment_method: string | null;
    footer: null;
    rendering_options: null;
  };
  livemode: false;
  metadata: Record<string, string>;
  name: string | null;
  phone: string | null;
  preferred_locales: string[];
  shipping: null;
  tax_exempt: 'none';
  test_clock: null;
}

export interface StoredPaymentMethod {
  id: string;
  object: 'payment_method';
  billing_details: { address: null; email: null; name: null; phone: null };
  card: {
    brand: string;
    country: string;
    exp_month: number;
    exp_year: number;
    funding: string;
    last4: string;
  };
  created: number;
  customer: string | null;
  livemode: false;
  metadata: Record<string, string>;
  type: 'card';
}

export interface StripeErrorBody {
  type: string;
  message: string;
  code?: string;
  decline_code?: string;
  param?: string;
  charge?: string;
  doc_url?: string;
  payment_intent?: StoredPaymentIntent;
  payment_method?: StoredPaymentMethod;
}

export type PaymentIntentStatus =
  'requires_payment_method' | 'requires_confirmation' | 'requires_action' | 'requires_capture' | 'processing' | 'succeeded';

export interface StoredPaymentIntent {
  id: string;
  object: 'payment_intent';
  amount: number;
  amount_capturable: number;
  amount_received: number;
  automatic_payment_methods: { enabled: boolean; allow_redirects?: 'always' | 'never' } | null;
  canceled_at: null;
  cancellation_reason: null;
  capture_method: 'automatic' | 'automatic_async' | 'manual';
  client_secret: string;
  confirmation_method: 'automatic' | 'manual';
  created: number;
  currency: string;
  customer: string | null;
  description: string | null;
  last_payment_error: StripeErrorBody | null;
  latest_charge: string | null;
  livemode: false;
  metadata: Record<string, string>;
  next_action: { type: 'use_stripe_sdk'; use_stripe_sdk: Record<string, string> } | null;
  payment_method: string | null;
  payment_method_types: string[];
  setup_future_usage: null;
  status: PaymentIntentStatus;
}

export interface StoredCharge {
  id: string;
  object: 'charge';
  amount: number;
  amount_captured: number;
  amount_refunded: number;
  captured: boolean;
  created: number;
  currency: string;
  customer: string | null;
  description: string | null;
  disputed: boolean;
  failure_code: null;
  failure_message: null;
  livemode: false;
  metadata: Record<string, string>;
  paid: boolean;
  payment_intent: string;
  payment_method: string | null;
  refunded: boolean;
  status: 'succeeded';
}

export type RefundReason = 'duplicate' | 'fraudulent' | 'requested_by_customer';

export interface StoredRefund {
  id: string;
  object: 'refund';
  amount: number;
  charge: string;
  created: number;
  currency: string;
  /** Why a refund failed (set with `status: 'failed'`). */
  failure_reason: 'lost_or_stolen_card' | 'expired_or_canceled_card' | 'unknown' | null;
  metadata: Record<string, string>;
  payment_intent: string;
  reason: RefundReason | null;
  /** `succeeded` when made; `failed` later for a card that behaves like `pm_card_refundFail` (see failRefund). */
  status: 'succeeded' | 'failed';
}

export interface StoredDispute {
  id: string;
  object: 'dispute';
  amount: number;
  charge: string;
  created: number;
  currency: string;
  /**
   * False for card chargebacks: the charge cannot be refunded while the dispute is open or lost.
   * True for inquiries, which move no money.
   */
  is_charge_refundable: boolean;
  livemode: false;
  metadata: Record<string, string>;
  payment_intent: string;
  reason: 'fraudulent';
  /** Inquiries (`warning_*`) move no money; chargebacks (the others) do. */
  status: DisputeStatus;
}

export type DisputeStatus = 'warning_needs_response' | 'warning_closed' | 'needs_response' | 'won' | 'lost';

export interface StoredCheckoutSession {
  id: string;
  object: 'checkout.session';
  amount_subtotal: number;
  amount_total: number;
  cancel_url: string | null;
  client_reference_id: string | null;
  created: number;
  currency: string;
  customer: string | null;
  expires_at: number;
  livemode: false;
  metadata: Record<string, string>;
  mode: 'payment';
  payment_intent: string | null;
  payment_status: 'paid' | 'unpaid';
  status: 'open' | 'complete' | 'expired';
  success_url: string | null;
  url: string | null;
  /** Not a Stripe field: what was asked for, kept so tests can check it (line item, PaymentIntent data). */
  line_items_requested: { name: string; description: string | null; unit_amount: number; currency: string; quantity: number }[];
  payment_intent_data_requested: { metadata: Record<string, string>; description: string | null };
}

interface EventEnvelope<T extends string, O> {
  id: string;
  object: 'event';
  api_version: string;
  created: number;
  /** A deep copy of the object as it was when the event happened. */
  data: { object: O };
  livemode: false;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  type: T;
}

/** One union member per event type, so `Extract<StripeEventObject, { type: 'charge.refunded' }>` works. */
type EventsOf<T extends string, O> = T extends string ? EventEnvelope<T, O> : never;

/** A Stripe Event; narrow on `type` to get the type of `data.object`. */
export type StripeEventObject =
  | EventsOf<'payment_intent.succeeded' | 'payment_intent.payment_failed' | 'payment_intent.requires_action', StoredPaymentIntent>
  | EventsOf<'charge.succeeded' | 'charge.refunded', StoredCharge>
  | EventsOf<'refund.created' | 'charge.refund.updated' | 'refund.failed', StoredRefund>
  | EventsOf<'charge.dispute.created' | 'charge.dispute.closed', StoredDispute>
  | EventsOf<
      | 'checkout.session.completed'
      | 'checkout.session.async_payment_succeeded'
      | 'checkout.session.async_payment_failed'
      | 'checkout.session.expired',
      StoredCheckoutSession
    >;

export type StripeEventType = StripeEventObject['type'];

/** What Stripe POSTs to a webhook endpoint for one event. */
export interface WebhookRequest {
  payload: string;
  headers: { 'stripe-signature': string; 'content-type': 'application/json' };
}

export interface FakeStripe {
  /** Base URL, e.g. `http://127.0.0.1:54321`. */
  url: string;
  /** The port, for `new Stripe(key, { host: '127.0.0.1', port, protocol: 'http' })`. */
  port: number;
  /** Every request received, in arrival order (including rejected and failed ones). */
  requests: RecordedRequest[];
  /** Every PaymentIntent created, by id (declined ones included). */
  paymentIntents: Map<string, StoredPaymentIntent>;
  customers: Map<string, StoredCustomer>;
  /** PaymentMethods made by createPaymentMethod() or by attaching a test token. */
  paymentMethods: Map<string, StoredPaymentMethod>;
  /** The Charge of every PaymentIntent that succeeded (declines and uncaptured payments store none). */
  charges: Map<string, StoredCharge>;
  refunds: Map<string, StoredRefund>;
  disputes: Map<string, StoredDispute>;
  checkoutSessions: Map<string, StoredCheckoutSession>;
  /**
   * The customer pays an open Checkout Session on Stripe's hosted page, as the browser would: with a
   * card that behaves like `behavesLike` (`pm_card_visa` by default; 3-D Secure passes on the page),
   * the session completes `paid` and Stripe sends `charge.succeeded`, `payment_intent.succeeded` and
   * `checkout.session.completed`. A declining card throws (the page shows the decline; the session
   * stays open). With `delayed`, a delayed payment method (SEPA Debit, Konbini…): the session
   * completes `unpaid` with a `processing` PaymentIntent; settleDelayedCheckout decides it.
   */
  payCheckoutSession(sessionId: string, options?: { behavesLike?: string; delayed?: boolean }): StoredCheckoutSession;
  /** The bank decides a delayed Checkout payment: `checkout.session.async_payment_succeeded` or `…_failed`. */
  settleDelayedCheckout(sessionId: string, outcome: 'succeed' | 'fail'): StoredCheckoutSession;
  /** Time passes an open session's `expires_at`: it expires (`checkout.session.expired`). */
  lapseCheckoutSession(sessionId: string): StoredCheckoutSession;
  /** Every event, in the order it happened; each `data.object` is a snapshot. */
  events: StripeEventObject[];
  /**
   * Completes the 3-D Secure step of a PaymentIntent in `requires_action`, as Stripe.js
   * `handleNextAction` does in the browser: `succeed` charges the card (`succeeded`, or
   * `requires_capture` under manual capture); `fail` returns it to `requires_payment_method` with a
   * `payment_intent_authentication_failure` error. Throws if the PaymentIntent is unknown or not in
   * `requires_action`.
   */
  authenticate(paymentIntentId: string, outcome: 'succeed' | 'fail'): StoredPaymentIntent;
  /**
   * The next `count` PaymentIntents confirmed with a card that would be charged end in `processing`
   * instead, as a payment the card network has not confirmed yet does; `finishProcessing` settles one.
   */
  holdProcessing(count: number): void;
  /** The network confirms (`succeed`: charged) or refuses (`fail`: declined) a `processing` PaymentIntent. */
  finishProcessing(paymentIntentId: string, outcome: 'succeed' | 'fail'): StoredPaymentIntent;
  /**
   * The customer pays a PaymentIntent that failed (`requires_payment_method`) with a new attempt in
   * the browser, as Stripe.js does after a failed 3-D Secure: the card is charged.
   */
  payAfterFailure(paymentIntentId: string): StoredPaymentIntent;
  /**
   * The cardholder's bank disputes a succeeded PaymentIntent's charge: a chargeback
   * (`needs_response`), or with `inquiry` a retrieval request (`warning_needs_response`) that moves no
   * money. A charge can meet several disputes in its life, one at a time: throws if it has no charge
   * or one whose dispute is still open.
   */
  dispute(paymentIntentId: string, options?: { inquiry?: boolean }): StoredDispute;
  /**
   * Stripe decides an open dispute: a chargeback is `won` or `lost`, an inquiry `warning_closed`.
   * Throws if the dispute is unknown, already closed, or the outcome is not one for its kind.
   */
  closeDispute(disputeId: string, outcome: 'won' | 'lost' | 'warning_closed'): StoredDispute;
  /** Same as the exported `webhookRequest`. */
  webhookRequest(event: StripeEventObject, secret: string, options?: { timestamp?: number }): WebhookRequest;
  /**
   * Registers a card PaymentMethod as Stripe.js would create it and returns its `pm_…` id. It
   * succeeds when charged, or behaves like the given Stripe test token (e.g. `pm_card_chargeDeclined`).
   */
  createPaymentMethod(behavesLike?: string): string;
  /**
   * The next `count` requests get a Stripe error with this status (500: api_error) instead of being
   * run: any request, or only those whose method and path match `only` (e.g. `{ method: 'GET', path:
   * /^\/v1\/charges\// }`, a follow-up read after the call before it succeeded).
   */
  failNext(count: number, status?: number, only?: { method?: string; path?: RegExp }): void;
  /**
   * The next `count` requests (matching `only`) are carried out — a charge is made, a refund too —
   * but their answer is lost: the connection is dropped instead, as when the network fails or the
   * caller dies after Stripe acted.
   */
  loseNextAnswer(count: number, only?: { method?: string; path?: RegExp }): void;
  /**
   * A refund of a card that behaves like `pm_card_refundFail` fails after it succeeded, as Stripe's
   * test card does some time later: the refund becomes `failed` (`failure_reason`), its amount is no
   * longer counted in the charge's `amount_refunded`, and Stripe sends `charge.refund.updated` and
   * `refund.failed`. Throws for any other refund, or one not `succeeded`.
   */
  failRefund(refundId: string): StoredRefund;
  setLatency(ms: number): void;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Form decoding

type FormValue = string | FormValue[] | FormObject;
interface FormObject {
  [key: string]: FormValue;
}

const KEY_RE = /^([^[\]]+)((?:\[[^\]]*\])*)$/;

function isFormObject(v: FormValue | undefined): v is FormObject {
  return typeof v === 'object' && !Array.isArray(v);
}

/** `a[b][0]=x` → `{ a: { b: ['x'] } }`, the way Stripe (Rack) reads the SDK's encoding. */
function parseForm(params: URLSearchParams): FormObject {
  const root: FormObject = {};
  for (const [key, value] of params) {
    const m = KEY_RE.exec(key);
    const segments = m && m[2] ? [m[1] ?? key, ...m[2].slice(1, -1).split('][')] : [key];
    let node: FormObject | undefined = root;
    for (let i = 0; node && i < segments.length; i++) {
      let seg = segments[i] ?? '';
      if (seg === '') seg = String(Object.keys(node).length); // `a[]=x` appends
      if (seg === '__proto__') node = undefined;
      else if (i === segments.length - 1) node[seg] = value;
      else {
        const child: FormValue | undefined = Object.hasOwn(node, seg) ? node[seg] : undefined;
        if (isFormObject(child)) node = child;
        else {
          const fresh: FormObject = {};
          node[seg] = fresh;
          node = fresh;
        }
      }
    }
  }
  return arrayify(root, true) as FormObject;
}

/** Objects keyed `0..n-1` become arrays, except the value of a `metadata` key. */
function arrayify(obj: FormObject, keepObject: boolean): FormValue {
  const keys = Object.keys(obj);
  for (const k of keys) {
    const v = obj[k];
    if (isFormObject(v)) obj[k] = arrayify(v, k === 'metadata');
  }
  if (keepObject || keys.length === 0) return obj;
  for (let i = 0; i < keys.length; i++) if (keys[i] !== String(i)) return obj;
  return keys.map((k) => obj[k] as FormValue);
}

/** Idempotency compares parameters, not their order on the wire. */
function fingerprint(method: string, path: string, params: URLSearchParams): string {
  const pairs: string[] = [];
  for (const [k, v] of params) pairs.push(`${k}=${v}`);
  pairs.sort();
  return `${method} ${path}?${pairs.join('&')}`;
}

// ---------------------------------------------------------------------------------------------
// Errors and parameter readers

/** A Stripe error response. `store`: whether an idempotency key keeps it for replay. */
class StripeFailure extends Error {
  constructor(
    readonly status: number,
    readonly body: StripeErrorBody,
    readonly store: boolean,
  ) {
    super(body.message);
  }
}

function invalid(message: string, param?: string, code?: string): StripeFailure {
  const body: StripeErrorBody = { type: 'invalid_request_error', message };
  if (code !== undefined) body.code = code;
  if (param !== undefined) body.param = param;
  // Parameter validation happens before the endpoint runs: Stripe saves no idempotent result.
  return new StripeFailure(400, body, false);
}

function missingResource(status: number, what: string, id: string, param: string): StripeFailure {
  return new StripeFailure(
    status,
    {
      type: 'invalid_request_error',
      code: 'resource_missing',
      doc_url: 'https://stripe.com/docs/error-codes/resource-missing',
      message: `No such ${what}: '${id}'`,
      param,
    },
    true,
  );
}

function checkKnownParams(body: FormObject, allowed: ReadonlySet<string>, prefix = ''): void {
  for (const key of Object.keys(body)) {
    if (!allowed.has(key)) {
      const param = prefix ? `${prefix}[${key}]` : key;
      throw invalid(`Received unknown parameter: ${param}`, param, 'parameter_unknown');
    }
  }
}

function readString(body: FormObject, name: string, param = name): string | undefined {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw invalid(`Invalid string: ${JSON.stringify(v)}`, param);
  return v;
}

/** A string where `''` means "unset", as Stripe treats empty form values. */
function readOptionalString(body: FormObject, name: string, param = name): string | null | undefined {
  const v = readString(body, name, param);
  return v === '' ? null : v;
}

function readBoolean(body: FormObject, name: string, param = name): boolean | undefined {
  const v = readString(body, name, param);
  if (v === undefined) return undefined;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw invalid(`Invalid boolean: ${v}`, param);
}

function readInteger(body: FormObject, name: string): number | undefined {
  const v = readString(body, name);
  if (v === undefined) return undefined;
  if (!/^-?\d{1,15}$/.test(v)) throw invalid(`Invalid integer: ${v}`, name, 'parameter_invalid_integer');
  return Number(v);
}

function required<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw invalid(`Missing required param: ${name}.`, name, 'parameter_missing');
  return value;
}

/** Stripe merges metadata: new keys are set, keys sent empty are removed, `metadata=` clears all. */
function readMetadata(body: FormObject, existing: Record<string, string> = {}): Record<string, string> {
  const v = body.metadata;
  if (v === undefined) return existing;
  if (v === '') return {};
  if (!isFormObject(v)) throw invalid('Invalid hash', 'metadata');
  const merged: Record<string, string> = { ...existing };
  for (const [k, value] of Object.entries(v)) {
    const param = `metadata[${k}]`;
    if (typeof value !== 'string') throw invalid(`Invalid string: ${JSON.stringify(value)}`, param);
    if (k.length > 40) throw invalid('Metadata keys can have up to 40 characters.', param);
    if (value.length > 500) throw invalid('Metadata values can have up to 500 characters.', param);
    if (value === '') delete merged[k];
    else merged[k] = value;
  }
  if (Object.keys(merged).length > 50) throw invalid('Metadata can have up to 50 keys.', 'metadata');
  return merged;
}

const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

function readEmail(body: FormObject): string | null | undefined {
  const email = readOptionalString(body, 'email');
  if (email && (email.length > 512 || !EMAIL_RE.test(email))) {
    throw invalid(`Invalid email address: ${email}`, 'email', 'email_invalid');
  }
  return email;
}

// ---------------------------------------------------------------------------------------------
// Known parameters per endpoint (Stripe answers 400 parameter_unknown to anything else)

const EXPAND_ONLY = new Set(['expand']);

/** Whether the request asks for `field` expanded (`expand[]=field`, which stripe-node sends as `expand[0]=field`). */
function expands(body: FormObject, field: string): boolean {
  const expand = body.expand;
  return Array.isArray(expand) ? expand.includes(field) : expand === field;
}
const RETRIEVE_INTENT_PARAMS = new Set(['client_secret', 'expand']);
const CUSTOMER_PARAMS = new Set([
  'address',
  'balance',
  'business_name',
  'cash_balance',
  'coupon',
  'description',
  'email',
  'expand',
  'individual_name',
  'invoice_prefix',
  'invoice_settings',
  'metadata',
  'name',
  'next_invoice_sequence',
  'payment_method',
  'phone',
  'preferred_locales',
  'promotion_code',
  'shipping',
  'source',
  'tax',
  'tax_exempt',
  'tax_id_data',
  'test_clock',
  'validate',
]);
const CUSTOMER_UPDATE_PARAMS = new Set(
  [...CUSTOMER_PARAMS, 'default_source'].filter((p) => p !== 'payment_method' && p !== 'tax_id_data' && p !== 'test_clock'),
);
const INVOICE_SETTINGS_PARAMS = new Set(['custom_fields', 'default_payment_method', 'footer', 'rendering_options']);
const ATTACH_PARAMS = new Set(['customer', 'expand']);
const PAYMENT_INTENT_PARAMS = new Set([
  'amount',
  'amount_details',
  'application_fee_amount',
  'automatic_payment_methods',
  'capture_method',
  'confirm',
  'confirmation_method',
  'confirmation_token',
  'currency',
  'customer',
  'description',
  'error_on_requires_action',
  'excluded_payment_method_types',
  'expand',
  'hooks',
  'mandate',
  'mandate_data',
  'metadata',
  'off_session',
  'on_behalf_of',
  'payment_details',
  'payment_method',
  'payment_method_configuration',
  'payment_method_data',
  'payment_method_options',
  'payment_method_types',
  'radar_options',
  'receipt_email',
  'return_url',
  'setup_future_usage',
  'shipping',
  'statement_descriptor',
  'statement_descriptor_suffix',
  'transfer_data',
  'transfer_group',
  'use_stripe_sdk',
]);
const AUTOMATIC_PM_PARAMS = new Set(['enabled', 'allow_redirects']);
const CHECKOUT_SESSION_PARAMS = new Set([
  'adaptive_pricing',
  'after_expiration',
  'allow_promotion_codes',
  'automatic_tax',
  'billing_address_collection',
  'cancel_url',
  'client_reference_id',
  'consent_collection',
  'currency',
  'custom_fields',
  'custom_text',
  'customer',
  'customer_creation',
  'customer_email',
  'customer_update',
  'discounts',
  'expand',
  'expires_at',
  'invoice_creation',
  'line_items',
  'locale',
  'metadata',
  'mode',
  'payment_intent_data',
  'payment_method_configuration',
  'payment_method_options',
  'payment_method_types',
  'phone_number_collection',
  'redirect_on_completion',
  'return_url',
  'shipping_address_collection',
  'shipping_options',
  'submit_type',
  'success_url',
  'tax_id_collection',
  'ui_mode',
]);
const LINE_ITEM_PARAMS = new Set(['price', 'price_data', 'quantity', 'adjustable_quantity', 'dynamic_tax_rates', 'tax_rates']);
const PRICE_DATA_PARAMS = new Set([
  'currency',
  'product',
  'product_data',
  'unit_amount',
  'unit_amount_decimal',
  'tax_behavior',
  'recurring',
]);
const PRODUCT_DATA_PARAMS = new Set(['name', 'description', 'images', 'metadata', 'tax_code']);
const CHECKOUT_PI_DATA_PARAMS = new Set([
  'application_fee_amount',
  'capture_method',
  'description',
  'metadata',
  'on_behalf_of',
  'receipt_email',
  'setup_future_usage',
  'shipping',
  'statement_descriptor',
  'statement_descriptor_suffix',
  'transfer_data',
  'transfer_group',
]);
const REFUND_PARAMS = new Set([
  'amount',
  'charge',
  'currency',
  'customer',
  'expand',
  'instructions_email',
  'metadata',
  'origin',
  'payment_intent',
  'reason',
  'refund_application_fee',
  'reverse_transfer',
]);
const REFUND_REASONS: ReadonlySet<string> = new Set<RefundReason>(['duplicate', 'fraudulent', 'requested_by_customer']);

function isRefundReason(reason: string): reason is RefundReason {
  return REFUND_REASONS.has(reason);
}

/** Smallest chargeable amounts for a few currencies (Stripe's table is longer). */
/** A dispute in one of these is decided: the charge may meet another. */
const CLOSED_DISPUTE: ReadonlySet<DisputeStatus> = new Set<DisputeStatus>(['warning_closed', 'won', 'lost']);

const MINIMUM_AMOUNT: Readonly<Record<string, number>> = { usd: 50, eur: 50, gbp: 30, cad: 50, aud: 50, chf: 50 };
const MAXIMUM_AMOUNT = 99_999_999;

// ---------------------------------------------------------------------------------------------
// Cards

const SUCCEED: TestCardBehaviour = { outcome: 'succeed' };
const COUNTRY_TOKEN = /^pm_card_([a-z]{2})$/;

const DECLINE_MESSAGES: Readonly<Record<string, string>> = {
  insufficient_funds: 'Your card has insufficient funds.',
  expired_card: 'Your card has expired.',
  incorrect_cvc: "Your card's security code is incorrect.",
  processing_error: 'An error occurred while processing your card. Try again in a little bit.',
  authentication_required: 'Your card was declined. This transaction requires authentication.',
};

const LAST4: Readonly<Record<string, string>> = {
  pm_card_visa_debit: '5556',
  pm_card_mastercard: '4444',
  pm_card_mastercard_debit: '8210',
  pm_card_mastercard_prepaid: '5100',
  pm_card_amex: '8431',
  pm_card_discover: '1117',
  pm_card_diners: '0004',
  pm_card_jcb: '0000',
  pm_card_unionpay: '0005',
  pm_card_visa_chargeDeclined: '0002',
  pm_card_chargeDeclined: '0002',
  pm_card_visa_chargeDeclinedInsufficientFunds: '9995',
  pm_card_chargeDeclinedInsufficientFunds: '9995',
  pm_card_visa_chargeDeclinedLostCard: '9987',
  pm_card_visa_chargeDeclinedStolenCard: '9979',
  pm_card_chargeDeclinedExpiredCard: '0069',
  pm_card_chargeDeclinedIncorrectCvc: '0127',
  pm_card_chargeDeclinedProcessingError: '0119',
  pm_card_chargeDeclinedFraudulent: '0019',
  pm_card_visa_chargeDeclinedVelocityLimitExceeded: '6975',
  pm_card_chargeCustomerFail: '0341',
  pm_card_authenticationRequired: '3184',
  pm_card_threeDSecure2Required: '3220',
};

function brandOf(token: string): string {
  for (const brand of ['mastercard', 'amex', 'discover', 'diners', 'jcb', 'unionpay']) {
    if (token.includes(brand)) return brand;
  }
  return 'visa';
}

// ---------------------------------------------------------------------------------------------
// Ids

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function randomToken(length: number): string {
  const bytes = randomBytes(length);
  let s = '';
  for (const b of bytes) s += ALPHABET[b % 62];
  return s;
}

function base62(n: number): string {
  let s = '';
  do {
    s = ALPHABET[n % 62] + s;
    n = Math.floor(n / 62);
  } while (n > 0);
  return s;
}

const now = (): number => Math.floor(Date.now() / 1000);

/** `$12.34` for usd, `12.34 eur` otherwise (two-decimal currencies only, like the rest of the fake). */
function formatAmount(amount: number, currency: string): string {
  const units = (amount / 100).toFixed(2);
  return currency === 'usd' ? `$${units}` : `${units} ${currency}`;
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/**
 * The body and headers Stripe would POST to a webhook endpoint for `event`: the event pretty-printed
 * as Stripe sends it, signed with the endpoint's secret (`Stripe-Signature: t=…,v1=<HMAC-SHA256 hex
 * of "t.payload">`). `timestamp` (Unix seconds, default now) lets a test send a stale delivery.
 */
export function webhookRequest(event: StripeEventObject, secret: string, options: { timestamp?: number } = {}): WebhookRequest {
  const payload = JSON.stringify(event, null, 2);
  const timestamp = options.timestamp ?? now();
  const signature = createHmac('sha256', secret).update(`${timestamp}.${payload}`, 'utf8').digest('hex');
  return {
    payload,
    headers: { 'stripe-signature': `t=${timestamp},v1=${signature}`, 'content-type': 'application/json' },
  };
}

// ---------------------------------------------------------------------------------------------
// Server

interface IdempotencyEntry {
  fingerprint: string;
  pending: boolean;
  status: number;
  json: string;
  requestId: string;
}

interface Reply {
  status: number;
  json: string;
  /** Whether an idempotency key keeps this reply for replay. */
  store: boolean;
  headers?: Record<string, string>;
}

const DEFAULT_STRIPE_VERSION = '2026-10-28.endive';
const AUTH_RE = /^Bearer ((?:sk|rk)_test_\S+)$/;

export async function startFakeStripe(options: FakeStripeOptions = {}): Promise<FakeStripe> {
  let latencyMs = Math.max(0, options.latencyMs ?? 0);
  const requests: RecordedRequest[] = [];
  const paymentIntents = new Map<string, StoredPaymentIntent>();
  const customers = new Map<string, StoredCustomer>();
  const paymentMethods = new Map<string, StoredPaymentMethod>();
  const behaviours = new Map<string, TestCardBehaviour>();
  const charges = new Map<string, StoredCharge>();
  const refunds = new Map<string, StoredRefund>();
  const disputes = new Map<string, StoredDispute>();
  const disputeOfCharge = new Map<string, StoredDispute>();
  const checkoutSessions = new Map<string, StoredCheckoutSession>();
  const events: StripeEventObject[] = [];
  const eventsById = new Map<string, StripeEventObject>();
  const idempotency = new Map<string, IdempotencyEntry>();
  let heldInProcessing = 0;
  const losses: { remaining: number; method?: string | undefined; path?: RegExp | undefined }[] = [];
  const failures: { remaining: number; status: number; method?: string | undefined; path?: RegExp | undefined }[] = [];
  /** PaymentMethods made from `pm_card_refundFail`: their refunds fail later (failRefund). */
  const refundFailCards = new Set<string>(['pm_card_refundFail']);
  const timers = new Set<NodeJS.Timeout>();

  const instance = randomToken(8);
  let counter = 0;
  const newId = (prefix: string): string => `${prefix}${instance}${base62(++counter).padStart(10, '0')}`;

  function makePaymentMethod(behaviour: TestCardBehaviour, likeToken: string, customer: string | null): StoredPaymentMethod {
    const country = COUNTRY_TOKEN.exec(likeToken)?.[1]?.toUpperCase() ?? 'US';
    const pm: StoredPaymentMethod = {
      id: newId('pm_1'),
      object: 'payment_method',
      billing_details: { address: null, email: null, name: null, phone: null },
      card: {
        brand: brandOf(likeToken),
        country,
        exp_month: 12,
        exp_year: new Date().getFullYear() + 3,
        funding: likeToken.includes('debit') ? 'debit' : likeToken.includes('prepaid') ? 'prepaid' : 'credit',
        last4: LAST4[likeToken] ?? '4242',
      },
      created: now(),
      customer,
      livemode: false,
      metadata: {},
      type: 'card',
    };
    paymentMethods.set(pm.id, pm);
    behaviours.set(pm.id, behaviour);
    if (likeToken === 'pm_card_refundFail') refundFailCards.add(pm.id);
    return pm;
  }

  /** What charging `id` does: a stored PaymentMethod, a Stripe test token, or unknown. */
  function behaviourOf(id: string): TestCardBehaviour | undefined {
    const stored = behaviours.get(id);
    if (stored) return stored;
    if (Object.hasOwn(TEST_CARDS, id)) return TEST_CARDS[id];
    return COUNTRY_TOKEN.test(id) ? SUCCEED : undefined;
  }

  /** Records an event carrying a deep copy of `object`, so later changes do not reach it. */
  function snapshotEvent<T extends StripeEventType, O>(type: T, object: O): EventEnvelope<T, O> {
    return {
      id: newId('evt_3'),
      object: 'event',
      api_version: DEFAULT_STRIPE_VERSION,
      created: now(),
      data: { object: structuredClone(object) },
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type,
    };
  }

  function record(event: StripeEventObject): void {
    events.push(event);
    eventsById.set(event.id, event);
  }

  /** The card was charged: a Charge, unless capture is manual (then the PaymentIntent waits for capture). */
  function chargeCard(intent: StoredPaymentIntent): void {
    intent.next_action = null;
    intent.last_payment_error = null;
    const chargeId = newId('ch_3');
    intent.latest_charge = chargeId;
    if (intent.capture_method === 'manual') {
      intent.status = 'requires_capture';
      intent.amount_capturable = intent.amount;
      return;
    }
    intent.status = 'succeeded';
    intent.amount_received = intent.amount;
    const charge: StoredCharge = {
      id: chargeId,
      object: 'charge',
      amount: intent.amount,
      amount_captured: intent.amount,
      amount_refunded: 0,
      captured: true,
      created: now(),
      currency: intent.currency,
      customer: intent.customer,
      description: intent.description,
      disputed: false,
      failure_code: null,
      failure_message: null,
      livemode: false,
      metadata: { ...intent.metadata },
      paid: true,
      payment_intent: intent.id,
      payment_method: intent.payment_method,
      refunded: false,
      status: 'succeeded',
    };
    charges.set(chargeId, charge);
    record(snapshotEvent('charge.succeeded', charge));
    record(snapshotEvent('payment_intent.succeeded', intent));
  }

  function customerOr404(id: string, status: number, param: string): StoredCustomer {
    const customer = customers.get(id);
    if (!customer) throw missingResource(status, 'customer', id, param);
    return customer;
  }

  // --- endpoints ------------------------------------------------------------------------------

  function createCustomer(body: FormObject): StoredCustomer {
    checkKnownParams(body, CUSTOMER_PARAMS);
    const email = readEmail(body) ?? null;
    const name = readOptionalString(body, 'name') ?? null;
    const description = readOptionalString(body, 'description') ?? null;
    const phone = readOptionalString(body, 'phone') ?? null;
    const metadata = readMetadata(body);
    const id = newId('cus_');
    const customer: StoredCustomer = {
      id,
      object: 'customer',
      address: null,
      balance: 0,
      created: now(),
      currency: null,
      default_source: null,
      delinquent: false,
      description,
      discount: null,
      email,
      invoice_prefix: id.slice(-8).toUpperCase(),
      invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
      livemode: false,
      metadata,
      name,
      phone,
      preferred_locales: [],
      shipping: null,
      tax_exempt: 'none',
      test_clock: null,
    };
    const pmId = readOptionalString(body, 'payment_method');
    if (pmId) attach(pmId, customer, 400);
    customers.set(id, customer);
    return customer;
  }

  function updateCustomer(id: string, body: FormObject): StoredCustomer {
    checkKnownParams(body, CUSTOMER_UPDATE_PARAMS);
    const email = readEmail(body);
    const name = readOptionalString(body, 'name');
    const description = readOptionalString(body, 'description');
    const phone = readOptionalString(body, 'phone');
    let defaultPm: string | null | undefined;
    const settings = body.invoice_settings;
    if (isFormObject(settings)) {
      checkKnownParams(settings, INVOICE_SETTINGS_PARAMS, 'invoice_settings');
      defaultPm = readOptionalString(settings, 'default_payment_method', 'invoice_settings[default_payment_method]');
    } else if (settings !== undefined && settings !== '') {
      throw invalid('Invalid hash', 'invoice_settings');
    }
    const customer = customerOr404(id, 404, 'id');
    const metadata = readMetadata(body, customer.metadata);
    if (defaultPm) {
      const pm = paymentMethods.get(defaultPm);
      const param = 'invoice_settings[default_payment_method]';
      if (!pm) throw missingResource(400, 'PaymentMethod', defaultPm, param);
      if (pm.customer !== id) {
        throw new StripeFailure(
          400,
          {
            type: 'invalid_request_error',
            code: 'resource_missing',
            message: `The customer does not have a payment method with the ID ${defaultPm}. The payment method must be attached to the customer.`,
            param,
          },
          true,
        );
      }
    }
    if (email !== undefined) customer.email = email;
    if (name !== undefined) customer.name = name;
    if (description !== undefined) customer.description = description;
    if (phone !== undefined) customer.phone = phone;
    if (defaultPm !== undefined) customer.invoice_settings.default_payment_method = defaultPm;
    customer.metadata = metadata;
    return customer;
  }

  /** Attaches a stored PaymentMethod, or a copy of a test token's card (Stripe makes a new pm_ id). */
  function attach(pmId: string, customer: StoredCustomer, missingStatus: number): StoredPaymentMethod {
    const pm = paymentMethods.get(pmId);
    if (pm) {
      if (pm.customer !== null && pm.customer !== customer.id) {
        throw new StripeFailure(
          400,
          {
            type: 'invalid_request_error',
            message: 'The payment method you provided has already been attached to a customer.',
            param: 'payment_method',
          },
          true,
        );
      }
      pm.customer = customer.id;
      return pm;
    }
    const behaviour = behaviourOf(pmId);
    if (!behaviour) throw missingResource(missingStatus, 'PaymentMethod', pmId, 'payment_method');
    return makePaymentMethod(behaviour, pmId, customer.id);
  }

  function attachPaymentMethod(pmId: string, body: FormObject): StoredPaymentMethod {
    checkKnownParams(body, ATTACH_PARAMS);
    const customerId = required(readOptionalString(body, 'customer') ?? undefined, 'customer');
    if (!paymentMethods.has(pmId) && !behaviourOf(pmId)) {
      throw missingResource(404, 'PaymentMethod', pmId, 'payment_method');
    }
    return attach(pmId, customerOr404(customerId, 404, 'customer'), 404);
  }

  function createPaymentIntent(body: FormObject): StoredPaymentIntent {
    checkKnownParams(body, PAYMENT_INTENT_PARAMS);
    const amount = required(readInteger(body, 'amount'), 'amount');
    const currency = required(readString(body, 'currency'), 'currency').toLowerCase();
    if (!/^[a-z]{3}$/.test(currency)) throw invalid(`Invalid currency: ${currency}.`, 'currency');
    const minimum = MINIMUM_AMOUNT[currency] ?? 1;
    if (amount < minimum) {
      throw invalid(`Amount must be at least ${(minimum / 100).toFixed(2)} ${currency}`, 'amount', 'amount_too_small');
    }
    if (amount > MAXIMUM_AMOUNT) {
      throw invalid(`Amount must be no more than ${MAXIMUM_AMOUNT} ${currency}`, 'amount', 'amount_too_large');
    }
    const customerId = readOptionalString(body, 'customer') ?? null;
    const pmId = readOptionalString(body, 'payment_method') ?? null;
    const confirm = readBoolean(body, 'confirm') ?? false;
    const offSessionRaw = readString(body, 'off_session');
    let offSession = false;
    if (offSessionRaw === 'true' || offSessionRaw === 'one_off' || offSessionRaw === 'recurring') offSession = true;
    else if (offSessionRaw !== undefined && offSessionRaw !== 'false') {
      throw invalid(`Invalid off_session: ${offSessionRaw}`, 'off_session');
    }
    const errorOnRequiresAction = readBoolean(body, 'error_on_requires_action') ?? false;
    const description = readOptionalString(body, 'description') ?? null;
    const metadata = readMetadata(body);
    const returnUrl = readOptionalString(body, 'return_url') ?? null;
    const captureMethod = readString(body, 'capture_method') ?? 'automatic_async';
    if (captureMethod !== 'automatic' && captureMethod !== 'automatic_async' && captureMethod !== 'manual') {
      throw invalid(`Invalid capture_method: ${captureMethod}`, 'capture_method');
    }
    let automatic: StoredPaymentIntent['automatic_payment_methods'] = null;
    const apm = body.automatic_payment_methods;
    if (isFormObject(apm)) {
      checkKnownParams(apm, AUTOMATIC_PM_PARAMS, 'automatic_payment_methods');
      const enabled = required(readBoolean(apm, 'enabled', 'automatic_payment_methods[enabled]'), 'automatic_payment_methods[enabled]');
      const redirects = readString(apm, 'allow_redirects', 'automatic_payment_methods[allow_redirects]');
      if (redirects !== undefined && redirects !== 'always' && redirects !== 'never') {
        throw invalid(`Invalid allow_redirects: ${redirects}`, 'automatic_payment_methods[allow_redirects]');
      }
      automatic = redirects === undefined ? { enabled } : { enabled, allow_redirects: redirects };
    } else if (apm !== undefined) {
      throw invalid('Invalid hash', 'automatic_payment_methods');
    }
    if (confirm && pmId === null) {
      throw invalid(
        "You cannot confirm this PaymentIntent because it's missing a payment method. Update the payment_method " +
          'parameter with a payment method and try again.',
        'payment_method',
        'payment_intent_unexpected_state',
      );
    }
    if (confirm && !offSession && automatic?.enabled && automatic.allow_redirects !== 'never' && !returnUrl) {
      throw invalid(
        'A `return_url` must be specified because this Payment Intent is configured to automatically accept the ' +
          'payment methods enabled in the Dashboard, some of which may require a full page redirect to succeed. If ' +
          'you do not want to accept redirect-based payment methods, set `automatic_payment_methods[enabled]` to ' +
          '`true` and `automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and ' +
          'Payment Intents.',
        'return_url',
      );
    }

    // The endpoint runs from here: its failures are saved under the idempotency key.
    if (customerId !== null) customerOr404(customerId, 400, 'customer');
    let behaviour: TestCardBehaviour | undefined;
    let pm: StoredPaymentMethod | undefined;
    if (pmId !== null) {
      behaviour = behaviourOf(pmId);
      if (!behaviour) throw missingResource(400, 'PaymentMethod', pmId, 'payment_method');
      pm = paymentMethods.get(pmId);
      if (pm?.customer && pm.customer !== customerId) {
        throw new StripeFailure(
          400,
          {
            type: 'invalid_request_error',
            message:
              customerId === null
                ? `The provided PaymentMethod ${pmId} is attached to a Customer. Pass that Customer's ID in \`customer\` to use it.`
                : `The provided PaymentMethod ${pmId} belongs to a different Customer than ${customerId}.`,
            param: 'payment_method',
          },
          true,
        );
      }
    }

    const id = newId('pi_3');
    const intent: StoredPaymentIntent = {
      id,
      object: 'payment_intent',
      amount,
      amount_capturable: 0,
      amount_received: 0,
      automatic_payment_methods: automatic,
      canceled_at: null,
      cancellation_reason: null,
      capture_method: captureMethod,
      client_secret: `${id}_secret_${randomToken(25)}`,
      confirmation_method: 'automatic',
      created: now(),
      currency,
      customer: customerId,
      description,
      last_payment_error: null,
      latest_charge: null,
      livemode: false,
      metadata,
      next_action: null,
      payment_method: pmId,
      payment_method_types: ['card'],
      setup_future_usage: null,
      status: pmId === null ? 'requires_payment_method' : 'requires_confirmation',
    };
    paymentIntents.set(id, intent);
    if (!confirm || !behaviour || !pmId) return intent;

    const declineWith = (code: string, declineCode: string): never => {
      const charge = newId('ch_3');
      const message = DECLINE_MESSAGES[declineCode] ?? DECLINE_MESSAGES[code] ?? 'Your card was declined.';
      const error: StripeErrorBody = {
        type: 'card_error',
        code,
        decline_code: declineCode,
        message,
        charge,
        doc_url: `https://stripe.com/docs/error-codes/${code.replaceAll('_', '-')}`,
      };
      if (pm) error.payment_method = pm;
      intent.status = 'requires_payment_method';
      intent.payment_method = null;
      intent.latest_charge = charge;
      intent.last_payment_error = { ...error };
      record(snapshotEvent('payment_intent.payment_failed', intent));
      throw new StripeFailure(402, { ...error, payment_intent: intent }, true);
    };

    switch (behaviour.outcome) {
      case 'succeed':
        if (heldInProcessing > 0) {
          heldInProcessing -= 1;
          intent.status = 'processing';
          return intent;
        }
        chargeCard(intent);
        return intent;
      case 'decline':
        return declineWith(behaviour.code, behaviour.declineCode);
      case 'authenticate':
        if (offSession || errorOnRequiresAction) return declineWith('authentication_required', 'authentication_required');
        intent.status = 'requires_action';
        intent.next_action = {
          type: 'use_stripe_sdk',
          use_stripe_sdk: { type: 'three_d_secure_redirect', source: newId('src_1') },
        };
        record(snapshotEvent('payment_intent.requires_action', intent));
        return intent;
    }
  }

  function createCheckoutSession(body: FormObject): StoredCheckoutSession {
    checkKnownParams(body, CHECKOUT_SESSION_PARAMS);
    const mode = required(readString(body, 'mode'), 'mode');
    if (mode !== 'payment') throw invalid(`fake-stripe supports only mode=payment, not ${mode}`, 'mode');
    const successUrl = required(readOptionalString(body, 'success_url') ?? undefined, 'success_url');
    const cancelUrl = readOptionalString(body, 'cancel_url') ?? null;
    for (const [param, value] of [
      ['success_url', successUrl],
      ['cancel_url', cancelUrl],
    ] as const) {
      if (value !== null && !/^https?:\/\/[^\s]+$/.test(value)) throw invalid('Not a valid URL', param, 'url_invalid');
    }
    const items = body.line_items;
    if (!Array.isArray(items) || items.length === 0)
      throw invalid('Missing required param: line_items.', 'line_items', 'parameter_missing');
    const lineItems = items.map((item, i) => {
      const at = `line_items[${i}]`;
      if (!isFormObject(item)) throw invalid('Invalid hash', at);
      checkKnownParams(item, LINE_ITEM_PARAMS, at);
      const priceData = item.price_data;
      if (!isFormObject(priceData)) throw invalid('fake-stripe supports only line items with price_data', `${at}[price_data]`);
      checkKnownParams(priceData, PRICE_DATA_PARAMS, `${at}[price_data]`);
      const productData = priceData.product_data;
      if (!isFormObject(productData))
        throw invalid('Missing required param: product_data.', `${at}[price_data][product_data]`, 'parameter_missing');
      checkKnownParams(productData, PRODUCT_DATA_PARAMS, `${at}[price_data][product_data]`);
      const unitAmount = required(readInteger(priceData, 'unit_amount'), `${at}[price_data][unit_amount]`);
      const currency = required(readString(priceData, 'currency'), `${at}[price_data][currency]`).toLowerCase();
      return {
        name: required(readString(productData, 'name'), `${at}[price_data][product_data][name]`),
        description: readOptionalString(productData, 'description') ?? null,
        unit_amount: unitAmount,
        currency,
        quantity: required(readInteger(item, 'quantity'), `${at}[quantity]`),
      };
    });
    const currency = lineItems[0]?.currency ?? 'usd';
    const amount = lineItems.reduce((sum, item) => sum + item.unit_amount * item.quantity, 0);
    if (amount < (MINIMUM_AMOUNT[currency] ?? 1))
      throw invalid("The Checkout Session's total amount due must add up to at least $0.50 usd", 'line_items', 'amount_too_small');
    const expiresAt = readInteger(body, 'expires_at') ?? now() + 24 * 3600;
    if (expiresAt < now() + 30 * 60 || expiresAt > now() + 24 * 3600) {
      throw invalid('The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.', 'expires_at');
    }
    const piData = body.payment_intent_data;
    let piMetadata: Record<string, string> = {};
    let piDescription: string | null = null;
    if (isFormObject(piData)) {
      checkKnownParams(piData, CHECKOUT_PI_DATA_PARAMS, 'payment_intent_data');
      piMetadata = readMetadata(piData);
      piDescription = readOptionalString(piData, 'description') ?? null;
    } else if (piData !== undefined) throw invalid('Invalid hash', 'payment_intent_data');
    const customerId = readOptionalString(body, 'customer') ?? null;
    const clientReference = readOptionalString(body, 'client_reference_id') ?? null;
    const metadata = readMetadata(body);

    // The endpoint runs from here: its failures are saved under the idempotency key.
    if (customerId !== null) customerOr404(customerId, 400, 'customer');
    const id = newId('cs_test_a1');
    const session: StoredCheckoutSession = {
      id,
      object: 'checkout.session',
      amount_subtotal: amount,
      amount_total: amount,
      cancel_url: cancelUrl,
      client_reference_id: clientReference,
      created: now(),
      currency,
      customer: customerId,
      expires_at: expiresAt,
      livemode: false,
      metadata,
      mode: 'payment',
      payment_intent: null,
      payment_status: 'unpaid',
      status: 'open',
      success_url: successUrl,
      url: `https://checkout.stripe.com/c/pay/${id}`,
      line_items_requested: lineItems,
      payment_intent_data_requested: { metadata: piMetadata, description: piDescription },
    };
    checkoutSessions.set(id, session);
    return session;
  }

  function expireCheckoutSession(session: StoredCheckoutSession): StoredCheckoutSession {
    session.status = 'expired';
    session.url = null;
    record(snapshotEvent('checkout.session.expired', session));
    return session;
  }

  /** The PaymentIntent Checkout makes when the customer pays: the session's amount, customer and PaymentIntent data. */
  function checkoutIntent(session: StoredCheckoutSession, pmId: string): StoredPaymentIntent {
    const id = newId('pi_3');
    const intent: StoredPaymentIntent = {
      id,
      object: 'payment_intent',
      amount: session.amount_total,
      amount_capturable: 0,
      amount_received: 0,
      automatic_payment_methods: null,
      canceled_at: null,
      cancellation_reason: null,
      capture_method: 'automatic_async',
      client_secret: `${id}_secret_${randomToken(25)}`,
      confirmation_method: 'automatic',
      created: now(),
      currency: session.currency,
      customer: session.customer,
      description: session.payment_intent_data_requested.description,
      last_payment_error: null,
      latest_charge: null,
      livemode: false,
      metadata: { ...session.payment_intent_data_requested.metadata },
      next_action: null,
      payment_method: pmId,
      payment_method_types: ['card'],
      setup_future_usage: null,
      status: 'processing',
    };
    paymentIntents.set(id, intent);
    session.payment_intent = id;
    return intent;
  }

  function createRefund(body: FormObject): StoredRefund {
    checkKnownParams(body, REFUND_PARAMS);
    const intentId = readOptionalString(body, 'payment_intent') ?? null;
    const chargeId = readOptionalString(body, 'charge') ?? null;
    const amount = readInteger(body, 'amount');
    if (amount !== undefined && amount < 1) throw invalid('Invalid positive integer', 'amount', 'parameter_invalid_integer');
    const reason = readOptionalString(body, 'reason') ?? null;
    if (reason !== null && !isRefundReason(reason)) {
      throw invalid('Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer', 'reason');
    }
    const metadata = readMetadata(body);
    if (intentId === null && chargeId === null) {
      throw invalid(
        'One of the following params should be provided for this request: payment_intent or charge.',
        undefined,
        'parameter_missing',
      );
    }
    if (intentId !== null && chargeId !== null) {
      throw invalid('You can only pass one of payment_intent or charge.', 'charge');
    }

    // The endpoint runs from here: its failures are saved under the idempotency key.
    let charge: StoredCharge | undefined;
    if (intentId !== null) {
      const intent = paymentIntents.get(intentId);
      if (!intent) throw missingResource(400, 'payment_intent', intentId, 'payment_intent');
      charge = intent.status === 'succeeded' && intent.latest_charge !== null ? charges.get(intent.latest_charge) : undefined;
      if (!charge) {
        throw new StripeFailure(
          400,
          {
            type: 'invalid_request_error',
            message: `This PaymentIntent (${intentId}) does not have a successful charge to refund.`,
            param: 'payment_intent',
          },
          true,
        );
      }
    } else if (chargeId !== null) {
      charge = charges.get(chargeId);
      if (!charge) throw missingResource(400, 'charge', chargeId, 'charge');
    }
    if (!charge) throw new Error('unreachable: no charge to refund');

    const refusal = (message: string, code: string, param?: string): StripeFailure => {
      const error: StripeErrorBody = { type: 'invalid_request_error', code, message };
      if (param !== undefined) error.param = param;
      error.doc_url = `https://stripe.com/docs/error-codes/${code.replaceAll('_', '-')}`;
      return new StripeFailure(400, error, true);
    };
    const chargedBack = [...disputes.values()].some((d) => d.charge === charge.id && !d.is_charge_refundable && d.status !== 'won');
    if (chargedBack) {
      throw refusal(`Charge ${charge.id} has been charged back; cannot issue a refund.`, 'charge_disputed');
    }
    const remaining = charge.amount - charge.amount_refunded;
    if (remaining <= 0) throw refusal(`Charge ${charge.id} has already been refunded.`, 'charge_already_refunded');
    const refundAmount = amount ?? remaining;
    if (refundAmount > remaining) {
      throw refusal(
        `Refund amount (${formatAmount(refundAmount, charge.currency)}) is greater than unrefunded amount on charge ` +
          `(${formatAmount(remaining, charge.currency)})`,
        'amount_too_large',
        'amount',
      );
    }

    const refund: StoredRefund = {
      id: newId('re_3'),
      object: 'refund',
      amount: refundAmount,
      charge: charge.id,
      created: now(),
      currency: charge.currency,
      failure_reason: null,
      metadata,
      payment_intent: charge.payment_intent,
      reason,
      status: 'succeeded',
    };
    refunds.set(refund.id, refund);
    charge.amount_refunded += refundAmount;
    charge.refunded = charge.amount_refunded === charge.amount;
    record(snapshotEvent('charge.refunded', charge));
    // Stripe sends both: the charge's new total, and the refund itself.
    record(snapshotEvent('refund.created', refund));
    return refund;
  }

  /**
   * Stripe's search, for the one query shape coinshop sends: `metadata['key']:'value'`. (Stripe's
   * index lags writes by up to a minute; here it is immediate.)
   */
  function searchPaymentIntents(body: FormObject): unknown {
    checkKnownParams(body, new Set(['query', 'limit', 'page', 'expand']));
    const query = readOptionalString(body, 'query');
    if (query === undefined || query === null) throw invalid('Missing required param: query.', 'query', 'parameter_missing');
    const match = /^metadata\['([^']+)'\]:'([^']*)'$/.exec(query);
    if (!match) throw invalid(`fake-stripe understands only metadata['key']:'value' queries, not: ${query}`, 'query');
    const [, key = '', value = ''] = match;
    const data = [...paymentIntents.values()].filter((pi) => pi.metadata[key] === value).reverse();
    return { object: 'search_result', data, has_more: false, next_page: null, url: '/v1/payment_intents/search' };
  }

  function retrieve<T>(map: ReadonlyMap<string, T>, id: string, what: string, body: FormObject): T {
    checkKnownParams(body, EXPAND_ONLY);
    const found = map.get(id);
    if (found === undefined) throw missingResource(404, what, id, 'id');
    return found;
  }

  function route(method: string, path: string, body: FormObject): unknown {
    const parts = path.split('/');
    // ['', 'v1', 'checkout', 'sessions', id?, action?]
    if (parts[1] === 'v1' && parts[2] === 'checkout' && parts[3] === 'sessions' && parts.length <= 6) {
      const id = parts[4] ? decodeURIComponent(parts[4]) : undefined;
      const action = parts[5];
      if (method === 'POST' && id === undefined) return createCheckoutSession(body);
      if (method === 'GET' && id !== undefined && action === undefined) {
        const session = retrieve(checkoutSessions, id, 'checkout.session', body);
        // Stripe expires a session once its time is up, whoever asks.
        return session.status === 'open' && session.expires_at <= now() ? expireCheckoutSession(session) : session;
      }
      if (method === 'POST' && id !== undefined && action === 'expire') {
        checkKnownParams(body, EXPAND_ONLY);
        const session = checkoutSessions.get(id);
        if (!session) throw missingResource(404, 'checkout.session', id, 'session');
        if (session.status !== 'open') {
          throw new StripeFailure(
            400,
            { type: 'invalid_request_error', message: `Only Checkout Sessions with a status in ["open"] can be expired.` },
            true,
          );
        }
        return expireCheckoutSession(session);
      }
    }
    // ['', 'v1', resource, id?, action?]
    if (parts[1] === 'v1' && parts.length >= 3 && parts.length <= 5) {
      const resource = parts[2];
      const id = parts[3] ? decodeURIComponent(parts[3]) : undefined;
      const action = parts[4];
      if (resource === 'customers' && action === undefined) {
        if (method === 'POST' && id === undefined) return createCustomer(body);
        if (method === 'POST' && id !== undefined) return updateCustomer(id, body);
        if (method === 'GET' && id !== undefined) {
          checkKnownParams(body, EXPAND_ONLY);
          return customerOr404(id, 404, 'id');
        }
      }
      if (resource === 'payment_methods' && id !== undefined) {
        if (method === 'POST' && action === 'attach') return attachPaymentMethod(id, body);
        if (method === 'GET' && action === undefined) {
          checkKnownParams(body, EXPAND_ONLY);
          const pm = paymentMethods.get(id);
          if (!pm) throw missingResource(404, 'PaymentMethod', id, 'payment_method');
          return pm;
        }
      }
      if (resource === 'payment_intents' && action === undefined) {
        if (method === 'POST' && id === undefined) return createPaymentIntent(body);
        if (method === 'GET' && id === 'search') return searchPaymentIntents(body);
        if (method === 'GET' && id !== undefined) {
          checkKnownParams(body, RETRIEVE_INTENT_PARAMS);
          const intent = paymentIntents.get(id);
          if (!intent) throw missingResource(404, 'payment_intent', id, 'intent');
          return intent;
        }
      }
      if (resource === 'refunds' && action === undefined) {
        if (method === 'POST' && id === undefined) {
          const refund = createRefund(body);
          // `expand[]=charge`: the refund's charge as it is now, this refund counted (Stripe expands on create too).
          return expands(body, 'charge') ? { ...refund, charge: charges.get(refund.charge) ?? refund.charge } : refund;
        }
        if (method === 'GET' && id !== undefined) return retrieve(refunds, id, 'refund', body);
        if (method === 'GET' && id === undefined) {
          checkKnownParams(body, new Set(['payment_intent', 'charge', 'limit', 'starting_after', 'ending_before', 'expand']));
          const intentId = readOptionalString(body, 'payment_intent');
          const chargeId = readOptionalString(body, 'charge');
          const data = [...refunds.values()]
            .filter((r) => (intentId == null || r.payment_intent === intentId) && (chargeId == null || r.charge === chargeId))
            .reverse();
          return { object: 'list', data, has_more: false, url: '/v1/refunds' };
        }
      }
      if (method === 'GET' && id !== undefined && action === undefined) {
        if (resource === 'charges') return retrieve(charges, id, 'charge', body);
        if (resource === 'disputes') return retrieve(disputes, id, 'dispute', body);
        if (resource === 'events') return retrieve(eventsById, id, 'event', body);
      }
    }
    throw new StripeFailure(
      404,
      {
        type: 'invalid_request_error',
        message: `Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`,
      },
      false,
    );
  }

  function execute(method: string, path: string, body: FormObject): Reply {
    try {
      return { status: 200, json: JSON.stringify(route(method, path, body)), store: true };
    } catch (err) {
      if (err instanceof StripeFailure) {
        return { status: err.status, json: JSON.stringify({ error: err.body }), store: err.store };
      }
      const error: StripeErrorBody = { type: 'api_error', message: `Fake Stripe bug: ${String(err)}` };
      return { status: 500, json: JSON.stringify({ error }), store: false };
    }
  }

  // --- transport ------------------------------------------------------------------------------

  function later(fn: () => void): void {
    if (latencyMs <= 0) {
      fn();
      return;
    }
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, latencyMs);
    timers.add(timer);
  }

  function sendReply(
    res: http.ServerResponse,
    reply: Reply,
    requestId: string,
    stripeVersion: string,
    idempotencyKey: string | undefined,
  ): void {
    if (res.destroyed || res.writableEnded) return;
    const headers: Record<string, string | number> = {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(reply.json),
      'Request-Id': requestId,
      'Stripe-Version': stripeVersion,
      ...reply.headers,
    };
    if (idempotencyKey !== undefined) headers['Idempotency-Key'] = idempotencyKey;
    res.writeHead(reply.status, headers);
    res.end(reply.json);
  }

  function failureReply(status: number): Reply {
    const error: StripeErrorBody =
      status === 429
        ? {
            type: 'invalid_request_error',
            code: 'rate_limit',
            message: 'Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.',
          }
        : status === 400 || status === 404
          ? // A refusal of the request itself (Stripe says why in an invalid_request_error).
            { type: 'invalid_request_error', code: 'resource_missing', message: 'No such object (refused by failNext)' }
          : { type: 'api_error', message: 'An unknown error occurred' };
    return { status, json: JSON.stringify({ error }), store: false };
  }

  function authReply(message: string): Reply {
    const error: StripeErrorBody = { type: 'authentication_error', message };
    return {
      status: 401,
      json: JSON.stringify({ error }),
      store: false,
      headers: { 'WWW-Authenticate': 'Bearer realm="Stripe"' },
    };
  }

  function handle(req: http.IncomingMessage, res: http.ServerResponse, raw: string): void {
    const method = req.method ?? 'GET';
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q === -1 ? target : target.slice(0, q);
    const params = new URLSearchParams(method === 'GET' || method === 'DELETE' ? (q === -1 ? '' : target.slice(q + 1)) : raw);
    const body = parseForm(params);
    const keyHeader = req.headers['idempotency-key'];
    const idempotencyKey = typeof keyHeader === 'string' ? keyHeader : undefined;
    const versionHeader = req.headers['stripe-version'];
    const stripeVersion = typeof versionHeader === 'string' ? versionHeader : DEFAULT_STRIPE_VERSION;
    const requestId = `req_${randomToken(14)}`;
    requests.push({ method, path, idempotencyKey, body });
    const lossAt = losses.findIndex((l) => (l.method === undefined || l.method === method) && (l.path === undefined || l.path.test(path)));
    const loss = losses[lossAt];
    if (loss && --loss.remaining <= 0) losses.splice(lossAt, 1);
    const send = (response: http.ServerResponse, r: Reply, id: string, version: string, key: string | undefined) =>
      loss ? req.socket.destroy() : sendReply(response, r, id, version, key);
    const reply = (r: Reply): void => later(() => send(res, r, requestId, stripeVersion, idempotencyKey));

    const failureAt = failures.findIndex(
      (f) => (f.method === undefined || f.method === method) && (f.path === undefined || f.path.test(path)),
    );
    const failure = failures[failureAt];
    if (failure) {
      if (--failure.remaining <= 0) failures.splice(failureAt, 1);
      reply(failureReply(failure.status));
      return;
    }

    const auth = req.headers.authorization;
    if (auth === undefined || auth === '') {
      reply(
        authReply(
          "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
        ),
      );
      return;
    }
    const apiKey = AUTH_RE.exec(auth)?.[1];
    if (apiKey === undefined) {
      const given = auth.replace(/^Bearer\s+/i, '');
      const masked = given.length > 12 ? `${given.slice(0, 8)}${'*'.repeat(given.length - 12)}${given.slice(-4)}` : given;
      reply(authReply(`Invalid API Key provided: ${masked}`));
      return;
    }

    if (method !== 'POST' || idempotencyKey === undefined) {
      later(() => send(res, execute(method, path, body), requestId, stripeVersion, idempotencyKey));
      return;
    }

    // Idempotency: scoped to the API key, keyed by the header, bound to the parameters.
    const scope = `${apiKey}\u0000${idempotencyKey}`;
    const print = fingerprint(method, path, params);
    const existing = idempotency.get(scope);
    if (existing) {
      if (existing.fingerprint !== print) {
        const error: StripeErrorBody = {
          type: 'idempotency_error',
          message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
        };
        reply({ status: 400, json: JSON.stringify({ error }), store: false });
      } else if (existing.pending) {
        const error: StripeErrorBody = {
          type: 'invalid_request_error',
          code: 'idempotency_key_in_use',
          message: `There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): ${idempotencyKey}. Please try again later.`,
        };
        reply({ status: 409, json: JSON.stringify({ error }), store: false });
      } else {
        reply({
          status: existing.status,
          json: existing.json,
          store: false,
          headers: { 'Idempotent-Replayed': 'true', 'Original-Request': existing.requestId },
        });
      }
      return;
    }

    const entry: IdempotencyEntry = { fingerprint: print, pending: true, status: 0, json: '', requestId };
    idempotency.set(scope, entry);
    later(() => {
      const result = execute(method, path, body);
      if (result.store) {
        entry.pending = false;
        entry.status = result.status;
        entry.json = result.json;
      } else {
        idempotency.delete(scope);
      }
      send(res, result, requestId, stripeVersion, idempotencyKey);
    });
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw =
        chunks.length === 0 ? '' : chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8');
      handle(req, res, raw);
    });
  });
  server.keepAliveTimeout = 30_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    paymentIntents,
    customers,
    paymentMethods,
    charges,
    refunds,
    disputes,
    events,
    checkoutSessions,
    payCheckoutSession(sessionId: string, options: { behavesLike?: string; delayed?: boolean } = {}): StoredCheckoutSession {
      const session = checkoutSessions.get(sessionId);
      if (!session) throw new Error(`fake-stripe: no Checkout Session ${sessionId}`);
      if (session.status !== 'open') throw new Error(`fake-stripe: Checkout Session ${sessionId} is ${session.status}, not open`);
      const token = options.behavesLike ?? 'pm_card_visa';
      const behaviour = behaviourOf(token);
      if (!behaviour) throw new Error(`fake-stripe: unknown test PaymentMethod ${token}`);
      if (behaviour.outcome === 'decline')
        throw new Error(`fake-stripe: the card was declined (${behaviour.code}); the session stays open`);
      const pm = makePaymentMethod(behaviour, token, session.customer);
      const intent = checkoutIntent(session, pm.id);
      session.status = 'complete';
      session.url = null;
      if (options.delayed) {
        record(snapshotEvent('checkout.session.completed', session));
        return session;
      }
      chargeCard(intent);
      session.payment_status = 'paid';
      record(snapshotEvent('checkout.session.completed', session));
      return session;
    },
    settleDelayedCheckout(sessionId: string, outcome: 'succeed' | 'fail'): StoredCheckoutSession {
      const session = checkoutSessions.get(sessionId);
      const intent = session?.payment_intent ? paymentIntents.get(session.payment_intent) : undefined;
      if (!session || !intent) throw new Error(`fake-stripe: no delayed payment for Checkout Session ${sessionId}`);
      if (intent.status !== 'processing') throw new Error(`fake-stripe: the payment of ${sessionId} is ${intent.status}, not processing`);
      if (outcome === 'succeed') {
        chargeCard(intent);
        session.payment_status = 'paid';
        record(snapshotEvent('checkout.session.async_payment_succeeded', session));
        return session;
      }
      intent.status = 'requires_payment_method';
      intent.last_payment_error = {
        type: 'invalid_request_error',
        code: 'payment_method_provider_decline',
        message: 'The payment was declined by the bank.',
      };
      record(snapshotEvent('payment_intent.payment_failed', intent));
      record(snapshotEvent('checkout.session.async_payment_failed', session));
      return session;
    },
    lapseCheckoutSession(sessionId: string): StoredCheckoutSession {
      const session = checkoutSessions.get(sessionId);
      if (!session) throw new Error(`fake-stripe: no Checkout Session ${sessionId}`);
      if (session.status !== 'open') throw new Error(`fake-stripe: Checkout Session ${sessionId} is ${session.status}, not open`);
      return expireCheckoutSession(session);
    },
    authenticate(paymentIntentId: string, outcome: 'succeed' | 'fail'): StoredPaymentIntent {
      const intent = paymentIntents.get(paymentIntentId);
      if (!intent) throw new Error(`fake-stripe: no PaymentIntent ${paymentIntentId}`);
      if (intent.status !== 'requires_action') {
        throw new Error(`fake-stripe: PaymentIntent ${paymentIntentId} is ${intent.status}, not requires_action`);
      }
      if (outcome === 'succeed') {
        chargeCard(intent);
        return intent;
      }
      const code = 'payment_intent_authentication_failure';
      const error: StripeErrorBody = {
        type: 'card_error',
        code,
        message:
          'The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new ' +
          'PaymentMethod to attempt to fulfill this PaymentIntent again.',
        doc_url: `https://stripe.com/docs/error-codes/${code.replaceAll('_', '-')}`,
      };
      const pm = intent.payment_method === null ? undefined : paymentMethods.get(intent.payment_method);
      if (pm) error.payment_method = pm;
      intent.status = 'requires_payment_method';
      intent.next_action = null;
      intent.payment_method = null;
      intent.last_payment_error = error;
      record(snapshotEvent('payment_intent.payment_failed', intent));
      return intent;
    },
    holdProcessing(count: number): void {
      heldInProcessing = Math.max(0, count);
    },
    finishProcessing(paymentIntentId: string, outcome: 'succeed' | 'fail'): StoredPaymentIntent {
      const intent = paymentIntents.get(paymentIntentId);
      if (!intent) throw new Error(`fake-stripe: no PaymentIntent ${paymentIntentId}`);
      if (intent.status !== 'processing')
        throw new Error(`fake-stripe: PaymentIntent ${paymentIntentId} is ${intent.status}, not processing`);
      if (outcome === 'succeed') {
        chargeCard(intent);
        return intent;
      }
      const error: StripeErrorBody = {
        type: 'card_error',
        code: 'card_declined',
        decline_code: 'generic_decline',
        message: DECLINE_MESSAGES['generic_decline'] ?? 'Your card was declined.',
      };
      intent.status = 'requires_payment_method';
      intent.payment_method = null;
      intent.last_payment_error = error;
      record(snapshotEvent('payment_intent.payment_failed', intent));
      return intent;
    },
    payAfterFailure(paymentIntentId: string): StoredPaymentIntent {
      const intent = paymentIntents.get(paymentIntentId);
      if (!intent) throw new Error(`fake-stripe: no PaymentIntent ${paymentIntentId}`);
      if (intent.status !== 'requires_payment_method') {
        throw new Error(`fake-stripe: PaymentIntent ${paymentIntentId} is ${intent.status}, not requires_payment_method`);
      }
      intent.payment_method = makePaymentMethod(SUCCEED, 'pm_card_visa', intent.customer).id;
      chargeCard(intent);
      return intent;
    },
    dispute(paymentIntentId: string, options: { inquiry?: boolean } = {}): StoredDispute {
      const intent = paymentIntents.get(paymentIntentId);
      if (!intent) throw new Error(`fake-stripe: no PaymentIntent ${paymentIntentId}`);
      const charge = intent.latest_charge === null ? undefined : charges.get(intent.latest_charge);
      if (!charge) throw new Error(`fake-stripe: PaymentIntent ${paymentIntentId} (${intent.status}) has no charge to dispute`);
      const previous = disputeOfCharge.get(charge.id);
      if (previous && !CLOSED_DISPUTE.has(previous.status)) throw new Error(`fake-stripe: charge ${charge.id} is already disputed`);
      const inquiry = options.inquiry === true;
      const dispute: StoredDispute = {
        id: newId('dp_1'),
        object: 'dispute',
        amount: charge.amount,
        charge: charge.id,
        created: now(),
        currency: charge.currency,
        is_charge_refundable: inquiry,
        livemode: false,
        metadata: {},
        payment_intent: intent.id,
        reason: 'fraudulent',
        status: inquiry ? 'warning_needs_response' : 'needs_response',
      };
      disputes.set(dispute.id, dispute);
      disputeOfCharge.set(charge.id, dispute);
      charge.disputed = true;
      record(snapshotEvent('charge.dispute.created', dispute));
      return dispute;
    },
    closeDispute(disputeId: string, outcome: 'won' | 'lost' | 'warning_closed'): StoredDispute {
      const dispute = disputes.get(disputeId);
      if (!dispute) throw new Error(`fake-stripe: no dispute ${disputeId}`);
      if (CLOSED_DISPUTE.has(dispute.status)) throw new Error(`fake-stripe: dispute ${disputeId} is already ${dispute.status}`);
      const inquiry = dispute.status === 'warning_needs_response';
      if (inquiry !== (outcome === 'warning_closed')) {
        throw new Error(`fake-stripe: ${inquiry ? 'an inquiry' : 'a chargeback'} cannot close as ${outcome}`);
      }
      dispute.status = outcome;
      record(snapshotEvent('charge.dispute.closed', dispute));
      return dispute;
    },
    webhookRequest,
    createPaymentMethod(behavesLike?: string): string {
      let behaviour = SUCCEED;
      if (behavesLike !== undefined) {
        const known = behaviourOf(behavesLike);
        if (!known) throw new Error(`fake-stripe: unknown test PaymentMethod ${behavesLike}`);
        behaviour = known;
      }
      return makePaymentMethod(behaviour, behavesLike ?? 'pm_card_visa', null).id;
    },
    failNext(count: number, status = 500, only: { method?: string; path?: RegExp } = {}): void {
      if (count > 0) failures.push({ remaining: count, status, method: only.method, path: only.path });
    },
    loseNextAnswer(count: number, only: { method?: string; path?: RegExp } = {}): void {
      if (count > 0) losses.push({ remaining: count, method: only.method, path: only.path });
    },
    failRefund(refundId: string): StoredRefund {
      const refund = refunds.get(refundId);
      if (!refund) throw new Error(`fake-stripe: no refund ${refundId}`);
      const intent = paymentIntents.get(refund.payment_intent);
      if (!intent?.payment_method || !refundFailCards.has(intent.payment_method)) {
        throw new Error(`fake-stripe: refund ${refundId} is not of a card that behaves like pm_card_refundFail`);
      }
      if (refund.status !== 'succeeded') throw new Error(`fake-stripe: refund ${refundId} is already ${refund.status}`);
      const charge = charges.get(refund.charge);
      if (!charge) throw new Error(`fake-stripe: refund ${refundId} has no charge`);
      refund.status = 'failed';
      refund.failure_reason = 'expired_or_canceled_card';
      charge.amount_refunded -= refund.amount;
      charge.refunded = charge.amount_refunded === charge.amount;
      record(snapshotEvent('charge.refund.updated', refund));
      record(snapshotEvent('refund.failed', refund));
      return refund;
    },
    setLatency(ms: number): void {
      latencyMs = Math.max(0, ms);
    },
    close(): Promise<void> {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      if (!server.listening) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}
