import Fastify from 'fastify';
import { Catalog, SEED_CATALOG } from '../src/catalog.js';

/**
 * The baseline: a bare Fastify app answering the same JSON as GET /stripe/packages. With
 * BARE_HEADERS (a JSON object), it also sends those headers on every answer — coinshop's own, so the
 * cost of sending them is measured apart from the work of making them.
 */
const body = { packages: new Catalog(SEED_CATALOG).packages };
const headers = Object.entries(JSON.parse(process.env['BARE_HEADERS'] ?? '{}') as Record<string, string>);
const app = Fastify({ logger: false });
if (headers.length > 0) {
  app.addHook('onRequest', (_request, reply, done) => {
    for (const [name, value] of headers) reply.raw.setHeader(name, value);
    done();
  });
}
app.get('/stripe/packages', async () => body);
const address = await app.listen({ host: '127.0.0.1', port: 0 });
console.log(`listening ${address}`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
