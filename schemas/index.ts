import { AuthenticationRequired, Problem } from './problem.js';
import { CreateCustomerRequest, CreateCustomerResponse, Customer } from './customer.js';
import { AttachPaymentMethodRequest, AttachPaymentMethodResponse } from './payment-method.js';
import { Package, PackageList } from './catalog.js';
import { Purchase, PurchaseCurrencyRequest, PurchaseResult, RefundPurchaseRequest, Transaction, TransactionHistory } from './purchase.js';
import { LedgerEntry, LedgerPage, SpendCurrencyRequest, SpendResult, StripeEvent, WebhookAck } from './ledger.js';
import { SimulationResult } from './simulator.js';
import { Health, Readiness } from './operations.js';

/** Every named schema, registered once with `app.addSchema`; each becomes a `components.schemas` entry. */
export const namedSchemas = [
  Problem,
  AuthenticationRequired,
  CreateCustomerRequest,
  CreateCustomerResponse,
  Customer,
  AttachPaymentMethodRequest,
  AttachPaymentMethodResponse,
  Package,
  PackageList,
  PurchaseCurrencyRequest,
  PurchaseResult,
  Transaction,
  TransactionHistory,
  Purchase,
  RefundPurchaseRequest,
  SpendCurrencyRequest,
  SpendResult,
  LedgerEntry,
  LedgerPage,
  StripeEvent,
  WebhookAck,
  SimulationResult,
  Health,
  Readiness,
] as const;

export { ref } from './ref.js';
