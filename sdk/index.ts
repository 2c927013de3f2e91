import createClient, { type Client } from 'openapi-fetch';
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
export type SpendCurrencyRequest = Schemas['SpendCurrencyRequest'];
export type SpendResult = Schemas['SpendResult'];
export type LedgerReason = Schemas['LedgerReason'];
export type LedgerEntry = Schemas['LedgerEntry'];
export type LedgerPage = Schemas['LedgerPage'];

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
