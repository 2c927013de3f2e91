import { AuthenticationRequired, Problem } from './problem.js';
import { CreateCustomerRequest, CreateCustomerResponse, Customer } from './customer.js';
import { AttachPaymentMethodRequest, AttachPaymentMethodResponse } from './payment-method.js';
import { Package, PackageList } from './catalog.js';
import { PurchaseCurrencyRequest, PurchaseResult, Transaction, TransactionHistory } from './purchase.js';

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
] as const;

export { ref } from './ref.js';
