import { readFileSync, writeFileSync } from 'node:fs';
import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript';

const spec = new URL('../openapi.yaml', import.meta.url);
const output = new URL('./schema.ts', import.meta.url);

/**
 * The SDK's types, generated from openapi.yaml exactly as `openapi-typescript openapi.yaml` prints
 * them. Written as a .ts file (types only), so `tsc` checks it even with skipLibCheck.
 */
export async function renderSdkSchema(): Promise<string> {
  return COMMENT_HEADER + astToString(await openapiTS(spec, { silent: true }));
}

/** `npm run sdk` writes sdk/schema.ts; `-- --check` fails when the committed file has drifted. */
if (import.meta.url === `file://${process.argv[1]}`) {
  const schema = await renderSdkSchema();
  if (process.argv.includes('--check')) {
    if (readFileSync(output, 'utf8') !== schema) {
      console.error('sdk/schema.ts differs from openapi.yaml: run `npm run sdk` and commit it.');
      process.exit(1);
    }
  } else {
    writeFileSync(output, schema);
    console.log('wrote sdk/schema.ts');
  }
}
