import type { FastifyBaseLogger } from 'fastify';
import type { PaymentsGateway } from '../gateway/types.js';
import type { Metrics } from '../plugins/metrics.js';
import type { PurchaseStatus, RefundStatus } from '../store/schema.js';
import type { Store } from '../store/store.js';
import { REVIVAL_WINDOW_MS, refreshPurchase } from './purchases.js';
import { finishRefund } from './refunds.js';

const STRIPE_KEY_KEPT_MS = 23 * 3_600_000;

export interface ReconcileReport {
  /** Purchases looked at: unfinished ones older than the cutoff, and recent ones failed at 3-D Secure. */
  checked: number;
  /** What they are now, by status (those still `pending`/`requires_action` could not be finished yet). */
  outcomes: Partial<Record<PurchaseStatus, number>>;
  /** Operator refunds whose answer from Stripe was never recorded, by what they are now (`requested`: not yet). */
  refunds: Partial<Record<RefundStatus, number>>;
  /** Customers whose balance is not the sum of their ledger entries (there should be none). */
  mismatches: { user_id: string; balance: number; ledger: number }[];
  /** Ledger journals whose entries do not sum to zero (there should be none). */
  unbalancedJournals: number[];
  /** Idempotency keys older than their time to live, now forgotten. */
  sweptKeys: number;
}

/**
 * Finishes purchases left `pending` or `requires_action` for longer than `olderThanMs` by asking
 * Stripe (and credits those failed at 3-D Secure that the customer paid after all), and operator
 * refunds whose answer was never recorded (asking again under the same key), then checks every
 * balance against its ledger and forgets expired Idempotency-Keys.
 * Safe to run at any time, from any number of processes: every step converges.
 */
export async function reconcile(
  deps: { store: Store; payments: PaymentsGateway; log: FastifyBaseLogger; metrics?: Pick<Metrics, 'ledgerMismatches'> },
  options: { olderThanMs: number; keyTtlHours: number },
): Promise<ReconcileReport> {
  const cutoff = new Date(Date.now() - options.olderThanMs).toISOString();
  const failedSince = new Date(Date.now() - REVIVAL_WINDOW_MS).toISOString();
  const report: ReconcileReport = { checked: 0, outcomes: {}, refunds: {}, mismatches: [], unbalancedJournals: [], sweptKeys: 0 };
  for (let afterId = 0; ;) {
    const batch = await deps.store.listToReconcile(cutoff, failedSince, afterId, 100);
    if (batch.length === 0) break;
    for (const stale of batch) {
      afterId = stale.id;
      const { purchase } = await refreshPurchase(deps, stale, { reissueAfterMs: options.olderThanMs });
      report.checked += 1;
      report.outcomes[purchase.status] = (report.outcomes[purchase.status] ?? 0) + 1;
    }
  }
  // Stripe keeps an idempotency key's answer for 24 hours: past that, asking again could refund twice.
  const keyKeptSince = new Date(Date.now() - STRIPE_KEY_KEPT_MS).toISOString();
  for (let afterId = 0; ;) {
    const batch = await deps.store.listUnfinishedRefunds(cutoff, afterId, 100);
    if (batch.length === 0) break;
    for (const attempt of batch) {
      afterId = attempt.id;
      let status: RefundStatus = attempt.status;
      if (attempt.created_at < keyKeptSince) {
        deps.log.error(
          { transactionId: attempt.transaction_id, refundKey: attempt.refund_key },
          'refund unfinished for over 23 hours: check it in Stripe',
        );
      } else status = await finishRefund(deps, attempt);
      report.refunds[status] = (report.refunds[status] ?? 0) + 1;
    }
  }
  report.mismatches = await deps.store.balanceMismatches();
  report.unbalancedJournals = await deps.store.unbalancedJournals();
  report.sweptKeys = await deps.store.sweepKeys(new Date(Date.now() - options.keyTtlHours * 3_600_000).toISOString());
  for (const mismatch of report.mismatches) deps.log.error(mismatch, 'ledger mismatch: balance differs from the sum of its entries');
  deps.metrics?.ledgerMismatches.inc(report.mismatches.length);
  if (report.unbalancedJournals.length > 0) deps.log.error({ journals: report.unbalancedJournals }, 'unbalanced ledger journals');
  return report;
}
