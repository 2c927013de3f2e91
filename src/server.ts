import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, loadDotEnv } from './config.js';
import { LogDestination } from './log-destination.js';
import { loggerOptions } from './logger.js';

/** The only file that listens: read config, build the app, serve until told to stop. */
async function main() {
  loadDotEnv();
  const config = loadConfig();
  const logs = new LogDestination(1);
  const app = await buildApp({ config, logger: loggerOptions(config, logs) });

  closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'closing after an uncaught error');
    else app.log.info({ signal }, 'closing: finishing in-flight requests');
    await app.close();
    // The last lines (the requests that just finished) are written before the process exits.
    await logs.flush();
  });

  await app.listen({ host: config.HOST, port: config.PORT });
}

main().catch((err: unknown) => {
  // A bad setting stops the start with one line naming it.
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
