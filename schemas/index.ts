import { AuthenticationRequired, FieldError, Problem } from './problem.js';
import { CreateCustomerRequest, CreateCustomerResponse, Customer } from './customer.js';
import { AttachPaymentMethodRequest, AttachPaymentMethodResponse } from './payment-method.js';
import { Package, PackageList } from './catalog.js';
import {
  Purchase,
  PurchaseCurrencyRequest,
  PurchaseResult,
  RefundPurchaseRequest,
  Transaction,
  TransactionHistory,
  TransactionStatus,
} from './purchase.js';
import { CheckoutSessionCreated, CreateCheckoutSessionRequest } from './checkout-session.js';
import { LedgerEntry, LedgerPage, LedgerReason, SpendCurrencyRequest, SpendResult, StripeEvent, WebhookAck } from './ledger.js';
import { SimulateAuthenticationRequest, SimulateCheckoutRequest, SimulateDisputeClosedRequest, SimulationResult } from './simulator.js';
import { Health, Readiness } from './operations.js';
import { ClientToken, ClientTokenRequest } from './client-token.js';
import {
  Notification,
  NotificationDelivery,
  NotificationPage,
  NotificationType,
  PurchaseEventData,
  SpendEventData,
} from './notification.js';

/** Every named schema, registered once with `app.addSchema`; each becomes a `components.schemas` entry. */
export const namedSchemas = [
  FieldError,
  Problem,
  AuthenticationRequired,
  CreateCustomerRequest,
  CreateCustomerResponse,
  Customer,
  ClientTokenRequest,
  ClientToken,
  AttachPaymentMethodRequest,
  AttachPaymentMethodResponse,
  Package,
  PackageList,
  PurchaseCurrencyRequest,
  PurchaseResult,
  TransactionStatus,
  Transaction,
  TransactionHistory,
  Purchase,
  RefundPurchaseRequest,
  CreateCheckoutSessionRequest,
  CheckoutSessionCreated,
  SpendCurrencyRequest,
  SpendResult,
  LedgerReason,
  LedgerEntry,
  LedgerPage,
  StripeEvent,
  WebhookAck,
  SimulateAuthenticationRequest,
  SimulateDisputeClosedRequest,
  SimulateCheckoutRequest,
  SimulationResult,
  NotificationType,
  PurchaseEventData,
  SpendEventData,
  NotificationDelivery,
  Notification,
  NotificationPage,
  Health,
  Readiness,
] as const;

export { ref } from './ref.js';
