import Fastify from 'fastify';
import { Catalog, SEED_CATALOG } from '../src/catalog.js';

/** The baseline: a bare Fastify app answering the same JSON as GET /stripe/packages. */
const body = { packages: new Catalog(SEED_CATALOG).packages };
const app = Fastify({ logger: false });
app.get('/stripe/packages', async () => body);
const address = await app.listen({ host: '127.0.0.1', port: 0 });
console.log(`listening ${address}`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
