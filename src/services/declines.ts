import { ProblemError } from '../errors.js';

/**
 * The problem a declined card gets, decided from Stripe's `code` and `decline_code` (never message
 * text). Seed messages are kept word for word; lost, stolen and fraudulent cards get the generic
 * decline, as Stripe advises, so a fraudster learns nothing.
 */
export function declineProblem(code: string, declineCode: string | undefined, transactionId: string): ProblemError {
  const ext = { transaction_id: transactionId };
  if (declineCode === 'insufficient_funds') return new ProblemError('insufficient_funds', 'Insufficient funds', ext);
  switch (code) {
    case 'expired_card':
      return new ProblemError('expired_card', 'Card was declined: the card has expired', ext);
    case 'incorrect_cvc':
      return new ProblemError('incorrect_cvc', "Card was declined: the card's security code is incorrect", ext);
    case 'processing_error':
      return new ProblemError('processing_error', 'Card was declined: an error occurred while processing the card, try again', ext);
    default:
      return new ProblemError('card_declined', 'Card was declined', ext);
  }
}
