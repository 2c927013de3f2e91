import http from 'node:http';
import https from 'node:https';
import type { FastifyBaseLogger } from 'fastify';
import { Webhook } from 'standardwebhooks';
import type { NotificationRow } from '../store/schema.js';
import type { Store } from '../store/store.js';
import { nextAttemptAt, notificationBody } from './notifications.js';

export interface SenderOptions {
  url: string;
  /** `whsec_` + base64: the Standard Webhooks signing secret. */
  secret: string;
  /** Only these types are sent (all when undefined); the others stay in the feed. */
  types: readonly string[] | undefined;
  /** How long the game server gets to answer one attempt. */
  timeoutMs: number;
  /** How often the outbox is looked at when nothing woke the sender (other replicas' work, retries that came due). */
  pollMs: number;
  /** Notifications claimed, sent (at once) and recorded together. */
  batchSize: number;
  /** Batches under way at once, at most. */
  maxBatches: number;
  log: FastifyBaseLogger;
  onAttempt?: (outcome: 'delivered' | 'retry' | 'failed') => void;
}

/** An attempt's result: the receiver's 2xx, or what went wrong. */
type Attempt = { ok: true } | { ok: false; error: string };

/** How long a wake-up waits for more commits to join it, so a busy shop claims and records in batches. */
const GATHER_MS = 5;

/**
 * Delivers the outbox to the game server: signed (Standard Webhooks), at least once, retried with
 * backoff for three days. Runs beside the request path: a change only wakes it (after its commit),
 * so a receiver that is slow or down costs a purchase nothing.
 *
 * Each notification is held by one sender at a time: claiming it takes a lease longer than an
 * attempt can last (several replicas on PostgreSQL skip each other's rows), so no two attempts at
 * the same notification overlap. A sender that dies mid-attempt leaves its lease to run out; the
 * notification is then sent again, with the same `webhook-id`. Notifications are claimed, sent and
 * recorded in batches: two commits a batch, not two a notification.
 */
export class NotificationSender {
  readonly #store: Store;
  readonly #options: SenderOptions;
  readonly #webhook: Webhook;
  readonly #leaseMs: number;
  readonly #url: URL;
  readonly #request: typeof http.request;
  readonly #agent: http.Agent;
  readonly #batches = new Set<Promise<void>>();
  readonly #aborts = new Set<AbortController>();
  #timer: NodeJS.Timeout | undefined;
  #gathering: NodeJS.Timeout | undefined;
  #pumping = false;
  #again = false;
  #closed = false;

  constructor(store: Store, options: SenderOptions) {
    this.#store = store;
    this.#options = options;
    this.#webhook = new Webhook(options.secret);
    // Longer than an attempt can take (its timeout) plus the time to record its outcome.
    this.#leaseMs = options.timeoutMs + 5_000;
    this.#url = new URL(options.url);
    const secure = this.#url.protocol === 'https:';
    this.#request = secure ? https.request : http.request;
    // Connections to the game server are kept open between deliveries (at most a batch's worth).
    this.#agent = new (secure ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: options.batchSize * options.maxBatches });
  }

  start(): void {
    this.#timer = setInterval(() => this.wake(), this.#options.pollMs);
    this.#timer.unref();
    this.wake();
  }

  /** Looks at the outbox soon (a change committed, a batch finished). */
  wake(): void {
    if (this.#closed) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#gathering ??= setTimeout(() => {
      this.#gathering = undefined;
      void this.#pump();
    }, GATHER_MS);
  }

  /** Stops sending: attempts under way are abandoned (their leases run out; they are sent again later). */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#gathering);
    for (const abort of this.#aborts) abort.abort();
    await Promise.allSettled([...this.#batches]);
    this.#agent.destroy();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      do {
        this.#again = false;
        if (this.#batches.size >= this.#options.maxBatches) break;
        const at = Date.now();
        const claimed = await this.#store.claimNotifications({
          at: new Date(at).toISOString(),
          leaseUntil: new Date(at + this.#leaseMs).toISOString(),
          limit: this.#options.batchSize,
          types: this.#options.types,
        });
        if (claimed.length === 0) break;
        const batch = this.#deliver(claimed).finally(() => {
          this.#batches.delete(batch);
          this.wake();
        });
        this.#batches.add(batch);
        if (claimed.length === this.#options.batchSize) this.#again = true;
      } while (this.#again && !this.#closed);
    } catch (err) {
      this.#options.log.error({ err }, 'notification sender: could not read the outbox');
    } finally {
      this.#pumping = false;
    }
  }

  /** Sends a claimed batch at once, then records every outcome in one transaction. */
  async #deliver(rows: NotificationRow[]): Promise<void> {
    // The lease claimNotifications took (the same for the whole batch): outcomes are recorded only while it is still ours.
    const lease = rows[0]?.lease_until;
    if (lease === null || lease === undefined) return;
    const attempts = await Promise.all(rows.map((row) => this.#send(row)));
    if (this.#closed) return;
    const now = Date.now();
    const outcomes = rows.map((row, i) => {
      const attempt = attempts[i] ?? { ok: false, error: 'not sent' };
      if (attempt.ok) return { id: row.id, status: 'delivered' as const, at: new Date(now).toISOString() };
      const next = nextAttemptAt(Date.parse(row.retry_from), now, Math.random());
      return {
        id: row.id,
        status: next === undefined ? ('failed' as const) : ('pending' as const),
        error: attempt.error,
        nextAttemptAt: new Date(next ?? now).toISOString(),
        attempts: row.attempts,
      };
    });
    try {
      await this.#store.settleNotifications(lease, outcomes);
    } catch (err) {
      // The leases run out and the notifications are sent again: at least once, never lost.
      this.#options.log.error({ err, notifications: rows.length }, 'notification sender: could not record a batch of attempts');
      return;
    }
    for (const outcome of outcomes) {
      if (outcome.status === 'delivered') {
        this.#options.onAttempt?.('delivered');
        continue;
      }
      this.#options.onAttempt?.(outcome.status === 'failed' ? 'failed' : 'retry');
      const details = { notificationId: outcome.id, error: outcome.error, attempts: outcome.attempts };
      if (outcome.status === 'failed') this.#options.log.error(details, 'notification not delivered after 3 days of retries: failed');
      else this.#options.log.warn(details, 'notification delivery failed; will retry');
    }
  }

  /**
   * One attempt: POST the signed event, no redirects followed, answered within the timeout. Through
   * node:http with a keep-alive agent rather than fetch: measured in one run, a delivery cost
   * coinshop 0.10 ms of CPU this way and 0.26 ms through fetch (docs/benchmarks.md), on every
   * purchase's way out.
   */
  #send(row: NotificationRow): Promise<Attempt> {
    const body = notificationBody(row);
    const at = new Date();
    const abort = new AbortController();
    this.#aborts.add(abort);
    return new Promise<Attempt>((resolve) => {
      let settled = false;
      const finish = (attempt: Attempt) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#aborts.delete(abort);
        resolve(attempt);
      };
      const request = this.#request(this.#url, {
        method: 'POST',
        agent: this.#agent,
        signal: abort.signal,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'user-agent': 'coinshop-notifications',
          'webhook-id': row.id,
          'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
          'webhook-signature': this.#webhook.sign(row.id, at, body),
        },
      });
      const timer = setTimeout(() => {
        finish({ ok: false, error: `timed out after ${this.#options.timeoutMs / 1000} s` });
        request.destroy();
      }, this.#options.timeoutMs);
      request.on('response', (response) => {
        // The answer's body means nothing to us; reading it to the end lets the connection be reused.
        response.resume();
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          finish(status >= 200 && status < 300 ? { ok: true } : { ok: false, error: `HTTP ${status}` });
        });
        response.on('error', (err) => finish({ ok: false, error: err.message }));
      });
      request.on('error', (err) => finish({ ok: false, error: abort.signal.aborted ? 'sender closed' : err.message || String(err) }));
      request.end(body);
    });
  }
}
