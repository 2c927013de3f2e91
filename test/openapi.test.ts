import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { writeOrCheck } from '../src/cli/generated-file.js';
import { renderOpenapi } from '../src/cli/openapi.js';
import { buildTestApp, get, json } from './support/helper.js';
import { projectFile } from './support/project.js';

type Json = Record<string, unknown>;
const asJson = (v: unknown) => (typeof v === 'object' && v !== null ? (v as Json) : {});

t.test('openapi.yaml is exactly what the app serves (run `npm run openapi` after changing a route or schema)', async (t) => {
  const committed = readFileSync(projectFile('openapi.yaml'), 'utf8');
  t.equal(await renderOpenapi(), committed);
});

t.test('the document names every shape and describes every operation', async (t) => {
  const app = await buildTestApp(t);
  const served = await get(app, '/openapi.json');
  t.equal(served.statusCode, 200);
  const document = json(served);
  t.same(document, parse(readFileSync(projectFile('openapi.yaml'), 'utf8')), '/openapi.json is openapi.yaml');

  const schemas = asJson(asJson(document['components'])['schemas']);
  for (const name of ['Customer', 'CreateCustomerRequest', 'PurchaseResult', 'Problem', 'PackageList', 'TransactionHistory']) {
    t.ok(schemas[name], `components.schemas.${name}`);
  }
  t.notOk(
    Object.keys(schemas).some((name) => /^def-\d+$/.test(name)),
    'no numbered component names',
  );

  const operations = Object.values(asJson(document['paths'])).flatMap((item) => Object.values(asJson(item)).map(asJson));
  t.same(
    operations.map((op) => op['operationId']).sort(),
    [
      'attachPaymentMethod',
      'createCheckoutSession',
      'createClientToken',
      'createCustomer',
      'getCustomer',
      'getHealth',
      'getMetrics',
      'getNotification',
      'getPurchase',
      'getReadiness',
      'listLedgerEntries',
      'listNotifications',
      'listPackages',
      'listTransactions',
      'purchaseCurrency',
      'receiveStripeWebhook',
      'redeliverNotification',
      'refundPurchase',
      'simulateAuthentication',
      'simulateCheckout',
      'simulateDispute',
      'simulateDisputeClosed',
      'spendCurrency',
    ],
    "the seed's six operations and the rest, each with its operationId",
  );
  for (const op of operations) {
    const id = String(op['operationId']);
    t.ok(Array.isArray(op['tags']) && op['tags'].length === 1, `${id} has a tag`);
    t.ok(typeof op['summary'] === 'string' && op['summary'].length > 0, `${id} has a summary`);
    const responses = asJson(op['responses']);
    const ok = asJson(Object.values(asJson(asJson(responses['200'])['content']))[0]);
    t.ok(ok['example'] !== undefined, `${id}: its 200 response has an example`);
    const body = asJson(asJson(asJson(op['requestBody'])['content'])['application/json']);
    if (op['requestBody']) t.ok(body['example'] !== undefined, `${id}: its request body has an example`);
    for (const [status, response] of Object.entries(responses)) {
      t.ok(asJson(response)['description'], `${id} ${status} is described`);
      if (Number(status) >= 400) {
        const media = asJson(asJson(asJson(response)['content'])['application/problem+json']);
        t.ok(media['schema'], `${id} ${status} is a problem document`);
      }
    }
  }
});

t.test('Swagger UI is served at /docs and points "Try it out" at the server it came from', async (t) => {
  const app = await buildTestApp(t);
  const page = await app.inject({ method: 'GET', url: '/docs/' });
  t.equal(page.statusCode, 200);
  t.match(page.body, /swagger-ui/i);
  const spec = await app.inject({ method: 'GET', url: '/docs/json', headers: { host: 'shop.internal:9001' } });
  t.same(json(spec)['servers'], [{ url: 'http://shop.internal:9001', description: 'This server' }]);
});

t.test('a generator writes its file, and --check fails (exit code 1) only when the committed file drifted', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coinshop-generated-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = pathToFileURL(join(dir, 'spec.yaml'));
  const options = { source: 'what the app serves', command: 'npm run openapi' };
  const exitCode = process.exitCode;
  t.teardown(() => void (process.exitCode = exitCode));
  const errors: string[] = [];
  const error = console.error;
  const log = console.log;
  console.error = (line: string) => void errors.push(line);
  console.log = () => undefined;
  t.teardown(() => {
    console.error = error;
    console.log = log;
  });
  t.ok(writeOrCheck(file, 'a: 1\n', { ...options, check: false }));
  t.equal(readFileSync(file, 'utf8'), 'a: 1\n', 'written');
  t.ok(writeOrCheck(file, 'a: 1\n', { ...options, check: true }), 'unchanged: the check passes');
  t.equal(process.exitCode, exitCode);
  t.notOk(writeOrCheck(file, 'a: 2\n', { ...options, check: true }), 'drifted: the check fails');
  t.equal(process.exitCode, 1);
  t.same(errors, ['spec.yaml differs from what the app serves: run `npm run openapi` and commit it.']);
  t.equal(readFileSync(file, 'utf8'), 'a: 1\n', 'a check writes nothing');
});
