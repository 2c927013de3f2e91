import t from 'tap';
import { TEST_CARDS } from '../src/gateway/test-cards.js';
import { attachCard, buildTestApp, buy, customerWithCard, createCustomer, expectProblem, get, json } from './support/helper.js';

const declines: [string, string, string][] = [
  ['pm_card_chargeDeclined', 'card_declined', 'Card was declined'],
  ['pm_card_visa_chargeDeclined', 'card_declined', 'Card was declined'],
  ['pm_card_insufficient_funds', 'insufficient_funds', 'Insufficient funds'],
  ['pm_card_visa_chargeDeclinedInsufficientFunds', 'insufficient_funds', 'Insufficient funds'],
  ['pm_card_chargeDeclinedInsufficientFunds', 'insufficient_funds', 'Insufficient funds'],
  ['pm_card_visa_chargeDeclinedLostCard', 'card_declined', 'Card was declined'],
  ['pm_card_visa_chargeDeclinedStolenCard', 'card_declined', 'Card was declined'],
  ['pm_card_chargeDeclinedFraudulent', 'card_declined', 'Card was declined'],
  ['pm_card_visa_chargeDeclinedVelocityLimitExceeded', 'card_declined', 'Card was declined'],
  ['pm_card_chargeCustomerFail', 'card_declined', 'Card was declined'],
  ['pm_card_chargeDeclinedExpiredCard', 'expired_card', 'Card was declined: the card has expired'],
  ['pm_card_chargeDeclinedIncorrectCvc', 'incorrect_cvc', "Card was declined: the card's security code is incorrect"],
  [
    'pm_card_chargeDeclinedProcessingError',
    'processing_error',
    'Card was declined: an error occurred while processing the card, try again',
  ],
];

const successes = Object.entries(TEST_CARDS)
  .filter(([, behaviour]) => behaviour.outcome === 'succeed')
  .map(([token]) => token)
  .concat(['pm_card_us', 'pm_card_gb']);

t.test('every succeeding test card buys a pack and credits it', async (t) => {
  const app = await buildTestApp(t);
  t.ok(successes.length >= 12, 'the documented succeeding cards are all tried');
  for (const card of successes) {
    const { user_id } = await customerWithCard(app, card);
    const response = await buy(app, user_id, 'package_1');
    t.equal(response.statusCode, 200, card);
    t.equal(json(response)['new_balance'], 100, `${card} credits 100 coins`);
  }
});

t.test('every declining test card is refused with its own code, and nothing is credited', async (t) => {
  const app = await buildTestApp(t);
  const declining = Object.entries(TEST_CARDS)
    .filter(([, b]) => b.outcome === 'decline')
    .map(([token]) => token);
  t.same(
    declines
      .map(([card]) => card)
      .filter((c) => c !== 'pm_card_insufficient_funds')
      .sort(),
    declining.sort(),
    'every declining Stripe test card is covered here',
  );
  for (const [card, code, detail] of declines) {
    const { user_id } = await customerWithCard(app, card);
    const body = expectProblem(t, await buy(app, user_id, 'package_2'), 400, code, detail);
    const history = json(await get(app, `/stripe/transactions/${user_id}`)) as { transactions: Record<string, unknown>[] };
    t.match(history.transactions, [{ transaction_id: body['transaction_id'], status: 'failed', failure_code: code }]);
    t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 0, `${card}: nothing credited`);
  }
});

t.test('cards that need 3-D Secure answer 402 with what a front end needs to finish', async (t) => {
  const app = await buildTestApp(t);
  for (const card of ['pm_card_authenticationRequired', 'pm_card_threeDSecure2Required']) {
    const { user_id } = await customerWithCard(app, card);
    const body = expectProblem(t, await buy(app, user_id, 'package_1'), 402, 'authentication_required');
    t.match(body['payment_intent_id'], /^pi_sim_/);
    t.equal(body['client_secret'], `${String(body['payment_intent_id'])}_secret_sim`);
    const history = json(await get(app, `/stripe/transactions/${user_id}`)) as { transactions: Record<string, unknown>[] };
    t.match(history.transactions, [{ transaction_id: body['transaction_id'], status: 'requires_action' }]);
    t.equal(json(await get(app, `/stripe/customer/${user_id}`))['currency_balance'], 0, 'not credited before it succeeds');
  }
});

t.test('payment method ids the simulation cannot honour are refused clearly', async (t) => {
  const app = await buildTestApp(t);
  const { user_id } = await createCustomer(app);
  expectProblem(
    t,
    await attachCard(app, user_id, 'pm_1PqRsTuVwXyZ'),
    400,
    'invalid_payment_method',
    "Invalid payment method: No such PaymentMethod: 'pm_1PqRsTuVwXyZ'",
  );
  expectProblem(t, await buy(app, user_id, 'package_1'), 400, 'no_payment_method', 'No payment method attached');

  const unknownToken = await customerWithCard(app, 'pm_card_doesNotExist');
  const body = expectProblem(t, await buy(app, unknownToken.user_id, 'package_1'), 400, 'invalid_payment_method');
  const history = json(await get(app, `/stripe/transactions/${unknownToken.user_id}`)) as { transactions: Record<string, unknown>[] };
  t.match(history.transactions, [{ transaction_id: body['transaction_id'], status: 'failed', failure_code: 'invalid_payment_method' }]);
});

t.test('a new card replaces the saved one', async (t) => {
  const app = await buildTestApp(t);
  const { user_id } = await customerWithCard(app, 'pm_card_chargeDeclined');
  expectProblem(t, await buy(app, user_id, 'package_1'), 400, 'card_declined');
  t.equal((await attachCard(app, user_id, 'pm_card_mastercard')).statusCode, 200);
  const response = await buy(app, user_id, 'package_1');
  t.equal(response.statusCode, 200);
  t.equal(json(response)['new_balance'], 100);
  const history = json(await get(app, `/stripe/transactions/${user_id}`)) as { transactions: Record<string, unknown>[] };
  t.same(
    history.transactions.map((tx) => tx['status']),
    ['completed', 'failed'],
    'newest first',
  );
});
