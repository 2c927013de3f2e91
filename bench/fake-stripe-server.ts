import { startFakeStripe } from '../test/support/fake-stripe.js';

/** A Stripe-compatible server on loopback for the benchmark: `tsx bench/fake-stripe-server.ts <latencyMs>`. */
const stripe = await startFakeStripe({ latencyMs: Number(process.argv[2] ?? 0) });
console.log(`listening ${stripe.url}`);
process.on('SIGTERM', () => void stripe.close().then(() => process.exit(0)));
