import Stripe from 'stripe';
import { WebhookRejected, WebhooksNotConfigured, type WebhookEvent } from './types.js';

/** Stripe's own check: HMAC-SHA256 of `${t}.${body}` with the endpoint secret, at most 300 s old. */
export function verifyStripeSignature(payload: Buffer, signature: string | undefined, secret: string | undefined): WebhookEvent {
  if (!secret) throw new WebhooksNotConfigured();
  if (!signature) throw new WebhookRejected('missing Stripe-Signature header');
  let event: Stripe.Event;
  try {
    event = Stripe.webhooks.constructEvent(payload, signature, secret);
  } catch (err) {
    throw new WebhookRejected(err instanceof Error ? err.message : 'invalid signature');
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
