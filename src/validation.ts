import { Ajv, type Options, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchema, FastifySchemaCompiler } from 'fastify';
import { namedSchemas } from '../schemas/index.js';

function compiler(options: Options): Ajv {
  const ajv = new Ajv({ allErrors: true, removeAdditional: false, useDefaults: true, strict: false, ...options });
  addFormats.default(ajv);
  for (const schema of namedSchemas) ajv.addSchema(schema);
  return ajv;
}

/**
 * Request validation. JSON bodies and path parameters are taken as they are: a number where a string
 * belongs is refused, not converted. Query strings are text by nature, so there (only) `?limit=20`
 * becomes the integer 20.
 */
export function validatorCompiler(): FastifySchemaCompiler<FastifySchema> {
  compilers ??= { strict: cached(compiler({ coerceTypes: false })), coercing: cached(compiler({ coerceTypes: true })) };
  const { strict, coercing } = compilers;
  return ({ schema, httpPart }) => (httpPart === 'querystring' ? coercing : strict)(schema);
}

/**
 * Validators are compiled once per process and schema: an app built after the first (a test file
 * builds dozens) reuses the validators of the first instead of compiling them again, which took a
 * seventh of a PostgreSQL property test's CPU. Keyed by the schema's JSON, as some route schemas are
 * made per app (from the catalog). A server builds one app, for which nothing changes.
 */
let compilers: { strict: (schema: object) => ValidateFunction; coercing: (schema: object) => ValidateFunction } | undefined;

function cached(ajv: Ajv): (schema: object) => ValidateFunction {
  const compiled = new Map<string, ValidateFunction>();
  return (schema) => {
    const key = JSON.stringify(schema);
    let validate = compiled.get(key);
    if (validate === undefined) compiled.set(key, (validate = ajv.compile(schema)));
    return validate;
  };
}

/** What text coinshop refuses, and why, in the words a 400 uses. */
export const UNSTORABLE_TEXT = 'must be valid Unicode text without NUL characters (no unpaired surrogates, no U+0000)';

/**
 * Text every engine stores exactly as sent: well-formed Unicode (an unpaired surrogate would be
 * replaced on the way into the database) with no U+0000 (PostgreSQL text cannot hold it). Refusing
 * both up front keeps the API the same whichever database is behind it.
 */
const storable = (text: string) => text.isWellFormed() && !text.includes('\u0000');

/** The path of the first string (value or key) in `value` that could not be stored as it is. */
export function illFormedString(value: unknown, path: string): string | undefined {
  // Iterative: a hostile body can nest far deeper than the call stack.
  const pending: [unknown, string][] = [[value, path]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, at] = next;
    if (typeof item === 'string') {
      if (!storable(item)) return at;
    } else if (item !== null && typeof item === 'object' && !Buffer.isBuffer(item)) {
      for (const [key, child] of Object.entries(item)) {
        if (!storable(key)) return at;
        pending.push([child, `${at}/${key}`]);
      }
    }
  }
  return undefined;
}
