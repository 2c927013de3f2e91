/**
 * Property-based fuzzing of the whole HTTP API, driven by openapi.yaml: for every operation, fast-check
 * generates valid requests (schema-conforming values, ids drawn from real ones), mutated ones (a
 * required field dropped, unknown fields, wrong types, lengths and ranges, null, arrays, empty or
 * broken JSON, wrong content types, prototype keys, wrong methods) and hostile ones (SQL, script tags,
 * RTL marks, emoji, NUL, lone surrogates, 10k-character strings, path traversal, percent-encoded junk,
 * `__proto__`) in every string position, path and query parameter and header. At least 10,000
 * requests go to one app (a third as many on PostgreSQL, see runsFor), and for each:
 *
 * - no 5xx;
 * - every 4xx is `application/problem+json` and a valid Problem document (`status` = the HTTP status,
 *   `type` = `urn:coinshop:problem:<code>`, `request_id` = the `x-request-id` header, a `detail`);
 * - no response shows a stack trace or the API key;
 * - a request the spec says is valid is never refused as `validation_error`;
 * - every refused (4xx) request leaves the store as it was, except exactly: a POST holding a
 *   well-formed Idempotency-Key may remember its refusal (one completed `idempotency_keys` row whose
 *   status is this answer's), and a purchase the card declined (or that needs 3-D Secure) records
 *   its failed / requires_action attempt (one purchase row, and the simulated Stripe's one
 *   `payment_intent.*` event) without touching a balance or the ledger;
 * - a replayed answer (`Idempotent-Replayed: true`) changes nothing and repeats the first answer.
 *
 * Violations are collected (not thrown at the first), so one run reports every broken invariant with
 * the shortest requests that break it. FC_SEED=<seed> picks the generator seed (printed on each run);
 * the server's own ids are random, so a seed reproduces the mix of requests, not each id.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { isDeepStrictEqual } from 'node:util';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import fc from 'fast-check';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { type RawBuilder, sql } from 'kysely';
import t from 'tap';
import { parse } from 'yaml';
import { TEST_ENGINE } from './support/database.js';
import { buildTestApp } from './support/helper.js';
import { projectFile } from './support/project.js';

// ---------------------------------------------------------------------------------------------
// The API, as openapi.yaml describes it

interface Schema {
  $ref?: string;
  type?: string;
  format?: string;
  pattern?: string;
  enum?: unknown[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
}

interface Parameter {
  in: 'path' | 'query' | 'header' | 'cookie';
  name: string;
  required?: boolean;
  schema: Schema;
}

interface OperationObject {
  operationId: string;
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, { content?: Record<string, unknown> }>;
}

interface OpenApi {
  paths: Record<string, Record<string, OperationObject>>;
  components: { schemas: Record<string, Schema> };
}

const spec = parse(readFileSync(projectFile('openapi.yaml'), 'utf8')) as OpenApi;

/** A schema with every `#/components/schemas/...` reference replaced by what it points at. */
function resolve(schema: Schema): Schema {
  if (schema.$ref !== undefined) {
    const name = schema.$ref.replace('#/components/schemas/', '');
    const target = spec.components.schemas[name];
    if (!target) throw new Error(`openapi.yaml: unresolved $ref ${schema.$ref}`);
    return resolve(target);
  }
  const out: Schema = { ...schema };
  if (schema.properties) out.properties = Object.fromEntries(Object.entries(schema.properties).map(([k, s]) => [k, resolve(s)]));
  if (schema.items) out.items = resolve(schema.items);
  if (schema.anyOf) out.anyOf = schema.anyOf.map(resolve);
  if (schema.oneOf) out.oneOf = schema.oneOf.map(resolve);
  if (typeof schema.additionalProperties === 'object') out.additionalProperties = resolve(schema.additionalProperties);
  return out;
}

// The same validator and formats the service uses, fed from the spec: what the spec calls valid.
const ajv = new Ajv({ allErrors: true, strict: false });
addFormats.default(ajv);
const coercingAjv = new Ajv({ allErrors: true, strict: false, coerceTypes: true });
addFormats.default(coercingAjv);

const problemSchema = (name: string): ValidateFunction => {
  const schema = spec.components.schemas[name];
  if (!schema) throw new Error(`openapi.yaml has no ${name} schema`);
  return ajv.compile(resolve(schema));
};
const validProblem = problemSchema('Problem');
const validAuthenticationRequired = problemSchema('AuthenticationRequired');

interface Operation {
  id: string;
  method: 'GET' | 'POST';
  path: string;
  pathParams: Parameter[];
  queryParams: Parameter[];
  /** Header parameters other than Idempotency-Key (the webhook's Stripe-Signature). */
  headerParams: Parameter[];
  body: Schema | undefined;
  /** Declares an Idempotency-Key header. */
  idempotent: boolean;
  /** Answers 200 with text, not JSON (GET /metrics). */
  textResponse: boolean;
  validPath: ValidateFunction;
  validQuery: ValidateFunction;
  validBody: ValidateFunction | undefined;
}

const paramsSchema = (params: Parameter[], strictKeys: boolean): Schema => ({
  type: 'object',
  properties: Object.fromEntries(params.map((p) => [p.name, resolve(p.schema)])),
  required: params.filter((p) => p.required === true).map((p) => p.name),
  additionalProperties: !strictKeys,
});

const operations: Operation[] = Object.entries(spec.paths).flatMap(([path, item]) =>
  Object.entries(item)
    .filter(([method]) => method === 'get' || method === 'post')
    .map(([method, op]): Operation => {
      const parameters = op.parameters ?? [];
      const jsonBody = op.requestBody?.content['application/json']?.schema;
      const body = jsonBody ? resolve(jsonBody) : undefined;
      const pathParams = parameters.filter((p) => p.in === 'path');
      const queryParams = parameters.filter((p) => p.in === 'query');
      return {
        id: op.operationId,
        method: method === 'get' ? 'GET' : 'POST',
        path,
        pathParams,
        queryParams,
        headerParams: parameters.filter((p) => p.in === 'header' && p.name.toLowerCase() !== 'idempotency-key'),
        body,
        idempotent: parameters.some((p) => p.in === 'header' && p.name.toLowerCase() === 'idempotency-key'),
        textResponse: op.responses['200']?.content?.['text/plain'] !== undefined,
        validPath: ajv.compile(paramsSchema(pathParams, true)),
        // Query parameters are text, converted as the service converts them; an undeclared one is not valid.
        validQuery: coercingAjv.compile(paramsSchema(queryParams, true)),
        validBody: body ? ajv.compile(body) : undefined,
      };
    }),
);

// ---------------------------------------------------------------------------------------------
// Real ids to draw from (seeded, then harvested from every answer)

const pools: Record<'user_id' | 'transaction_id' | 'payment_intent_id' | 'dispute_id', string[]> = {
  user_id: [],
  transaction_id: [],
  payment_intent_id: [],
  dispute_id: [],
};
type PoolName = keyof typeof pools;
const isPoolName = (name: string): name is PoolName => name in pools;
const POOL_CAP = 400;

function remember(name: PoolName, value: string) {
  const pool = pools[name];
  if (pool.includes(value)) return;
  if (pool.length < POOL_CAP) pool.push(value);
  else pool[Math.floor(Math.random() * POOL_CAP)] = value;
}

/** Picks from a pool as it is when the value is generated (the pools grow as the run goes). */
const fromPool = (name: PoolName, otherwise: fc.Arbitrary<string>) =>
  fc.nat().chain((i) => {
    const pool = pools[name];
    return pool.length === 0 ? otherwise : fc.constant(pool[i % pool.length] ?? '');
  });

/** Ids are found where the API returns them: any JSON answer, one level into `purchase`. */
function harvest(value: unknown, depth = 0) {
  if (depth > 2 || value === null || typeof value !== 'object' || Array.isArray(value)) return;
  for (const [key, v] of Object.entries(value)) {
    if (typeof v === 'string' && isPoolName(key) && v.length > 0 && v.length <= 64) remember(key, v);
    else if (typeof v === 'object') harvest(v, depth + 1);
  }
}

const PACKAGE_IDS: string[] = [];
const CARDS = [
  'pm_card_visa',
  'pm_card_visa',
  'pm_card_mastercard',
  'pm_card_chargeDeclined',
  'pm_card_insufficient_funds',
  'pm_card_chargeDeclinedExpiredCard',
  'pm_card_threeDSecure2Required',
  'pm_card_us',
  'pm_card_unknown_token',
];

// ---------------------------------------------------------------------------------------------
// Values: valid ones from the schemas, with hints where a field names a real thing

const stringFor = (schema: Schema): fc.Arbitrary<string> => {
  const min = schema.minLength ?? 0;
  const max = schema.maxLength ?? 60;
  const fits = (s: string) => [...s].length >= min && [...s].length <= max;
  if (schema.format === 'email') return fc.emailAddress().filter(fits);
  if (schema.format === 'uuid') return fc.uuid();
  if (schema.format === 'date-time') return fc.date({ noInvalidDate: true }).map((d) => d.toISOString());
  if (schema.pattern !== undefined) return fc.stringMatching(new RegExp(schema.pattern)).filter(fits);
  const maxLength = Math.min(max, 40);
  return fc.oneof(
    { weight: 3, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: min, maxLength }) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: min, maxLength }).filter(fits) },
  );
};

const hex = (length: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: length, maxLength: length });

const HINTS: Record<string, () => fc.Arbitrary<unknown>> = {
  user_id: () => fromPool('user_id', fc.uuid()),
  transaction_id: () => fromPool('transaction_id', fc.uuid()),
  payment_intent_id: () =>
    fromPool(
      'payment_intent_id',
      hex(24).map((h) => `pi_sim_${h}`),
    ),
  dispute_id: () =>
    fromPool(
      'dispute_id',
      hex(24).map((h) => `dp_sim_${h}`),
    ),
  package_id: () => fc.constantFrom(...PACKAGE_IDS),
  payment_method_id: () => fc.constantFrom(...CARDS),
  amount: () => fc.integer({ min: 1, max: 150 }),
  amount_cents: () => fc.integer({ min: 1, max: 1500 }),
  'stripe-signature': () =>
    fc.tuple(fc.integer({ min: 1_600_000_000, max: 2_000_000_000 }), hex(64)).map(([ts, sig]) => `t=${ts},v1=${sig}`),
};

function baseArb(schema: Schema): fc.Arbitrary<unknown> {
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives) return fc.oneof(...alternatives.map(baseArb));
  switch (schema.type) {
    case 'string':
      return stringFor(schema);
    case 'integer':
      return fc.integer({ min: schema.minimum ?? -1_000_000, max: schema.maximum ?? 1_000_000 });
    case 'number':
      return fc.double({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'array':
      return fc.array(baseArb(schema.items ?? {}), { maxLength: 3 });
    case 'object': {
      const model: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [name, property] of Object.entries(schema.properties ?? {})) model[name] = valueArb(property, name);
      return fc.record(model, { requiredKeys: schema.required ?? [] });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** A value for a field: mostly the hint (a real id, a package for sale, a test card), else any the schema allows. */
function valueArb(schema: Schema, name?: string): fc.Arbitrary<unknown> {
  const base = baseArb(schema);
  const hint = name === undefined ? undefined : HINTS[name];
  return hint ? fc.oneof({ weight: 4, arbitrary: hint() }, { weight: 1, arbitrary: base }) : base;
}

/** Values the schema refuses, each with what is wrong with it. */
function invalidValues(schema: Schema): { label: string; value: unknown }[] {
  const out: { label: string; value: unknown }[] = [{ label: 'null', value: null }];
  const isEnum = schema.enum !== undefined || (schema.anyOf ?? []).every((s) => s.enum !== undefined);
  if (isEnum) out.push({ label: 'not-in-enum', value: 'definitely_not_an_option' }, { label: 'wrong-type', value: 1 });
  const type = schema.type ?? schema.anyOf?.[0]?.type;
  switch (type) {
    case 'string':
      out.push(
        { label: 'wrong-type', value: 12345 },
        { label: 'wrong-type', value: true },
        { label: 'object-for-string', value: { a: 1 } },
      );
      out.push({ label: 'array-for-string', value: ['x'] });
      if ((schema.minLength ?? 0) > 0) out.push({ label: 'too-short', value: 'x'.repeat((schema.minLength ?? 1) - 1) });
      if (schema.maxLength !== undefined) out.push({ label: 'too-long', value: 'x'.repeat(schema.maxLength + 1) });
      if (schema.pattern !== undefined) out.push({ label: 'pattern', value: 'no match !' });
      if (schema.format !== undefined) out.push({ label: 'format', value: 'not a valid @ value' });
      break;
    case 'integer':
    case 'number':
      out.push({ label: 'wrong-type', value: '12' }, { label: 'wrong-type', value: true }, { label: 'array-for-number', value: [1] });
      if (type === 'integer') out.push({ label: 'not-an-integer', value: 1.5 });
      if (schema.minimum !== undefined) out.push({ label: 'out-of-range', value: schema.minimum - 1 });
      if (schema.maximum !== undefined) out.push({ label: 'out-of-range', value: schema.maximum + 1 });
      out.push(
        { label: 'out-of-range', value: 1e21 },
        { label: 'out-of-range', value: -1e21 },
        { label: 'out-of-range', value: Number.MAX_SAFE_INTEGER + 2 },
      );
      break;
    case 'object':
      out.push({ label: 'wrong-type', value: 'x' }, { label: 'array-for-object', value: [] }, { label: 'wrong-type', value: 7 });
      break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Hostile strings

const TEN_K = 'A'.repeat(10_000);
const HOSTILE = [
  "' OR 1=1 --",
  '"; DROP TABLE customers; --',
  "'); DROP TABLE customers; --",
  "1' UNION SELECT key, response_body FROM idempotency_keys --",
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  '\u202Egnp.exe\u202C',
  '\u200F\u200E\u202B',
  '💰🪙👨‍👩‍👧‍👦',
  'a\u0000b',
  '\u0000',
  '\uD800',
  '\uDC00x',
  'x\uD83D',
  'Z̷̛̝a̵l̶g̴o̷',
  '\uFEFF',
  TEN_K,
  'é'.repeat(300),
  '../../etc/passwd',
  '..\\..\\windows\\win.ini',
  '/etc/passwd%00.png',
  '%00',
  '%zz',
  '%E0%A4%A',
  '%ED%A0%80',
  '%25%32%65%25%32%65',
  '..%2f..%2fetc%2fpasswd',
  '__proto__',
  'constructor',
  'prototype',
  '__proto__[polluted]',
  'constructor.prototype.polluted',
  '${jndi:ldap://x/a}',
  '{{7*7}}',
  'null',
  'undefined',
  'NaN',
  '-1',
  '1e309',
  '9'.repeat(40),
  '',
  ' ',
  '\t\n\r',
  '\\',
  '"',
  "'",
  'pm_card_visa\u0000',
  ' package_1',
  'PACKAGE_1',
] as const;

/** Percent-encoded junk that is only junk when it reaches the URL unencoded. */
const URL_SAFE = /^[\x21-\x7e]+$/;

const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...HOSTILE) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.tuple(fromPool('user_id', fc.uuid()), fc.constantFrom(...HOSTILE)).map(([id, h]) => `${id}${h}`) },
);

/** encodeURIComponent, except that a lone surrogate (which it cannot encode) becomes its invalid UTF-8 bytes. */
function encodeSegment(value: string): string {
  let out = '';
  for (const ch of value) {
    const cp = ch.codePointAt(0) ?? 0;
    if (cp >= 0xd800 && cp <= 0xdfff) {
      out += [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
    } else out += encodeURIComponent(ch);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Requests

type Kind = 'valid' | 'mutated' | 'hostile';

interface FuzzRequest {
  op: Operation;
  kind: Kind;
  label: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';
  url: string;
  headers: Record<string, string>;
  payload: string | undefined;
  /** The JSON body sent, when there is one. */
  body: unknown;
  /** The spec says this request is valid (path, query and body; Idempotency-Key judged separately). */
  specValid: boolean;
  /** Send it twice (with an Idempotency-Key: the second must be a faithful replay or a fresh answer). */
  twice: boolean;
}

interface Parts {
  path: Record<string, string>;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: unknown;
  key: string | undefined;
  twice: boolean;
}

const API_KEY = 'fuzz_api_key_0123456789abcdefghijklmnop';
/** The service's rule for an Idempotency-Key (the spec only says 1 to 255 characters). */
const WELL_FORMED_KEY = /^[\x21-\x7e]{1,255}$/;
const KEY_POOL = ['fuzz-key-1', 'fuzz-key-2', 'fuzz-key-3', 'fuzz-key-4', 'fuzz-key-5', 'fuzz-key-6'];

const idempotencyKey: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...KEY_POOL) },
  { weight: 3, arbitrary: fc.uuid() },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 255 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('a'.repeat(255), 'a'.repeat(256), 'has space', 'ключ', 'tab\there', 'nul\u0000key', '\u00e9', ''),
  },
  { weight: 1, arbitrary: hostileString },
);

function partsArb(op: Operation): fc.Arbitrary<Parts> {
  const path: Record<string, fc.Arbitrary<string>> = {};
  for (const p of op.pathParams) path[p.name] = valueArb(resolve(p.schema), p.name).map(String);
  const query: Record<string, fc.Arbitrary<string>> = {};
  for (const p of op.queryParams) query[p.name] = valueArb(resolve(p.schema), p.name).map(String);
  const headers: Record<string, fc.Arbitrary<string>> = {};
  for (const p of op.headerParams) headers[p.name] = valueArb(resolve(p.schema), p.name).map(String);
  return fc.record({
    path: fc.record(path),
    query: fc.record(query, { requiredKeys: op.queryParams.filter((p) => p.required === true).map((p) => p.name) }),
    headers: fc.record(headers),
    body: op.body ? valueArb(op.body) : fc.constant(undefined),
    key: op.idempotent ? fc.option(idempotencyKey, { nil: undefined, freq: 2 }) : fc.constant(undefined),
    twice: fc.nat({ max: 4 }).map((n) => n === 0),
  });
}

/** A path segment `.` or `..` (even as %2E) is resolved away by URL parsing: no URL can carry it as a value. */
const DOT_SEGMENT = /^(?:\.|\.\.)$/;

/**
 * Text with an unpaired surrogate is not well-formed Unicode: the service takes I-JSON (RFC 7493),
 * which forbids it, and refuses it with a 400 rather than store it altered. NUL (U+0000) is refused
 * too, anywhere, since PostgreSQL's text cannot hold it and the API is the same on every engine.
 */
const storable = (text: string) => text.isWellFormed() && !text.includes('\u0000');
const wellFormed = (value: unknown): boolean =>
  typeof value === 'string'
    ? storable(value)
    : value !== null && typeof value === 'object'
      ? Object.entries(value).every(([k, v]) => storable(k) && wellFormed(v))
      : true;

const specValidParts = (op: Operation, parts: Parts) =>
  wellFormed(parts.body) &&
  wellFormed(parts.query) &&
  Object.values(parts.path).every((v) => !v.includes('\u0000')) &&
  !Object.values(parts.path).some((v) => DOT_SEGMENT.test(v)) &&
  op.validPath({ ...parts.path }) &&
  op.validQuery({ ...parts.query }) &&
  (op.validBody ? op.validBody(parts.body) : true);

interface Overrides {
  method?: FuzzRequest['method'];
  /** Path segments as they go into the URL (already encoded, or deliberately not). */
  segments?: Record<string, string>;
  query?: string;
  headers?: Record<string, string | undefined>;
  /** The body as sent: text, its content type (undefined: none), and the JSON it is (if any). */
  payload?: { text: string | undefined; contentType: string | undefined; body: unknown };
  specValid?: boolean;
}

function assemble(op: Operation, parts: Parts, kind: Kind, label: string, o: Overrides = {}): FuzzRequest {
  const segments = o.segments ?? Object.fromEntries(Object.entries(parts.path).map(([k, v]) => [k, encodeSegment(v)]));
  const pathname = op.path.replace(/\{([^}]+)\}/g, (_, name: string) => segments[name] ?? '');
  const query =
    o.query ??
    Object.entries(parts.query)
      .map(([k, v]) => `${encodeSegment(k)}=${encodeSegment(v)}`)
      .join('&');
  const payload =
    o.payload ??
    (op.body !== undefined
      ? { text: JSON.stringify(parts.body), contentType: 'application/json', body: parts.body }
      : { text: undefined, contentType: undefined, body: undefined });
  const headers: Record<string, string> = { authorization: `Bearer ${API_KEY}`, ...parts.headers };
  if (payload.contentType !== undefined) headers['content-type'] = payload.contentType;
  if (parts.key !== undefined) headers['idempotency-key'] = parts.key;
  for (const [k, v] of Object.entries(o.headers ?? {})) {
    if (v === undefined) delete headers[k];
    else headers[k] = v;
  }
  return {
    op,
    kind,
    label,
    method: o.method ?? op.method,
    url: query.length > 0 ? `${pathname}?${query}` : pathname,
    headers,
    payload: payload.text,
    body: payload.body,
    // Judged from what is sent: a changed method, raw URL text or non-JSON body is never spec-valid.
    specValid:
      o.specValid ??
      (o.method === undefined &&
        o.segments === undefined &&
        o.query === undefined &&
        payload.contentType === (op.body ? 'application/json' : undefined) &&
        specValidParts(op, { ...parts, body: payload.body })),
    twice: parts.twice && parts.key !== undefined,
  };
}

const jsonPayload = (body: unknown) => ({ text: JSON.stringify(body), contentType: 'application/json', body });
const asRecord = (value: unknown): Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value) ? { ...(value as Record<string, unknown>) } : {};
/** An own, enumerable property even for `__proto__`, so JSON.stringify sends it. */
function withKey(target: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  return target;
}

const INVALID_JSON = [
  '{',
  '{"user_id":',
  "{'user_id': 'x'}",
  '{"a":1,}',
  '[1,2',
  'nul',
  'NaN',
  '{"amount":NaN}',
  '{"amount":Infinity}',
  '"unterminated',
  '\u0000',
  '{"a":1}{"b":2}',
  '{"a":1} trailing',
  '\uFEFF{}',
  '{"a":"\\x41"}',
  '{"a":01}',
  '<xml/>',
  `${'['.repeat(20_000)}${']'.repeat(20_000)}`,
  `${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}`,
  `${'{"constructor":'.repeat(3_000)}1${'}'.repeat(3_000)}`,
  `${'{"__proto__":'.repeat(3_000)}1${'}'.repeat(3_000)}`,
];

const CONTENT_TYPES = [
  'text/plain',
  'text/html',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=fuzz',
  'application/octet-stream',
  'application/json-patch+json',
  'application/jsonx',
  'application/json; charset=utf-16',
  'application/json; charset=bogus',
  'application/*',
  '*/*',
  'application/json, text/plain',
  ';;;',
  'APPLICATION/JSON',
];

type BodyMutation = (op: Operation, parts: Parts) => FuzzRequest;

/** Mutations of a valid request, each derived from the operation's schemas. */
function mutationArb(op: Operation): fc.Arbitrary<BodyMutation> {
  const options: fc.Arbitrary<BodyMutation>[] = [];
  const body = op.body;
  const properties = Object.entries(body?.properties ?? {});
  const required = body?.required ?? [];

  options.push(
    fc.constantFrom(...(['PUT', 'DELETE', 'PATCH', op.method === 'GET' ? 'POST' : 'GET'] as const)).map(
      (method): BodyMutation =>
        (o, parts) =>
          assemble(o, parts, 'mutated', 'wrong-method', { method }),
    ),
  );

  for (const where of ['path', 'query'] as const) {
    const params = where === 'path' ? op.pathParams : op.queryParams;
    if (params.length === 0) continue;
    options.push(
      fc.tuple(fc.nat(), fc.nat()).map(([pick, which]): BodyMutation => (o, parts) => {
        const param = params[pick % params.length];
        if (!param) throw new Error('no parameter');
        const candidates = invalidValues(resolve(param.schema));
        const bad = candidates[which % candidates.length] ?? { label: 'null', value: null };
        const value = typeof bad.value === 'object' && bad.value !== null ? JSON.stringify(bad.value) : String(bad.value);
        const changed = { ...parts, [where]: { ...parts[where], [param.name]: value } };
        return assemble(o, changed, 'mutated', `${where}-${bad.label}`);
      }),
    );
  }
  options.push(
    fc
      .tuple(
        fc.constantFrom('unknown', '__proto__', 'constructor', 'limit', 'user_id'),
        fc.constantFrom('1', '', 'x'.repeat(300), '[object Object]'),
      )
      .map(
        ([name, value]): BodyMutation =>
          (o, parts) =>
            assemble(o, { ...parts, query: { ...parts.query, [name]: value } }, 'mutated', 'query-unknown'),
      ),
  );

  if (!body) {
    options.push(
      fc.constantFrom('{"user_id":"x"}', '[]', 'null', '{').map(
        (text): BodyMutation =>
          (o, parts) =>
            assemble(o, parts, 'mutated', 'unexpected-body', {
              payload: { text, contentType: 'application/json', body: undefined },
              specValid: false,
            }),
      ),
    );
    return fc.oneof(...options);
  }

  if (required.length > 0) {
    options.push(
      fc.nat().map((pick): BodyMutation => (o, parts) => {
        const dropped = asRecord(parts.body);
        delete dropped[required[pick % required.length] ?? ''];
        return assemble(o, parts, 'mutated', 'drop-required', { payload: jsonPayload(dropped) });
      }),
    );
  }
  if (properties.length > 0) {
    options.push(
      fc.tuple(fc.nat(), fc.nat()).map(([pick, which]): BodyMutation => (o, parts) => {
        const [name, schema] = properties[pick % properties.length] ?? ['x', {}];
        const candidates = invalidValues(schema);
        const bad = candidates[which % candidates.length] ?? { label: 'null', value: null };
        return assemble(o, parts, 'mutated', `body-${bad.label}`, { payload: jsonPayload({ ...asRecord(parts.body), [name]: bad.value }) });
      }),
    );
  }
  options.push(
    fc.tuple(fc.constantFrom('unknown_field', 'is_admin', 'currency_balance', 'price_cents', 'status'), fc.jsonValue({ maxDepth: 1 })).map(
      ([name, value]): BodyMutation =>
        (o, parts) =>
          assemble(o, parts, 'mutated', 'unknown-field', { payload: jsonPayload({ ...asRecord(parts.body), [name]: value }) }),
    ),
    fc.tuple(fc.constantFrom('__proto__', 'constructor', 'prototype'), fc.boolean()).map(([key, nested]): BodyMutation => (o, parts) => {
      const polluter = withKey({}, key, key === 'constructor' ? { prototype: { polluted: 'yes' } } : { polluted: 'yes' });
      const sent = asRecord(parts.body);
      const first = Object.keys(sent)[0];
      const mutated = nested && first !== undefined ? { ...sent, [first]: polluter } : withKey(sent, key, polluter[key]);
      return assemble(o, parts, 'mutated', 'prototype-key', { payload: jsonPayload(mutated), specValid: false });
    }),
    fc.constantFrom('null', '[]', 'array-of-body', '"a string"', '42', 'true', '{}').map((shape): BodyMutation => (o, parts) => {
      const text = shape === 'array-of-body' ? JSON.stringify([parts.body]) : shape;
      return assemble(o, parts, 'mutated', `body-${shape === '{}' ? 'empty-object' : 'not-an-object'}`, {
        payload: { text, contentType: 'application/json', body: JSON.parse(text) as unknown },
      });
    }),
    fc.constantFrom<string | undefined>('application/json', undefined).map(
      (contentType): BodyMutation =>
        (o, parts) =>
          assemble(o, parts, 'mutated', 'empty-body', {
            payload: { text: contentType ? '' : undefined, contentType, body: undefined },
            specValid: false,
          }),
    ),
    fc
      .oneof(
        { weight: 3, arbitrary: fc.constantFrom(...INVALID_JSON) },
        {
          weight: 1,
          arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 60 }).filter((s) => {
            try {
              JSON.parse(s);
              return false;
            } catch {
              return true;
            }
          }),
        },
      )
      .map((text): BodyMutation => (o, parts) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        return assemble(o, parts, 'mutated', 'invalid-json', {
          payload: { text, contentType: 'application/json', body: parsed },
          specValid: false,
        });
      }),
    fc.constantFrom(...CONTENT_TYPES).map(
      (contentType): BodyMutation =>
        (o, parts) =>
          assemble(o, parts, 'mutated', 'wrong-content-type', {
            payload: { text: JSON.stringify(parts.body), contentType, body: parts.body },
            specValid: false,
          }),
    ),
    fc.constant<BodyMutation>((o, parts) =>
      assemble(o, parts, 'mutated', 'huge-body', {
        payload: jsonPayload({ ...asRecord(parts.body), padding: 'x'.repeat(70_000) }),
        specValid: false,
      }),
    ),
  );
  return fc.oneof(...options);
}

type Position = { where: 'body' | 'path' | 'query' | 'header'; name: string };

/** Every place a string goes: string fields of the body, path and query parameters, headers. */
function positions(op: Operation): Position[] {
  const isString = (s: Schema) => s.type === 'string' || (s.anyOf ?? []).some((a) => a.type === 'string');
  const out: Position[] = [];
  for (const [name, schema] of Object.entries(op.body?.properties ?? {})) if (isString(schema)) out.push({ where: 'body', name });
  for (const p of op.pathParams) out.push({ where: 'path', name: p.name });
  for (const p of op.queryParams) out.push({ where: 'query', name: p.name });
  if (op.queryParams.length === 0) out.push({ where: 'query', name: 'q' });
  for (const p of op.headerParams) out.push({ where: 'header', name: p.name });
  if (op.idempotent) out.push({ where: 'header', name: 'idempotency-key' });
  out.push({ where: 'header', name: 'x-request-id' });
  // Body fields and path parameters twice: they are where input reaches the store.
  return [...out, ...out.filter((p) => p.where === 'body' || p.where === 'path')];
}

function hostileArb(op: Operation): fc.Arbitrary<(parts: Parts) => FuzzRequest> {
  const places = positions(op);
  return fc.tuple(fc.nat(), hostileString, fc.boolean()).map(([pick, value, raw]) => (parts: Parts) => {
    const place = places[pick % places.length] ?? { where: 'header', name: 'x-request-id' };
    const label = `hostile-${place.where}`;
    switch (place.where) {
      case 'body': {
        const changed = { ...parts, body: { ...asRecord(parts.body), [place.name]: value } };
        return assemble(op, changed, 'hostile', label);
      }
      case 'path': {
        const changed = { ...parts, path: { ...parts.path, [place.name]: value } };
        // Sometimes straight into the URL, unencoded: `../..`, `%zz`, `%ED%A0%80` as the client typed them.
        if (raw && URL_SAFE.test(value) && !/[?#]/.test(value)) {
          const segments = {
            ...Object.fromEntries(Object.entries(parts.path).map(([k, v]) => [k, encodeSegment(v)])),
            [place.name]: value,
          };
          return assemble(op, changed, 'hostile', `${label}-raw`, { segments, specValid: false });
        }
        return assemble(op, changed, 'hostile', label);
      }
      case 'query': {
        if (raw && URL_SAFE.test(value) && !/[#&]/.test(value)) {
          return assemble(op, parts, 'hostile', 'hostile-query-raw', { query: `${place.name}=${value}&${value}=1`, specValid: false });
        }
        return assemble(op, { ...parts, query: { ...parts.query, [place.name]: value } }, 'hostile', label);
      }
      case 'header': {
        // A header cannot carry CR, LF or NUL over HTTP; everything else goes.
        // eslint-disable-next-line no-control-regex -- NUL is one of the characters removed
        const header = value.replace(/[\r\n\u0000]/g, '');
        const changed =
          place.name === 'idempotency-key' ? { ...parts, key: header } : { ...parts, headers: { ...parts.headers, [place.name]: header } };
        return assemble(op, changed, 'hostile', `${label}-${place.name}`);
      }
    }
  });
}

function requestArb(op: Operation): fc.Arbitrary<FuzzRequest> {
  const parts = partsArb(op);
  return fc.oneof(
    { weight: 4, arbitrary: parts.map((p) => assemble(op, p, 'valid', 'valid')) },
    { weight: 3, arbitrary: fc.tuple(parts, mutationArb(op)).map(([p, mutate]) => mutate(op, p)) },
    { weight: 3, arbitrary: fc.tuple(parts, hostileArb(op)).map(([p, hostile]) => hostile(p)) },
  );
}

// ---------------------------------------------------------------------------------------------
// The store's fingerprint

interface Fingerprint {
  customers: number;
  balance: number;
  cards: number;
  purchases: number;
  max_purchase_id: number;
  purchases_state: number;
  refunded: number;
  journals: number;
  entries: number;
  keys: number;
  keys_completed: number;
  keys_answers: number;
  events: number;
}

// The few functions SQLite and PostgreSQL spell differently.
const PG = TEST_ENGINE === 'postgres';
const total = (x: RawBuilder<unknown>) => (PG ? sql`coalesce(sum(${x}), 0)` : sql`total(${x})`);
const codeOf = (x: RawBuilder<unknown>) => (PG ? sql`ascii(${x})` : sql`unicode(${x})`);
const lastChar = (x: RawBuilder<unknown>) => (PG ? sql`right(${x}, 1)` : sql`substr(${x}, -1)`);
/** A number per customer row, so the same change to two different customers still shows. */
const customerWeight = PG ? sql`(abs(hashtext(user_id)) % 100003)` : sql`rowid`;
/** Insertion order of webhook events (PostgreSQL: the inserting transaction's id). */
const insertionOrder = PG ? sql`xmin::text::bigint` : sql`rowid`;

/** Changes when a purchase row's status, PaymentIntent or failure changes (weighted by row id). */
const PURCHASE_STATE = total(
  sql`id * (${codeOf(sql`status`)} + 7 * length(status) + 131 * length(coalesce(payment_intent_id, '')) + 1009 * length(coalesce(failure_code, '')))`,
);

/** The tables the fingerprint reads; every write to them counts in fuzz_writes (see countWrites). */
const FINGERPRINTED = ['customers', 'purchases', 'ledger_journals', 'ledger_entries', 'idempotency_keys', 'webhook_events'];

/**
 * Adds a counter the fingerprinted tables' triggers bump on every insert, update and delete, so a
 * fingerprint is recomputed only after a write: most fuzzed requests are refused and write nothing,
 * and reading every row of six growing tables twice per request made the run quadratic (three
 * minutes on PostgreSQL). Test-only schema, added to the test's own database.
 */
async function countWrites(app: FastifyInstance): Promise<void> {
  await sql`create table fuzz_writes (n bigint not null)`.execute(app.store.db);
  await sql`insert into fuzz_writes (n) values (0)`.execute(app.store.db);
  if (PG) {
    await sql`create function fuzz_count_write() returns trigger language plpgsql as $$
      begin update fuzz_writes set n = n + 1; return null; end $$`.execute(app.store.db);
  }
  for (const table of FINGERPRINTED) {
    for (const event of ['insert', 'update', 'delete']) {
      const name = sql.raw(`fuzz_${table}_${event}`);
      const on = sql.raw(`${event} on ${table}`);
      await (
        PG
          ? sql`create trigger ${name} after ${on} for each statement execute function fuzz_count_write()`
          : sql`create trigger ${name} after ${on} begin update fuzz_writes set n = n + 1; end`
      ).execute(app.store.db);
    }
  }
}

/** The last fingerprint computed, and the write count it was computed at. */
const lastFingerprint = new WeakMap<FastifyInstance, { writes: number; fingerprint: Fingerprint }>();

async function fingerprint(app: FastifyInstance): Promise<Fingerprint> {
  const { rows: counted } = await sql<{ n: number }>`select n from fuzz_writes`.execute(app.store.db);
  const writes = Number(counted[0]?.n);
  const last = lastFingerprint.get(app);
  if (last?.writes === writes) return last.fingerprint;
  // A write that lands while this runs bumps the count again, so the next call recomputes.
  const computed = await computeFingerprint(app);
  lastFingerprint.set(app, { writes, fingerprint: computed });
  return computed;
}

async function computeFingerprint(app: FastifyInstance): Promise<Fingerprint> {
  const { rows } = await sql<Fingerprint>`
    select
      (select count(*) from customers) as customers,
      (select coalesce(sum(currency_balance), 0) from customers) as balance,
      (select ${total(sql`${customerWeight} * (257 * length(coalesce(payment_method_id, '')) + coalesce(${codeOf(lastChar(sql`payment_method_id`))}, 0)
        + 7 * coalesce(${codeOf(sql`substr(payment_method_id, 9, 1)`)}, 0))`)} from customers) as cards,
      (select count(*) from purchases) as purchases,
      (select coalesce(max(id), 0) from purchases) as max_purchase_id,
      (select ${PURCHASE_STATE} from purchases) as purchases_state,
      (select coalesce(sum(refunded_cents), 0) from purchases) as refunded,
      (select count(*) from ledger_journals) as journals,
      (select count(*) from ledger_entries) as entries,
      (select count(*) from idempotency_keys) as keys,
      (select count(*) from idempotency_keys where state = 'completed') as keys_completed,
      (select ${total(sql`length(coalesce(response_body, '')) + coalesce(response_status, 0)`)} from idempotency_keys) as keys_answers,
      (select count(*) from webhook_events) as events
  `.execute(app.store.db);
  const row = rows[0];
  if (!row) throw new Error('no fingerprint');
  return row;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

const changedFields = (a: Fingerprint, b: Fingerprint) => (Object.keys(a) as (keyof Fingerprint)[]).filter((k) => a[k] !== b[k]);

// ---------------------------------------------------------------------------------------------
// Checking answers

/** Purchase refusals that record the attempt: the card (or its bank) said no, or wants 3-D Secure. */
const DECLINES = new Set([
  'card_declined',
  'insufficient_funds',
  'expired_card',
  'incorrect_cvc',
  'processing_error',
  'authentication_failed',
  'invalid_payment_method',
]);

const STACK_TRACE = /\n\s+at\s|\bat\s+\S+\s+\((?:file:|node:|\/)[^)]*:\d+:\d+\)|node:internal|\/node_modules\/|\.[cm]?[jt]s:\d+:\d+/;

interface Violation {
  /** Operation and kind of request: one example (the shortest) is kept for each. */
  sort: string;
  repro: string;
  size: number;
}

function describe(request: FuzzRequest, response: LightMyRequestResponse | undefined, why: string): string {
  const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);
  const headers = Object.fromEntries(Object.entries(request.headers).filter(([k]) => k !== 'authorization'));
  return [
    `${request.method} ${cut(JSON.stringify(request.url), 240)} [${request.op.id} ${request.kind}/${request.label}]`,
    `  headers: ${cut(JSON.stringify(headers), 300)}`,
    request.payload === undefined ? '  (no body)' : `  body: ${cut(JSON.stringify(request.payload), 300)}`,
    response
      ? `  → ${response.statusCode} ${String(response.headers['content-type'] ?? '(no content-type)')} ${cut(response.body, 300)}`
      : '',
    `  why: ${why}`,
  ].join('\n');
}

t.test('fuzz the API from openapi.yaml', async (t) => {
  const app = await buildTestApp(t, { env: { API_KEYS: API_KEY } });
  const authorization = `Bearer ${API_KEY}`;
  const call = (method: 'GET' | 'POST', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization }, ...(payload ? { payload } : {}) });
  await countWrites(app);
  // The write counter must see a write, or every fingerprint below would be the first one.
  const unwritten = await fingerprint(app);
  await call('POST', '/stripe/create-customer', { email: 'counted@example.com', name: 'Counted' });
  t.equal((await fingerprint(app)).customers, unwritten.customers + 1, 'a write is seen by the next fingerprint');
  const answer = async (method: 'GET' | 'POST', url: string, payload?: object) => {
    const response = await call(method, url, payload);
    const body = response.json<Record<string, unknown>>();
    harvest(body);
    return { status: response.statusCode, body };
  };
  const text = (value: unknown) => (typeof value === 'string' ? value : '');

  // --- Seed: customers with each kind of card, purchases in each state, a spend, a refund, a dispute.
  const packages = await answer('GET', '/stripe/packages');
  for (const p of (packages.body['packages'] as { package_id: string }[] | undefined) ?? []) PACKAGE_IDS.push(p.package_id);
  t.ok(PACKAGE_IDS.length > 0, 'the catalog lists packages');

  const customer = async (name: string, card: string | undefined) => {
    const created = await answer('POST', '/stripe/create-customer', { email: `${name}@example.com`, name });
    t.equal(created.status, 200, `seed customer ${name}`);
    const userId = text(created.body['user_id']);
    if (card) t.equal((await answer('POST', '/stripe/attach-payment-method', { user_id: userId, payment_method_id: card })).status, 200);
    return userId;
  };
  const visa = [await customer('visa1', 'pm_card_visa'), await customer('visa2', 'pm_card_visa'), await customer('visa3', 'pm_card_visa')];
  const declined = await customer('declined', 'pm_card_chargeDeclined');
  const threeDS = await customer('threeds', 'pm_card_threeDSecure2Required');
  await customer('nocard', undefined);

  const paid: string[] = [];
  for (const userId of visa) {
    for (const packageId of PACKAGE_IDS.slice(0, 2)) {
      const bought = await answer('POST', '/stripe/purchase-currency', { user_id: userId, package_id: packageId });
      t.equal(bought.status, 200, 'seed purchase');
      paid.push(text(bought.body['transaction_id']));
    }
  }
  t.equal((await answer('POST', '/stripe/purchase-currency', { user_id: declined, package_id: PACKAGE_IDS[0] ?? '' })).status, 400);
  t.equal((await answer('POST', '/stripe/purchase-currency', { user_id: threeDS, package_id: PACKAGE_IDS[0] ?? '' })).status, 402);
  t.equal((await answer('POST', '/stripe/purchase-currency', { user_id: threeDS, package_id: PACKAGE_IDS[1] ?? '' })).status, 402);
  t.equal((await answer('POST', '/stripe/spend-currency', { user_id: visa[0] ?? '', amount: 50, item_id: 'sword' })).status, 200);
  t.equal((await answer('POST', `/stripe/purchases/${paid[2] ?? ''}/refund`, { amount_cents: 300 })).status, 200);
  const toDispute = await answer('GET', `/stripe/purchases/${paid[4] ?? ''}`);
  const disputed = await answer('POST', `/simulator/payment-intents/${text(toDispute.body['payment_intent_id'])}/dispute`);
  t.equal(disputed.status, 200, 'seed dispute');
  for (const tid of paid) await answer('GET', `/stripe/purchases/${tid}`);
  t.ok(
    pools.user_id.length >= 6 && pools.transaction_id.length >= 9 && pools.payment_intent_id.length >= 6 && pools.dispute_id.length >= 1,
    'real ids collected',
  );

  // --- Fuzz.
  const violations = new Map<string, { count: number; examples: Violation[] }>();
  const violate = (invariant: string, request: FuzzRequest, response: LightMyRequestResponse | undefined, why: string) => {
    const entry = violations.get(invariant) ?? { count: 0, examples: [] };
    entry.count += 1;
    const size = request.url.length + (request.payload?.length ?? 0);
    // Keep the shortest request per kind of request: the minimal reproductions.
    const sort = `${request.op.id} ${request.label}`;
    const same = entry.examples.findIndex((e) => e.sort === sort);
    const example = { sort, repro: describe(request, response, why), size };
    if (same >= 0) {
      if ((entry.examples[same]?.size ?? Infinity) > size) entry.examples[same] = example;
    } else if (entry.examples.length < 12) entry.examples.push(example);
    violations.set(invariant, entry);
  };

  const statuses = new Map<string, number>();
  const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
  const codes = new Map<string, number>();
  const kinds = new Map<string, number>();
  /** For each Idempotency-Key, the request ids of the answers it could replay. */
  const idsByKey = new Map<string, Set<string>>();
  let sent = 0;
  let validRefusedByKeyRule = 0;
  /** How often each allowed exception to "a refusal changes nothing" was exercised (and held). */
  let refusalsRemembered = 0;
  let declinesRecorded = 0;
  const specValidByKind = new Map<string, number>();

  const check = async (request: FuzzRequest, response: LightMyRequestResponse, before: Fingerprint, after: Fingerprint) => {
    const status = response.statusCode;
    const contentType = String(response.headers['content-type'] ?? '');
    const requestId = response.headers['x-request-id'];
    const replayed = response.headers['idempotent-replayed'] === 'true';
    const key = request.headers['idempotency-key'];
    bump(statuses, String(status));
    bump(kinds, `${request.kind} ${status}`);
    bump(specValidByKind, `${request.kind} ${request.specValid ? 'spec-valid' : 'spec-invalid'}`);

    if (status >= 500) violate('no 5xx', request, response, `status ${status}`);
    if (STACK_TRACE.test(response.body)) violate('no stack trace in a response', request, response, 'the body looks like a stack trace');
    if (response.body.includes(API_KEY)) violate('the API key is never echoed', request, response, 'the body contains the API key');
    if (({} as Record<string, unknown>)['polluted'] !== undefined) {
      violate('no prototype pollution', request, response, 'Object.prototype.polluted is set');
      delete (Object.prototype as Record<string, unknown>)['polluted'];
    }

    let body: unknown;
    if (status < 300 && request.op.textResponse && request.method === 'GET' && request.label !== 'wrong-method') {
      if (!contentType.startsWith('text/plain'))
        violate('2xx has its documented content type', request, response, `content-type ${contentType}`);
    } else if (response.body.length > 0 || status >= 400) {
      try {
        body = JSON.parse(response.body) as unknown;
      } catch {
        violate(status >= 400 ? '4xx is a problem document' : '2xx body is JSON', request, response, 'the body is not JSON');
      }
    }
    if (status < 500) harvest(body);

    if (status >= 400) {
      const problem = asRecord(body);
      const code = typeof problem['code'] === 'string' ? problem['code'] : '?';
      bump(codes, `${status} ${code}`);
      const wrong: string[] = [];
      if (!/^application\/problem\+json(;|$)/.test(contentType)) wrong.push(`content-type ${contentType || '(none)'}`);
      const validate = status === 402 ? validAuthenticationRequired : validProblem;
      if (!validate(body)) {
        const errors = ajv.errorsText(validate.errors?.slice(0, 3));
        wrong.push(
          `not a ${status === 402 ? 'AuthenticationRequired' : 'Problem'} (${errors}${(validate.errors?.length ?? 0) > 3 ? ', …' : ''})`,
        );
      }
      if (problem['status'] !== status) wrong.push(`status field ${String(problem['status'])}`);
      if (problem['type'] !== `urn:coinshop:problem:${code}`) wrong.push(`type ${String(problem['type'])}`);
      if (typeof problem['detail'] !== 'string' || problem['detail'].trim().length === 0) wrong.push('no detail');
      if (typeof problem['title'] !== 'string' || problem['title'].length === 0) wrong.push('no title');
      if (typeof problem['detail'] === 'string' && STACK_TRACE.test(problem['detail'])) wrong.push('detail shows a stack trace');
      if (typeof requestId !== 'string' || requestId.length === 0) wrong.push('no x-request-id header');
      else if (replayed && key !== undefined) {
        if (!(idsByKey.get(key)?.has(String(problem['request_id'])) ?? false))
          wrong.push('a replay carries a request_id this key never answered with');
      } else if (problem['request_id'] !== requestId) wrong.push(`request_id ${String(problem['request_id'])} ≠ x-request-id ${requestId}`);
      if (wrong.length > 0) violate('4xx is a problem document', request, response, wrong.join('; '));

      if (code === 'validation_error' && request.specValid) {
        if (key !== undefined && !WELL_FORMED_KEY.test(key)) validRefusedByKeyRule += 1;
        else violate('a request the spec calls valid is not refused as invalid', request, response, String(problem['detail']));
      }
    }
    if (!replayed && key !== undefined && typeof requestId === 'string') {
      const ids = idsByKey.get(key) ?? new Set<string>();
      idsByKey.set(key, ids.add(requestId));
    }

    // --- The store.
    const changed = changedFields(before, after);
    if (changed.length === 0) return;
    if (replayed) {
      violate('a replay changes nothing', request, response, `changed: ${changed.join(', ')}`);
      return;
    }
    if (status < 400 || status >= 500) return;

    const problem = asRecord(body);
    const code = typeof problem['code'] === 'string' ? problem['code'] : '';
    const unexplained = new Set(changed);
    const why: string[] = [];
    const keyed = request.op.idempotent && request.method === 'POST' && key !== undefined && WELL_FORMED_KEY.test(key);
    if (keyed && (unexplained.has('keys') || unexplained.has('keys_completed') || unexplained.has('keys_answers'))) {
      // The refusal is remembered under its key, as Stripe does: one new, completed row with this status.
      const row = await app.store.db
        .selectFrom('idempotency_keys')
        .select(['state', 'response_status'])
        .where('key', '=', key)
        .executeTakeFirst();
      if (
        after.keys - before.keys === 1 &&
        after.keys_completed - before.keys_completed === 1 &&
        row?.state === 'completed' &&
        row.response_status === status
      ) {
        for (const field of ['keys', 'keys_completed', 'keys_answers'] as const) unexplained.delete(field);
        refusalsRemembered += 1;
      } else why.push(`idempotency_keys: ${before.keys}→${after.keys} rows, row ${JSON.stringify(row)}`);
    }
    const declinedPurchase =
      request.op.id === 'purchaseCurrency' &&
      request.method === 'POST' &&
      ((status === 400 && DECLINES.has(code)) || (status === 402 && code === 'authentication_required'));
    if (declinedPurchase) {
      // The attempt is recorded (failed / requires_action) with the simulated Stripe's event about it; no coins move.
      const added = await app.store.db
        .selectFrom('purchases')
        .select(['transaction_id', 'status'])
        .where('id', '>', before.max_purchase_id)
        .execute();
      const { rows } = await sql<{
        state: number;
      }>`select ${PURCHASE_STATE} as state from purchases where id <= ${before.max_purchase_id}`.execute(app.store.db);
      const lastEvent = await app.store.db.selectFrom('webhook_events').select('type').orderBy(insertionOrder, 'desc').executeTakeFirst();
      const attempt = added[0];
      const ok =
        added.length <= 1 &&
        after.purchases - before.purchases === added.length &&
        (attempt === undefined ||
          (attempt.transaction_id === problem['transaction_id'] &&
            (attempt.status === 'failed' || attempt.status === 'requires_action'))) &&
        rows[0]?.state === before.purchases_state &&
        after.events - before.events <= 1 &&
        (after.events === before.events || (lastEvent?.type ?? '').startsWith('payment_intent.'));
      if (ok) {
        for (const field of ['purchases', 'max_purchase_id', 'purchases_state', 'events'] as const) unexplained.delete(field);
        declinesRecorded += 1;
      } else why.push(`declined purchase recorded ${JSON.stringify(added)}, events ${before.events}→${after.events}`);
    }
    if (unexplained.size > 0) {
      const detail = [...unexplained].map((f) => `${f} ${before[f]}→${after[f]}`).join(', ');
      violate('a refused request leaves the store unchanged', request, response, [detail, ...why].join('; '));
    }
  };

  const send = async (request: FuzzRequest) => {
    // A server gets a turn of the event loop between requests; in-process injection must give it one
    // too, or the load shedder (which samples the loop's delay) sees a starved loop and answers 503.
    await new Promise<void>((next) => setImmediate(next));
    const before = await fingerprint(app);
    const response = await app.inject({
      method: request.method,
      url: request.url,
      headers: request.headers,
      ...(request.payload !== undefined ? { payload: request.payload } : {}),
    });
    sent += 1;
    const after = await fingerprint(app);
    await check(request, response, before, after);
    return response;
  };

  // Requests per operation: the webhook is signature-checked (a handful suffice); the operations
  // without input get fewer than those with. On PostgreSQL a third: what is checked of each answer
  // (status, problem document, the spec) is decided before the store, by the same code on both
  // engines; the store's part — a refused request writing nothing, a replay changing nothing — is
  // met by every kind of request either way, a third as often.
  const share = TEST_ENGINE === 'postgres' ? 1 / 3 : 1;
  const runsFor = (op: Operation) =>
    Math.ceil(share * (op.id === 'receiveStripeWebhook' ? 60 : op.pathParams.length + op.queryParams.length === 0 && !op.body ? 150 : 780));
  const seed = process.env['FC_SEED'] === undefined ? Date.now() ^ (Math.random() * 0x7fffffff) : Number(process.env['FC_SEED']);
  t.comment(`fast-check seed ${seed} (FC_SEED=${seed} to generate the same requests)`);
  const started = performance.now();
  for (const [index, op] of operations.entries()) {
    await fc.assert(
      fc.asyncProperty(requestArb(op), async (request) => {
        const first = await send(request);
        if (!request.twice) return;
        const second = await send(request);
        // The same answer: status and JSON document (member order aside).
        if (
          second.headers['idempotent-replayed'] === 'true' &&
          (second.statusCode !== first.statusCode || !isDeepStrictEqual(parseJson(second.body), parseJson(first.body)))
        ) {
          violate('a replay repeats the first answer', request, second, `first ${first.statusCode} ${first.body.slice(0, 200)}`);
        }
      }),
      { numRuns: runsFor(op), seed: seed + index, endOnFailure: true },
    );
  }
  const seconds = (performance.now() - started) / 1000;

  const covered = new Set(operations.map((op) => `${op.method} ${op.path}`));
  t.equal(
    covered.size,
    Object.values(spec.paths).flatMap((item) => Object.keys(item).filter((m) => m === 'get' || m === 'post')).length,
    'every operation fuzzed',
  );
  t.comment(`${sent} requests across ${operations.length} operations in ${seconds.toFixed(1)}s`);
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
  t.comment(`by kind: ${JSON.stringify(Object.fromEntries([...kinds].sort()))}`);
  t.comment(`problem codes: ${JSON.stringify(Object.fromEntries([...codes].sort()))}`);
  t.comment(`by the spec: ${JSON.stringify(Object.fromEntries([...specValidByKind].sort()))}`);
  t.comment(`refusals remembered under their Idempotency-Key: ${refusalsRemembered}; declined purchases recorded: ${declinesRecorded}`);
  if (validRefusedByKeyRule > 0) {
    t.comment(
      `${validRefusedByKeyRule} spec-valid requests refused only for an Idempotency-Key outside printable ASCII (the spec says 1-255 characters)`,
    );
  }
  const least = Math.round(10_000 * share);
  t.ok(sent >= least, `at least ${least} requests (${sent})`);

  const invariants = [
    'no 5xx',
    '4xx is a problem document',
    '2xx body is JSON',
    '2xx has its documented content type',
    'no stack trace in a response',
    'the API key is never echoed',
    'no prototype pollution',
    'a request the spec calls valid is not refused as invalid',
    'a refused request leaves the store unchanged',
    'a replay changes nothing',
    'a replay repeats the first answer',
  ];
  for (const name of [...invariants, ...[...violations.keys()].filter((k) => !invariants.includes(k))]) {
    const entry = violations.get(name);
    const examples = (entry?.examples ?? []).sort((a, b) => a.size - b.size);
    t.equal(entry?.count ?? 0, 0, name);
    if (entry) t.comment(`VIOLATED ${name} (${entry.count}×); shortest reproductions:\n${examples.map((e) => e.repro).join('\n')}`);
  }
});

t.test('hostile but valid strings are stored and come back verbatim, inside valid JSON', async (t) => {
  const app = await buildTestApp(t, { env: { API_KEYS: API_KEY } });
  const headers = { authorization: `Bearer ${API_KEY}` };
  const names = [
    "'); DROP TABLE customers; --",
    "' OR 1=1 --",
    '"; DROP TABLE customers; --',
    '<script>alert(1)</script>',
    '"><img src=x onerror=alert(1)>',
    '\u202Eevil\u202C right-to-left',
    '💰🪙 👨‍👩‍👧‍👦',
    'nul\u0000inside',
    '../../etc/passwd',
    '%00%zz%ED%A0%80',
    '__proto__',
    'constructor',
    '{{7*7}} ${jndi:ldap://x/a}',
    '\\"\'`',
    'é'.repeat(200),
    '💰'.repeat(200),
    // Not well-formed UTF-16: JSON can carry it (as \ud800); it must be stored as sent or refused, never altered.
    'lone \uD800 surrogate',
    '\uDC00',
  ];
  const emails = [
    "o'brien+1=1--@example.com",
    "x'or'1'='1@example.com",
    '{{7*7}}@example.com',
    '%27%3B@example.com',
    'a/b=c?d@example.com',
  ];
  const cases = [
    ...names.map((name, i) => ({ name, email: `player${i}@example.com` })),
    ...emails.map((email) => ({ name: 'Mallory', email })),
  ];
  for (const sent of cases) {
    const label = JSON.stringify(sent);
    const created = await app.inject({ method: 'POST', url: '/stripe/create-customer', headers, payload: sent });
    if (created.statusCode === 400) {
      t.match(created.headers['content-type'], /^application\/problem\+json/, `${label}: refused as a problem`);
      continue;
    }
    t.equal(created.statusCode, 200, `${label}: created`);
    const userId = created.json<{ user_id: string }>().user_id;
    const fetched = await app.inject({ method: 'GET', url: `/stripe/customer/${userId}`, headers });
    t.equal(fetched.statusCode, 200);
    t.match(fetched.headers['content-type'], /^application\/json/);
    let stored: { name?: unknown; email?: unknown } = {};
    t.doesNotThrow(() => (stored = JSON.parse(fetched.body) as { name?: unknown; email?: unknown }), `${label}: valid JSON`);
    t.equal(stored.name, sent.name, `${label}: name verbatim`);
    t.equal(stored.email, sent.email, `${label}: email verbatim`);
  }

  // A spend's item id is stored as the ledger memo: it too comes back as sent.
  const buyer = await app.inject({
    method: 'POST',
    url: '/stripe/create-customer',
    headers,
    payload: { email: 'buyer@example.com', name: 'Buyer' },
  });
  const userId = buyer.json<{ user_id: string }>().user_id;
  await app.inject({
    method: 'POST',
    url: '/stripe/attach-payment-method',
    headers,
    payload: { user_id: userId, payment_method_id: 'pm_card_visa' },
  });
  t.equal(
    (await app.inject({ method: 'POST', url: '/stripe/purchase-currency', headers, payload: { user_id: userId, package_id: 'package_3' } }))
      .statusCode,
    200,
  );
  const items = ["'); DROP TABLE ledger_entries; --", '<script>alert(1)</script>', '\u202E💰\u2028'];
  for (const item of items) {
    t.equal(
      (await app.inject({ method: 'POST', url: '/stripe/spend-currency', headers, payload: { user_id: userId, amount: 1, item_id: item } }))
        .statusCode,
      200,
    );
  }
  const ledger = await app.inject({ method: 'GET', url: `/stripe/ledger/${userId}`, headers });
  const memos = ledger
    .json<{ entries: { memo?: string; reason: string }[] }>()
    .entries.filter((e) => e.reason === 'spend')
    .map((e) => e.memo);
  t.same(memos, [...items].reverse(), 'spend memos verbatim, newest first');
});
