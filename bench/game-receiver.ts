import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The game server's notification endpoint for the benchmark: answers every delivery 204 and counts
 * the distinct webhook-ids it got (GET /count). `tsx bench/game-receiver.ts`
 */
const ids = new Set<string>();
const server = http.createServer((req, res) => {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ received: ids.size }));
    return;
  }
  req.resume();
  req.on('end', () => {
    ids.add(String(req.headers['webhook-id']));
    res.writeHead(204).end();
  });
});
server.listen(0, '127.0.0.1', () => console.log(`listening http://127.0.0.1:${(server.address() as AddressInfo).port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
