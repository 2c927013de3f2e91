import type { LightMyRequestResponse } from 'fastify';
import t from 'tap';
import { contractViolations } from './support/contract.js';
import { buildTestApp } from './support/helper.js';

/** A response as inject gives one, with what the checker reads. */
const answer = (statusCode: number, contentType: string | undefined, body: string) =>
  ({ statusCode, headers: contentType === undefined ? {} : { 'content-type': contentType }, body }) as unknown as LightMyRequestResponse;

t.test('the contract check finds an undocumented status, content type or body, and passes a documented answer', async (t) => {
  const app = await buildTestApp(t);
  const real = await app.inject({ method: 'GET', url: '/stripe/packages' });
  t.same(contractViolations('GET', '/stripe/packages', real), [], 'a real answer is as documented');
  t.match(contractViolations('GET', '/stripe/packages', answer(418, 'application/json', '{}')), [
    /^GET \/stripe\/packages → 418: status not documented/,
  ]);
  t.match(contractViolations('GET', '/stripe/packages', answer(200, 'text/html', real.body)), [/content type "text\/html" not documented/]);
  t.match(contractViolations('GET', '/stripe/packages', answer(200, 'application/json', '{"packages":[{"package_id":1}]}')), [
    /body does not match its schema/,
  ]);
  t.match(contractViolations('GET', '/stripe/customer/abc', answer(404, 'application/problem+json', '{"detail":"Customer not found"}')), [
    /body does not match its schema/,
  ]);
  t.match(contractViolations('GET', '/stripe/packages', answer(304, 'application/json', '{}')), [/documented without a body/]);
  t.same(contractViolations('GET', '/stripe/packages', answer(304, undefined, '')), []);
  t.same(
    contractViolations('GET', '/checkout', answer(200, 'text/html', '<html>')),
    [],
    'what openapi.yaml does not describe is not checked',
  );
});
