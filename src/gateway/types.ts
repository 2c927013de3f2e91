/**
 * What coinshop needs from a payments provider. Routes and services see only this interface;
 * `StripeGateway` implements it with the stripe SDK, `SimulatedGateway` offline.
 */
export interface PaymentsGateway {
  readonly kind: 'stripe' | 'simulated';
  /** Present when the gateway plays Stripe offline: what happens outside the API can then be simulated. */
  readonly simulation?: PaymentSimulation | undefined;

  /** Creates the provider's customer. The idempotency key makes a retried call create one customer. */
  createCustomer(input: { email: string; name: string; userId: string }, idempotencyKey: string): Promise<{ id: string }>;

  /**
   * Attaches a real PaymentMethod to the customer and makes it the default for invoices.
   * Throws PaymentMethodRejected when the provider does not know or will not attach it.
   */
  attachPaymentMethod(customerId: string, paymentMethodId: string): Promise<void>;

  /** Creates and confirms a PaymentIntent on a saved card. Declines are outcomes, not exceptions. */
  chargeSavedCard(charge: ChargeRequest): Promise<ChargeOutcome>;

  /** Reads a PaymentIntent's current state (used to finish purchases whose outcome we missed). */
  retrievePayment(paymentIntentId: string): Promise<ChargeOutcome>;

  /**
   * The PaymentIntent made for our `transactionId` (in its metadata), found by searching: for a
   * purchase whose PaymentIntent id was never learnt and whose idempotency key Stripe has forgotten.
   * Undefined when there is none. Stripe's search index lags writes by up to a minute.
   */
  findPaymentByTransaction(transactionId: string): Promise<ChargeOutcome | undefined>;

  /**
   * A PaymentIntent's metadata (ours name the purchase: `transaction_id`). Used to link an event whose
   * object carries no metadata (a Dispute) to a purchase that does not know its PaymentIntent yet.
   */
  retrievePaymentMetadata(paymentIntentId: string): Promise<Record<string, string>>;

  /**
   * Every refund of a PaymentIntent's charge, as Stripe has it now. Used when a `charge.refunded`
   * shows more refunded than the refunds coinshop knows of (one made in the Dashboard, on an
   * endpoint that does not hear `refund.created`).
   */
  listRefunds(paymentIntentId: string): Promise<ProviderRefund[]>;

  /**
   * Refunds all or part of a succeeded PaymentIntent and answers with the refund. Once the refund
   * exists, this never fails for want of a second read: the answer is the refund itself.
   */
  refund(request: RefundRequest): Promise<RefundResult>;

  /**
   * Creates a Stripe Checkout Session (`mode=payment`) for one package: Stripe's hosted page, where
   * the customer pays with any method the account offers. The idempotency key makes a retried call
   * answer with the session the first made (so every parameter must be the same, `expiresAt` too).
   * Throws CheckoutRefused when Stripe refused it and nothing was made.
   */
  createCheckoutSession(request: CheckoutSessionRequest): Promise<CheckoutSession>;

  /** A Checkout Session as it is now. */
  retrieveCheckoutSession(sessionId: string): Promise<CheckoutSession>;

  /**
   * Checks a webhook's `Stripe-Signature` against the raw body and returns the event. Throws
   * WebhookRejected when the signature is missing, wrong or too old.
   */
  verifyWebhook(payload: Buffer, signature: string | undefined): WebhookEvent;
}

export interface CheckoutSessionRequest {
  amountCents: number;
  currency: string;
  /** The line item's name (the package's). */
  productName: string;
  description: string;
  customerId: string;
  successUrl: string;
  cancelUrl: string;
  /** Unix seconds; Stripe accepts 30 minutes to 24 hours from the time it makes the session. */
  expiresAt: number;
  /** Our transaction id: the session's `client_reference_id`. */
  transactionId: string;
  /** Put on the session and on its PaymentIntent, so the charge, refunds and disputes lead back. */
  metadata: Record<string, string>;
  idempotencyKey: string;
}

/** A Checkout Session's state (Stripe's `status` and `payment_status`). */
export interface CheckoutSession {
  id: string;
  /** The hosted page; a path on coinshop for the simulated gateway. Null once the session is over. */
  url: string | null;
  status: 'open' | 'complete' | 'expired';
  paymentStatus: 'paid' | 'unpaid' | 'no_payment_required';
  /** Set once the customer paid or started paying (a delayed method). */
  paymentIntentId: string | null;
  /** Unix seconds. */
  expiresAt: number;
}

/** Stripe refused to make a Checkout Session, and nothing was made (a bad parameter, an expiry too soon). */
export class CheckoutRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckoutRefused';
  }
}

/** A refund as Stripe describes it (the fields coinshop acts on). */
export interface ProviderRefund {
  id: string;
  amount: number;
  status: string | null;
  payment_intent: string | null;
  failure_reason?: string | null | undefined;
  metadata?: Record<string, string> | undefined;
}

export interface RefundRequest {
  paymentIntentId: string;
  /** Cents to refund; everything that remains when omitted. */
  amountCents?: number | undefined;
  idempotencyKey: string;
  /** Kept on the refund (our transaction id and refund key), so its events lead back to the purchase. */
  metadata?: Record<string, string> | undefined;
}

/** A refund's status as the provider reports it (Stripe's). */
export type ProviderRefundStatus = 'pending' | 'requires_action' | 'succeeded' | 'failed' | 'canceled';

export interface RefundResult {
  refundId: string;
  /** This refund's amount. */
  amount: number;
  status: ProviderRefundStatus;
  failureReason?: string | undefined;
  /**
   * All that the charge had refunded when the refund was made, this one included, when the provider
   * told it with the refund (Stripe: the refund's `charge`, expanded); undefined otherwise.
   */
  amountRefunded?: number | undefined;
}

/** Stripe's refund status as coinshop knows it (an unknown or missing one is still `pending`). */
export function providerRefundStatus(status: string | null | undefined): ProviderRefundStatus {
  return status === 'succeeded' || status === 'failed' || status === 'canceled' || status === 'requires_action' ? status : 'pending';
}

/** A verified Stripe event: its id, type and the object it carries (a PaymentIntent, Charge, Dispute…). */
export interface WebhookEvent {
  id: string;
  type: string;
  object: Record<string, unknown>;
}

/** The provider refused a refund (nothing left to refund, payment not captured, …). */
export class RefundRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RefundRejected';
  }
}

/** A webhook that must not be processed: no, bad or stale signature. */
export class WebhookRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookRejected';
  }
}

/** No webhook signing secret is configured, so no webhook can be trusted. */
export class WebhooksNotConfigured extends WebhookRejected {
  constructor() {
    super('no webhook signing secret is configured (STRIPE_WEBHOOK_SECRET)');
    this.name = 'WebhooksNotConfigured';
  }
}

export interface ChargeRequest {
  amountCents: number;
  currency: string;
  customerId: string;
  paymentMethodId: string;
  description: string;
  metadata: Record<string, string>;
  /** Our transaction id: a retry of the same purchase can never charge twice. */
  idempotencyKey: string;
}

export type ChargeOutcome =
  | { status: 'succeeded'; paymentIntentId: string }
  | { status: 'requires_action'; paymentIntentId: string; clientSecret: string }
  | { status: 'processing'; paymentIntentId: string }
  | {
      status: 'declined';
      paymentIntentId: string | undefined;
      /** Stripe's error `code`, e.g. `card_declined`, `expired_card`. */
      code: string;
      /** Stripe's `decline_code`, e.g. `insufficient_funds`, `generic_decline`. */
      declineCode: string | undefined;
    };

/** The provider refused the payment method itself (unknown id, already attached elsewhere, …). */
export class PaymentMethodRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PaymentMethodRejected';
  }
}

/**
 * The provider failed or could not be reached. `mayHaveCharged` is true when the request may have
 * taken effect (network error, timeout, 5xx, or a call the SDK sent more than once): the purchase
 * stays pending until Stripe is asked again.
 */
export class GatewayError extends Error {
  readonly mayHaveCharged: boolean;

  constructor(message: string, options: { mayHaveCharged: boolean; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = 'GatewayError';
    this.mayHaveCharged = options.mayHaveCharged;
  }
}

/** Seed-style test tokens (`pm_card_visa`, …) are stored as they are, without a provider call. */
export function isTestToken(paymentMethodId: string): boolean {
  return paymentMethodId.startsWith('pm_card_');
}

/** A simulation control was asked for something Stripe would not allow in the object's state. */
export class SimulationRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimulationRefused';
  }
}

/** A simulation control was asked about an object the simulator never made. */
export class SimulatedObjectNotFound extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimulatedObjectNotFound';
  }
}

/** Receives each event the simulation emits, as Stripe would POST it: raw body and signature. */
export type WebhookListener = (payload: string, signature: string) => Promise<void>;

/**
 * What a gateway that plays Stripe offline can also do: deliver its events to the app, signed as
 * Stripe's are, and act out what happens outside the API (a customer finishing 3-D Secure, a bank
 * opening or deciding a dispute).
 */
export interface PaymentSimulation {
  /** Where signed events go (the app's own webhook endpoint). */
  onWebhook(listener: WebhookListener): void;
  /** The customer completes (or fails) 3-D Secure for a PaymentIntent waiting for it. */
  authenticate(paymentIntentId: string, outcome: 'succeed' | 'fail'): Promise<ChargeOutcome>;
  /** The cardholder's bank opens a dispute on a succeeded payment. Returns the dispute id. */
  dispute(paymentIntentId: string): Promise<string>;
  /** The dispute is decided. Returns the disputed PaymentIntent's id. */
  closeDispute(disputeId: string, outcome: 'won' | 'lost'): Promise<string>;
  /** A Checkout Session the simulation hosts, as its page shows it; undefined when unknown. */
  checkoutPage(sessionId: string): SimulatedCheckoutPage | undefined;
  /**
   * What the customer (or time) does with a hosted Checkout Session: `complete` pays it with
   * `paymentMethod` (a test card; `pm_card_visa` when omitted), `fail` starts a delayed payment that
   * the bank then refuses, `expire` lets it expire. A declining card leaves the session open and
   * says why, as Stripe's page does.
   */
  finishCheckout(
    sessionId: string,
    outcome: 'complete' | 'fail' | 'expire',
    paymentMethod?: string,
  ): Promise<{ session: CheckoutSession; declined?: string | undefined }>;
}

/** What the simulated hosted Checkout page shows. */
export interface SimulatedCheckoutPage {
  session: CheckoutSession;
  amountCents: number;
  currency: string;
  productName: string;
  successUrl: string;
  cancelUrl: string;
  transactionId: string;
}
