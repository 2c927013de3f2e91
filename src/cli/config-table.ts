import { readFileSync } from 'node:fs';
import { ConfigSchema } from '../config.js';
import { writeOrCheck } from './generated-file.js';

export const CONFIG_TABLE_START = '<!-- config-table:start (generated from src/config.ts by `npm run docs:config`) -->';
export const CONFIG_TABLE_END = '<!-- config-table:end -->';

/** A table cell: a `|` inside it would end the cell, a newline the row. */
const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');

/** A variable's default as the table shows it: an environment variable's value, or — when it has none. */
function defaultCell(name: string, value: unknown): string {
  if (value === undefined) return '—';
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return `\`${value}\``;
  throw new Error(`${name} in ConfigSchema has a default no environment variable can hold`);
}

/** The configuration table: one row per variable of ConfigSchema, in its order. */
export function renderConfigTable(): string {
  const rows = Object.entries(ConfigSchema.properties).map(([name, schema]: [string, { default?: unknown; description?: string }]) => {
    if (schema.description === undefined) throw new Error(`${name} in ConfigSchema has no description`);
    return `| \`${name}\` | ${defaultCell(name, schema.default)} | ${cell(schema.description)} |`;
  });
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}

/** `document` with the text between the table's marker comments replaced by the current table. */
export function withConfigTable(document: string): string {
  const start = document.indexOf(CONFIG_TABLE_START);
  const end = document.indexOf(CONFIG_TABLE_END);
  if (start === -1 || end < start) throw new Error(`the document has no ${CONFIG_TABLE_START} … ${CONFIG_TABLE_END} markers`);
  return `${document.slice(0, start + CONFIG_TABLE_START.length)}\n${renderConfigTable()}\n${document.slice(end)}`;
}

export const OPERATIONS_DOC = new URL('../../docs/operations.md', import.meta.url);

/** `npm run docs:config` rewrites the table in docs/operations.md; `-- --check` fails when it has drifted. */
if (import.meta.url === `file://${process.argv[1]}`) {
  writeOrCheck(OPERATIONS_DOC, withConfigTable(readFileSync(OPERATIONS_DOC, 'utf8')), {
    source: 'src/config.ts',
    command: 'npm run docs:config',
  });
}
