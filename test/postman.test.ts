import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run, type NewmanRunOptions, type NewmanRunSummary } from 'newman';
import { convertV2, validate, type CollectionResult } from 'openapi-to-postmanv2';
import t from 'tap';
import { parse } from 'yaml';
import { freshDatabaseUrl } from './support/database.js';
import { startServer } from './support/process.js';
import { projectFile } from './support/project.js';

const collectionFile = fileURLToPath(projectFile('postman/coinshop.postman_collection.json'));
const environmentFile = fileURLToPath(projectFile('postman/coinshop.postman_environment.json'));
const openapiYaml = readFileSync(projectFile('openapi.yaml'), 'utf8');

/** The parts of a Postman collection (v2.1) these tests read. */
interface PostmanItem {
  name: string;
  item?: PostmanItem[];
  event?: { listen: string; script: { exec: string[] } }[];
  request?: { method: string; url: { raw: string }; body?: { mode: string; raw?: string } };
}
interface PostmanCollection {
  item: PostmanItem[];
  auth?: { type: string };
  variable?: { key: string; value: string }[];
}

const requestsOf = (items: PostmanItem[]): PostmanItem[] => items.flatMap((item) => (item.item ? requestsOf(item.item) : [item]));

function runNewman(options: NewmanRunOptions): Promise<NewmanRunSummary> {
  return new Promise((resolve, reject) => {
    run(options, (err, summary) => (err ? reject(err) : resolve(summary)));
  });
}

t.test('the Postman collection runs green in newman against a fresh server that requires an API key', async (t) => {
  const apiKey = 'ck_test_postman_0123456789abcdefghij';
  const server = await startServer({ DATABASE_URL: await freshDatabaseUrl({ shared: true }), API_KEYS: apiKey });
  t.teardown(() => server.child.kill('SIGKILL'));
  t.match(server.output(), 'SIMULATED', 'payments are simulated: no Stripe key');
  const unauthenticated = await fetch(`${server.url}/stripe/packages`);
  t.equal(unauthenticated.status, 401, 'the server refuses a request without the key');

  const collection = JSON.parse(readFileSync(collectionFile, 'utf8')) as PostmanCollection;
  t.same(
    collection.auth,
    { type: 'bearer', bearer: [{ key: 'token', value: '{{apiKey}}', type: 'string' }] },
    'collection-level bearer auth',
  );
  const requests = requestsOf(collection.item);
  const testScripts = requests.flatMap((r) => (r.event ?? []).filter((e) => e.listen === 'test'));
  const assertions = testScripts.flatMap((e) => e.script.exec).filter((line) => /\bpm\.test\(/.test(line)).length;
  t.ok(requests.length >= 25 && assertions >= 2 * requests.length, `${requests.length} requests, ${assertions} pm.test assertions`);
  t.ok(
    requests.every((r) => r.request?.url.raw.startsWith('{{baseUrl}}/')),
    'every request goes to {{baseUrl}}',
  );

  // Twice on the same server: each run makes its own customers and keys, so neither sees the other.
  for (const round of ['first run', 'second run']) {
    const summary = await runNewman({
      collection: collectionFile,
      environment: environmentFile,
      envVar: [
        { key: 'baseUrl', value: server.url },
        { key: 'apiKey', value: apiKey },
      ],
      reporters: [],
      timeoutRequest: 30_000,
    });
    const failures = summary.run.failures.map((f) => `${f.source?.name ?? f.at}: ${f.error.test ?? ''} ${f.error.message}`);
    t.same(failures, [], `${round}: no failure`);
    const stats = summary.run.stats;
    t.equal(stats.requests.total, requests.length, `${round}: every request of the collection ran`);
    t.equal(stats.requests.failed, 0, `${round}: every request got a response`);
    t.equal(stats.assertions.total, assertions, `${round}: every pm.test ran`);
    t.equal(stats.assertions.failed, 0, `${round}: every assertion passed`);
    t.equal(stats.testScripts.failed, 0, `${round}: no test script threw`);
    t.equal(stats.prerequestScripts.failed, 0, `${round}: no pre-request script threw`);
    t.notOk(
      summary.run.executions.some((e) => e.response.code === 401),
      `${round}: the bearer auth from {{apiKey}} reached the server`,
    );
  }
});

type Json = Record<string, unknown>;
const asJson = (value: unknown): Json => (typeof value === 'object' && value !== null ? (value as Json) : {});

function convert(data: string): Promise<{ result: CollectionResult | undefined; warnings: unknown[][] }> {
  // The converter reports problems with a spec only on the console: collect them.
  const warnings: unknown[][] = [];
  const { warn, error } = console;
  console.warn = (...args: unknown[]) => void warnings.push(args);
  console.error = (...args: unknown[]) => void warnings.push(args);
  return new Promise<{ result: CollectionResult | undefined; warnings: unknown[][] }>((resolve, reject) => {
    convertV2(
      { type: 'string', data },
      { folderStrategy: 'Tags', parametersResolution: 'Example', requestNameSource: 'Fallback' },
      (err, result) => (err ? reject(new Error(err.message)) : resolve({ result, warnings })),
    );
  }).finally(() => {
    console.warn = warn;
    console.error = error;
  });
}

t.test('openapi.yaml imports into Postman (openapi-to-postmanv2) cleanly, with the documented examples', async (t) => {
  t.match(validate({ type: 'string', data: openapiYaml }), { result: true }, 'the converter accepts the document');
  const { result, warnings } = await convert(openapiYaml);
  t.same(warnings, [], 'no warning or error reported');
  t.equal(result?.result, true);
  t.equal(result?.reason, undefined);
  const collection = result?.output?.[0]?.data as PostmanCollection | undefined;
  if (!collection) throw new Error('no collection');

  const document = asJson(parse(openapiYaml));
  const servers = document['servers'];
  t.same(
    collection.variable?.find((v) => v.key === 'baseUrl')?.value,
    asJson(Array.isArray(servers) ? servers[0] : {})['url'],
    'baseUrl from servers',
  );
  t.equal(collection.auth?.type, 'bearer', 'bearer auth from the apiKey security scheme');

  const operations = Object.values(asJson(document['paths'])).flatMap((pathItem) => Object.values(asJson(pathItem)).map(asJson));
  const tags = (document['tags'] as { name: string }[]).map((tag) => tag.name);
  t.same(
    collection.item.map((folder) => folder.name),
    tags,
    'one folder per tag, in order',
  );
  for (const folder of collection.item) {
    const expected = operations.filter((op) => (op['tags'] as string[])[0] === folder.name).map((op) => op['summary']);
    t.same((folder.item ?? []).map((request) => request.name).sort(), expected.sort(), `${folder.name}: requests named by their summaries`);
  }

  const requests = requestsOf(collection.item);
  t.equal(requests.length, operations.length, 'every operation is a request');
  const schemas = asJson(asJson(document['components'])['schemas']);
  for (const [summary, schema] of [
    ['Register a player as a Stripe customer', 'CreateCustomerRequest'],
    ["Save a card as the customer's payment method", 'AttachPaymentMethodRequest'],
    ['Buy a coin package with the saved card', 'PurchaseCurrencyRequest'],
    ['Spend coins on an in-game item', 'SpendCurrencyRequest'],
  ] as const) {
    const request = requests.find((r) => r.name === summary)?.request;
    t.equal(request?.method, 'POST', `${summary}: a POST`);
    t.same(JSON.parse(request?.body?.raw ?? 'null'), asJson(schemas[schema])['example'], `${summary}: the body is the ${schema} example`);
  }
  t.same(
    requests
      .filter((r) => r.request?.body?.raw !== undefined)
      .map((r) => JSON.stringify(JSON.parse(r.request?.body?.raw ?? '')))
      .filter((raw) => /<\w+>/.test(raw)),
    [],
    'no request body falls back to schema placeholders like <string>',
  );
});
