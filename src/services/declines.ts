import { ProblemError, type ProblemCode } from '../errors.js';

/** What a failed purchase says, by the failure code recorded with it. Seed messages word for word. */
export const FAILURE_DETAILS = {
  card_declined: 'Card was declined',
  insufficient_funds: 'Insufficient funds',
  expired_card: 'Card was declined: the card has expired',
  incorrect_cvc: "Card was declined: the card's security code is incorrect",
  processing_error: 'Card was declined: an error occurred while processing the card, try again',
  authentication_failed: 'Card was declined: the customer did not complete authentication',
  invalid_payment_method: 'Invalid payment method: Stripe does not know this payment method',
  checkout_expired: 'The Stripe Checkout Session expired before the customer paid; nothing was charged',
  async_payment_failed: "The customer's bank refused the delayed payment; nothing was charged",
  payment_provider_refused:
    'The payment provider refused the request, and nothing was charged; to try again, send the purchase with a new Idempotency-Key',
} as const satisfies Partial<Record<ProblemCode, string>>;

/**
 * Failure codes recorded under another name than their problem's: a purchase Stripe refused before
 * it charged anything keeps `payment_provider_error` in its history, and answers with a final 424
 * (kept under its Idempotency-Key) rather than a 5xx its retries would meet for ever.
 */
const PROBLEM_OF_FAILURE: Readonly<Record<string, keyof typeof FAILURE_DETAILS>> = {
  payment_provider_error: 'payment_provider_refused',
};

/**
 * Our failure code for a decline, decided from Stripe's `code` and `decline_code` (never message
 * text). Lost, stolen and fraudulent cards get the generic decline, as Stripe advises, so a
 * fraudster learns nothing.
 */
export function declineCode(code: string, declineCode: string | undefined): ProblemCode {
  if (declineCode === 'insufficient_funds') return 'insufficient_funds';
  switch (code) {
    case 'expired_card':
    case 'incorrect_cvc':
    case 'processing_error':
      return code;
    case 'payment_intent_authentication_failure':
      return 'authentication_failed';
    default:
      return 'card_declined';
  }
}

/** The problem a failed purchase answers with. */
export function failureProblem(failureCode: string | null, transactionId: string): ProblemError {
  const named = failureCode === null ? undefined : (PROBLEM_OF_FAILURE[failureCode] ?? failureCode);
  const code = named !== undefined && named in FAILURE_DETAILS ? (named as keyof typeof FAILURE_DETAILS) : 'card_declined';
  return new ProblemError(code, FAILURE_DETAILS[code], { transaction_id: transactionId });
}
