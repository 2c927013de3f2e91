import Stripe from 'stripe';
import { WebhookRejected, WebhooksNotConfigured, type WebhookEvent } from './types.js';

/** How far a signature's timestamp may be from now, either way (Stripe's default tolerance). */
export const WEBHOOK_TOLERANCE_SECONDS = 300;

/**
 * Stripe's own check (HMAC-SHA256 of `${t}.${body}` with the endpoint secret, at most 300 s old),
 * plus the one stripe-node leaves out: a timestamp no more than 300 s ahead, so a signature made
 * for later cannot be replayed for longer than one made now.
 */
export function verifyStripeSignature(payload: Buffer, signature: string | undefined, secret: string | undefined): WebhookEvent {
  if (!secret) throw new WebhooksNotConfigured();
  if (!signature) throw new WebhookRejected('missing Stripe-Signature header');
  let event: Stripe.Event;
  try {
    event = Stripe.webhooks.constructEvent(payload, signature, secret, WEBHOOK_TOLERANCE_SECONDS);
  } catch (err) {
    throw new WebhookRejected(err instanceof Error ? err.message : 'invalid signature');
  }
  const timestamp = Number(/(?:^|,)\s*t=(\d+)/.exec(signature)?.[1]);
  if (timestamp > Math.floor(Date.now() / 1000) + WEBHOOK_TOLERANCE_SECONDS) {
    throw new WebhookRejected(`Timestamp is more than ${WEBHOOK_TOLERANCE_SECONDS} seconds in the future`);
  }
  const object: unknown = event.data?.object;
  if (typeof event.id !== 'string' || typeof event.type !== 'string' || typeof object !== 'object' || object === null) {
    throw new WebhookRejected('the payload is not a Stripe event');
  }
  return { id: event.id, type: event.type, object: object as Record<string, unknown> };
}

/** The header Stripe would send with `payload`: used by the simulated gateway to sign its events. */
export function signWebhook(payload: string, secret: string): string {
  return Stripe.webhooks.generateTestHeaderString({ payload, secret });
}
