/**
 * Stripe's test-mode PaymentMethod tokens and what Stripe does with each, as documented by Stripe.
 * The simulated gateway answers from this table; the seed's own alias is translated for real Stripe.
 */
export type TestCardBehaviour =
  { outcome: 'succeed' } | { outcome: 'decline'; code: string; declineCode: string } | { outcome: 'authenticate' };

const succeed: TestCardBehaviour = { outcome: 'succeed' };
const decline = (code: string, declineCode: string): TestCardBehaviour => ({ outcome: 'decline', code, declineCode });

export const TEST_CARDS: Readonly<Record<string, TestCardBehaviour>> = {
  pm_card_visa: succeed,
  pm_card_visa_debit: succeed,
  pm_card_mastercard: succeed,
  pm_card_mastercard_debit: succeed,
  pm_card_mastercard_prepaid: succeed,
  pm_card_amex: succeed,
  pm_card_discover: succeed,
  pm_card_diners: succeed,
  pm_card_jcb: succeed,
  pm_card_unionpay: succeed,
  pm_card_createDispute: succeed,
  pm_card_refundFail: succeed,
  pm_card_visa_chargeDeclined: decline('card_declined', 'generic_decline'),
  pm_card_chargeDeclined: decline('card_declined', 'generic_decline'),
  pm_card_visa_chargeDeclinedInsufficientFunds: decline('card_declined', 'insufficient_funds'),
  pm_card_chargeDeclinedInsufficientFunds: decline('card_declined', 'insufficient_funds'),
  pm_card_visa_chargeDeclinedLostCard: decline('card_declined', 'lost_card'),
  pm_card_visa_chargeDeclinedStolenCard: decline('card_declined', 'stolen_card'),
  pm_card_chargeDeclinedExpiredCard: decline('expired_card', 'expired_card'),
  pm_card_chargeDeclinedIncorrectCvc: decline('incorrect_cvc', 'incorrect_cvc'),
  pm_card_chargeDeclinedProcessingError: decline('processing_error', 'processing_error'),
  pm_card_chargeDeclinedFraudulent: decline('card_declined', 'fraudulent'),
  pm_card_visa_chargeDeclinedVelocityLimitExceeded: decline('card_declined', 'card_velocity_exceeded'),
  pm_card_chargeCustomerFail: decline('card_declined', 'generic_decline'),
  pm_card_authenticationRequired: { outcome: 'authenticate' },
  pm_card_threeDSecure2Required: { outcome: 'authenticate' },
};

/** Seed names that are not Stripe tokens, and the Stripe token that behaves as the seed means. */
export const SEED_TOKEN_ALIASES: Readonly<Record<string, string>> = {
  pm_card_insufficient_funds: 'pm_card_visa_chargeDeclinedInsufficientFunds',
};

/** The token to send to Stripe for a stored payment method id. */
export function toStripeToken(paymentMethodId: string): string {
  return SEED_TOKEN_ALIASES[paymentMethodId] ?? paymentMethodId;
}

/** How Stripe's test mode treats a token; undefined where Stripe would answer `resource_missing`. */
export function testCardBehaviour(token: string): TestCardBehaviour | undefined {
  const behaviour = TEST_CARDS[toStripeToken(token)];
  if (behaviour) return behaviour;
  // Country cards (pm_card_us, pm_card_gb, …) succeed.
  return /^pm_card_[a-z]{2}$/.test(token) ? succeed : undefined;
}
