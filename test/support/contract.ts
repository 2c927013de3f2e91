/**
 * The contract, checked on every answer the tests receive: each `app.inject` response of an app made
 * by buildTestApp is held to openapi.yaml — its status documented for that operation, its content
 * type documented for that status, its body valid against the documented schema (Ajv). Violations
 * are collected and fail the test that made the app when it ends, listed one a line.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { parse } from 'yaml';
import { projectFile } from './project.js';

interface MediaType {
  schema?: object;
}
interface Response {
  content?: Record<string, MediaType>;
}
interface Operation {
  responses: Record<string, Response>;
}
type PathItem = Record<string, Operation>;

/**
 * openapi.yaml as an object. Parsing its YAML takes several hundred milliseconds, in every test
 * process; its JSON takes a few. So the parsed document is kept as JSON in node_modules/.cache, named
 * by a hash of the YAML (an edited openapi.yaml is parsed afresh), and written whole or not at all.
 */
function openapiDocument(): { paths: Record<string, PathItem> } {
  const text = readFileSync(projectFile('openapi.yaml'), 'utf8');
  const cacheDir = projectFile('node_modules/.cache/coinshop/');
  const cached = new URL(`openapi-${createHash('sha256').update(text).digest('hex').slice(0, 32)}.json`, cacheDir);
  try {
    return JSON.parse(readFileSync(cached, 'utf8')) as { paths: Record<string, PathItem> };
  } catch {
    const parsed = parse(text) as { paths: Record<string, PathItem> };
    try {
      mkdirSync(cacheDir, { recursive: true });
      const partial = new URL(`${cached.pathname}.${process.pid}`, cached);
      writeFileSync(partial, JSON.stringify(parsed));
      renameSync(partial, cached);
    } catch {
      // A read-only tree: parsed each time, as without the cache.
    }
    return parsed;
  }
}

const document = openapiDocument();

// The document itself is not checked against OpenAPI's meta-schema here (redocly lints it in npm test).
const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
addFormats.default(ajv);
ajv.addSchema(document, 'openapi');

/** Each documented path as a pattern over concrete URLs, static paths first. */
const paths = Object.keys(document.paths)
  .map((template) => ({
    template,
    pattern: new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`),
    dynamic: template.includes('{'),
  }))
  .sort((a, b) => Number(a.dynamic) - Number(b.dynamic));

const pointer = (...parts: string[]) => parts.map((part) => part.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
const validators = new Map<string, ValidateFunction>();

/** What is wrong with `response` to `method url` by openapi.yaml, or [] (URLs it does not document are not its business). */
export function contractViolations(method: string, url: string, response: LightMyRequestResponse): string[] {
  const pathname = new URL(url, 'http://coinshop.invalid').pathname;
  const path = paths.find((p) => p.pattern.test(pathname));
  const operation = path && document.paths[path.template]?.[method.toLowerCase()];
  if (!path || !operation) return [];
  const where = `${method} ${path.template} → ${response.statusCode}`;
  const status = String(response.statusCode);
  const documented = operation.responses[status] ?? operation.responses['default'];
  if (!documented)
    return [
      `${where}: status not documented (documented: ${Object.keys(operation.responses).join(', ')}); body ${response.body.slice(0, 200)}`,
    ];
  const contentType =
    String(response.headers['content-type'] ?? '')
      .split(';')[0]
      ?.trim() ?? '';
  if (!documented.content)
    return response.body === '' ? [] : [`${where}: documented without a body, but sent ${contentType} ${response.body.slice(0, 120)}`];
  const media = documented.content[contentType];
  if (!media) return [`${where}: content type "${contentType}" not documented (documented: ${Object.keys(documented.content).join(', ')})`];
  if (!media.schema || !contentType.endsWith('json')) return [];
  const key = pointer(
    'paths',
    path.template,
    method.toLowerCase(),
    'responses',
    operation.responses[status] ? status : 'default',
    'content',
    contentType,
    'schema',
  );
  let validate = validators.get(key);
  if (!validate) {
    validate = ajv.compile({ $ref: `openapi#/${key}` });
    validators.set(key, validate);
  }
  let body: unknown;
  try {
    body = JSON.parse(response.body);
  } catch {
    return [`${where}: the body is not JSON: ${response.body.slice(0, 120)}`];
  }
  if (validate(body)) return [];
  return [`${where}: body does not match its schema: ${ajv.errorsText(validate.errors)}; body ${response.body.slice(0, 300)}`];
}

/** Makes every `app.inject` of `app` check its answer; returns the list its violations go to. */
export function checkContract(app: FastifyInstance): string[] {
  const violations: string[] = [];
  const inject = app.inject.bind(app);
  const checked = async (options: InjectOptions | string): Promise<LightMyRequestResponse> => {
    const response = await inject(options);
    const method = typeof options === 'string' ? 'GET' : (options.method ?? 'GET');
    const url = typeof options === 'string' ? options : typeof options.url === 'string' ? options.url : (options.url?.pathname ?? '/');
    violations.push(...contractViolations(String(method).toUpperCase(), url, response));
    return response;
  };
  app.inject = checked as FastifyInstance['inject'];
  return violations;
}
