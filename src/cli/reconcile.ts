import { buildApp } from '../app.js';
import { ConfigError, loadConfig, loadDotEnv } from '../config.js';
import { redactPaths } from '../logger.js';
import { reconcile } from '../services/reconcile.js';

/**
 * `npm run reconcile`: finishes purchases left unfinished past RECONCILE_AFTER_SECONDS (override with
 * `-- --older-than-seconds N`), checks every balance against its ledger, forgets expired keys.
 * Prints the report as JSON; exits 1 when a balance or a journal does not add up.
 */
async function main() {
  loadDotEnv();
  const config = loadConfig();
  const flag = process.argv.indexOf('--older-than-seconds');
  const olderThanSeconds = flag === -1 ? config.RECONCILE_AFTER_SECONDS : Number(process.argv[flag + 1]);
  if (!Number.isInteger(olderThanSeconds) || olderThanSeconds < 0)
    throw new ConfigError('--older-than-seconds', 'Invalid argument: --older-than-seconds must be a whole number of seconds');
  // Logs go to stderr: stdout is the report.
  const app = await buildApp({
    config: { ...config, RECONCILE_INTERVAL_SECONDS: 0 },
    logger: { level: 'error', redact: redactPaths, stream: process.stderr },
  });
  try {
    await app.ready();
    const report = await reconcile(
      { store: app.store, payments: app.payments, log: app.log },
      { olderThanMs: olderThanSeconds * 1000, keyTtlHours: config.IDEMPOTENCY_KEY_TTL_HOURS },
    );
    console.log(JSON.stringify(report, null, 2));
    process.exitCode = report.mismatches.length > 0 || report.unbalancedJournals.length > 0 ? 1 : 0;
  } finally {
    await app.close();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
