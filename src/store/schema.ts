import type { Generated, Insertable, Selectable } from 'kysely';

/** A purchase's life; it only ever moves forward (see DESIGN.md, money invariant 4). */
export type PurchaseStatus = 'pending' | 'requires_action' | 'succeeded' | 'failed';

export interface CustomersTable {
  user_id: string;
  email: string;
  name: string;
  stripe_customer_id: string;
  /** The saved card: a Stripe PaymentMethod id or a seed test token. */
  payment_method_id: string | null;
  /** Always the sum of this customer's ledger entries; written only with one. */
  currency_balance: number;
  created_at: string;
}

export interface PurchasesTable {
  id: Generated<number>;
  transaction_id: string;
  user_id: string;
  package_id: string;
  package_name: string;
  amount_cents: number;
  currency: string;
  coins: number;
  status: PurchaseStatus;
  payment_intent_id: string | null;
  failure_code: string | null;
  created_at: string;
  updated_at: string;
}

export type LedgerReason = 'purchase';

export interface LedgerEntriesTable {
  id: Generated<number>;
  user_id: string;
  /** Coins added (positive) or removed (negative). */
  amount: number;
  reason: LedgerReason;
  /** The object behind the entry (for a purchase, its PaymentIntent); unique per reason. */
  reference: string;
  transaction_id: string | null;
  created_at: string;
}

export interface Database {
  customers: CustomersTable;
  purchases: PurchasesTable;
  ledger_entries: LedgerEntriesTable;
}

export type CustomerRow = Selectable<CustomersTable>;
export type PurchaseRow = Selectable<PurchasesTable>;
export type NewPurchase = Insertable<PurchasesTable>;
