import { buildApp } from '../app.js';
import { loadConfig } from '../config.js';
import { writeOrCheck } from './generated-file.js';

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
  writeOrCheck(new URL('../../openapi.yaml', import.meta.url), await renderOpenapi(), {
    source: 'what the app serves',
    command: 'npm run openapi',
  });
}
