import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript';
import { writeOrCheck } from '../src/cli/generated-file.js';

export const SPEC = new URL('../openapi.yaml', import.meta.url);
const output = new URL('./schema.ts', import.meta.url);

/**
 * The SDK's types, generated from openapi.yaml exactly as `openapi-typescript openapi.yaml` prints
 * them. Written as a .ts file (types only), so `tsc` checks it even with skipLibCheck.
 */
export async function renderSdkSchema(spec: URL = SPEC): Promise<string> {
  return COMMENT_HEADER + astToString(await openapiTS(spec, { silent: true }));
}

/** `npm run sdk` writes sdk/schema.ts; `-- --check` fails when the committed file has drifted. */
if (import.meta.url === `file://${process.argv[1]}`) {
  writeOrCheck(output, await renderSdkSchema(), { source: 'openapi.yaml', command: 'npm run sdk' });
}
