import createClient, { type Client } from 'openapi-fetch';
import { Webhook } from 'standardwebhooks';
import type { components, paths } from './schema.js';

export type { components, operations, paths } from './schema.js';

type Schemas = components['schemas'];

export type Problem = Schemas['Problem'];
export type FieldError = Schemas['FieldError'];
export type AuthenticationRequired = Schemas['AuthenticationRequired'];
export type CreateCustomerRequest = Schemas['CreateCustomerRequest'];
export type CreateCustomerResponse = Schemas['CreateCustomerResponse'];
export type Customer = Schemas['Customer'];
export type AttachPaymentMethodRequest = Schemas['AttachPaymentMethodRequest'];
export type AttachPaymentMethodResponse = Schemas['AttachPaymentMethodResponse'];
export type Package = Schemas['Package'];
export type PackageList = Schemas['PackageList'];
export type PurchaseCurrencyRequest = Schemas['PurchaseCurrencyRequest'];
export type PurchaseResult = Schemas['PurchaseResult'];
export type TransactionStatus = Schemas['TransactionStatus'];
export type Transaction = Schemas['Transaction'];
export type TransactionHistory = Schemas['TransactionHistory'];
export type Purchase = Schemas['Purchase'];
export type RefundPurchaseRequest = Schemas['RefundPurchaseRequest'];
export type CreateCheckoutSessionRequest = Schemas['CreateCheckoutSessionRequest'];
export type CheckoutSessionCreated = Schemas['CheckoutSessionCreated'];
export type SpendCurrencyRequest = Schemas['SpendCurrencyRequest'];
export type SpendResult = Schemas['SpendResult'];
export type LedgerReason = Schemas['LedgerReason'];
export type LedgerEntry = Schemas['LedgerEntry'];
export type LedgerPage = Schemas['LedgerPage'];
export type NotificationType = Schemas['NotificationType'];
export type PurchaseEventData = Schemas['PurchaseEventData'];
export type SpendEventData = Schemas['SpendEventData'];
export type Notification = Schemas['Notification'];
export type NotificationPage = Schemas['NotificationPage'];

/** What the game server receives at GAME_WEBHOOK_URL: one money event. */
export interface NotificationEvent {
  type: NotificationType;
  /** When the change it reports committed. */
  timestamp: string;
  data: PurchaseEventData | SpendEventData;
}

/**
 * Verifies a notification coinshop sent to the game server — its `webhook-id`, `webhook-timestamp`
 * (at most 5 minutes off) and `webhook-signature` headers over the raw body, with GAME_WEBHOOK_SECRET
 * (`whsec_…`) — and returns the event. Throws (standardwebhooks' WebhookVerificationError) when any
 * of that does not hold: answer 400 and do nothing then. Dedupe by `webhook-id`: a notification is
 * delivered at least once, and may come again after a timeout or a redelivery.
 */
export function verifyNotification(
  rawBody: string,
  headers: Record<string, string | string[] | undefined>,
  secret: string,
): NotificationEvent {
  const pick = (name: string) => {
    const value = headers[name];
    return Array.isArray(value) ? (value[0] ?? '') : (value ?? '');
  };
  const signed = {
    'webhook-id': pick('webhook-id'),
    'webhook-timestamp': pick('webhook-timestamp'),
    'webhook-signature': pick('webhook-signature'),
  };
  return new Webhook(secret).verify(rawBody, signed) as NotificationEvent;
}

/** A coinshop client: every path, body, parameter and response typed from openapi.yaml. */
export type CoinshopClient = Client<paths>;

/**
 * A client for the coinshop at `baseUrl` (e.g. `http://localhost:8000`), sending
 * `Authorization: Bearer <apiKey>` when a key is given (needed when the server sets API_KEYS).
 * Each call resolves to `{ data, error, response }`: `data` on 2xx, `error` (a `Problem`) otherwise.
 */
export function createCoinshopClient(baseUrl: string, apiKey?: string): CoinshopClient {
  return createClient<paths>({
    baseUrl,
    ...(apiKey === undefined ? {} : { headers: { authorization: `Bearer ${apiKey}` } }),
  });
}
