import { readFileSync, writeFileSync } from 'node:fs';
import { buildApp } from '../app.js';
import { loadConfig } from '../config.js';

/** The OpenAPI document exactly as the app serves it, in YAML. */
export async function renderOpenapi(): Promise<string> {
  const app = await buildApp({ config: loadConfig({ DATABASE_URL: ':memory:' }) });
  try {
    await app.ready();
    return app.swagger({ yaml: true });
  } finally {
    await app.close();
  }
}

/** `npm run openapi` writes openapi.yaml; `-- --check` fails when the committed file has drifted. */
if (import.meta.url === `file://${process.argv[1]}`) {
  const file = new URL('../../openapi.yaml', import.meta.url);
  const yaml = await renderOpenapi();
  if (process.argv.includes('--check')) {
    if (readFileSync(file, 'utf8') !== yaml) {
      console.error('openapi.yaml differs from what the app serves: run `npm run openapi` and commit it.');
      process.exit(1);
    }
  } else {
    writeFileSync(file, yaml);
    console.log('wrote openapi.yaml');
  }
}
