/**
 * The contract, checked on every answer the tests receive: each `app.inject` response of an app made
 * by buildTestApp is held to openapi.yaml — its status documented for that operation, its content
 * type documented for that status, its body valid against the documented schema (Ajv). Violations
 * are collected and fail the test that made the app when it ends, listed one a line.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { parse } from 'yaml';

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

const document = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8')) as { paths: Record<string, PathItem> };

const ajv = new Ajv({ strict: false, allErrors: true });
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
  if (!documented) return [`${where}: status not documented (documented: ${Object.keys(operation.responses).join(', ')}); body ${response.body.slice(0, 200)}`];
  const contentType = String(response.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
  if (!documented.content) return response.body === '' ? [] : [`${where}: documented without a body, but sent ${contentType} ${response.body.slice(0, 120)}`];
  const media = documented.content[contentType];
  if (!media) return [`${where}: content type "${contentType}" not documented (documented: ${Object.keys(documented.content).join(', ')})`];
  if (!media.schema || !contentType.endsWith('json')) return [];
  const key = pointer('paths', path.template, method.toLowerCase(), 'responses', operation.responses[status] ? status : 'default', 'content', contentType, 'schema');
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
