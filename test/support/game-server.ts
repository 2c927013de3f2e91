import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import type { Store } from '../../src/store/store.js';

/**
 * Brings every pending notification's next attempt forward to now (instead of waiting out its
 * backoff). One row a statement: a statement that held several rows' locks could deadlock with a
 * sender recording a batch, which locks them in another order.
 */
export async function dueNow(store: Store): Promise<void> {
  const pending = await store.db.selectFrom('notifications').select('id').where('status', '=', 'pending').execute();
  const at = new Date().toISOString();
  for (const { id } of pending)
    await store.db.updateTable('notifications').set({ next_attempt_at: at }).where('id', '=', id).where('status', '=', 'pending').execute();
}

/** What the game server does with one delivery attempt. */
export type Behaviour = 'accept' | 'fail' | 'hang' | 'close' | 'redirect';

export interface ReceivedAttempt {
  id: string;
  timestamp: string;
  signature: string;
  body: string;
  /** The signature checked out with the standardwebhooks library. */
  verified: boolean;
  behaviour: Behaviour;
  startedAt: number;
  /** When the attempt's answer was sent (or the connection dropped). */
  endedAt: number | undefined;
}

export interface GameServer {
  url: string;
  secret: string;
  attempts: ReceivedAttempt[];
  /** The bodies of the accepted attempts, one per webhook-id: what a receiver that dedupes by id keeps. */
  accepted: () => Map<string, { type: string; timestamp: string; data: Record<string, unknown> }>;
  /** The next attempts get these behaviours, in order; after that, `fallback`. */
  plan: (...behaviours: Behaviour[]) => void;
  fallback: Behaviour;
  /** Milliseconds before each answer (a slow receiver). */
  delayMs: number;
  close: () => Promise<void>;
}

/** A fresh Standard Webhooks secret. */
export const newSecret = () => `whsec_${Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64')}`;

/**
 * A game server's notification endpoint, as its developer would write it: verifies each delivery
 * with the `standardwebhooks` library, then answers as the test planned (accept with 204, fail with
 * 503, hang past the sender's timeout, drop the connection, or redirect elsewhere).
 */
export async function startGameServer(secret = newSecret()): Promise<GameServer> {
  const verifier = new Webhook(secret);
  const attempts: ReceivedAttempt[] = [];
  const planned: Behaviour[] = [];
  const hanging = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const headers = {
        'webhook-id': String(req.headers['webhook-id'] ?? ''),
        'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
        'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
      };
      let verified: boolean;
      try {
        verifier.verify(body, headers);
        verified = true;
      } catch {
        verified = false;
      }
      const behaviour = verified ? (planned.shift() ?? game.fallback) : 'fail';
      const attempt: ReceivedAttempt = {
        id: headers['webhook-id'],
        timestamp: headers['webhook-timestamp'],
        signature: headers['webhook-signature'],
        body,
        verified,
        behaviour,
        startedAt: Date.now(),
        endedAt: undefined,
      };
      attempts.push(attempt);
      const answer = () => {
        if (behaviour !== 'hang') attempt.endedAt = Date.now();
        switch (behaviour) {
          case 'accept':
            res.writeHead(204).end();
            return;
          case 'fail':
            res.writeHead(503, { 'content-type': 'text/plain' }).end('down for maintenance');
            return;
          case 'redirect':
            res.writeHead(302, { location: `${game.url}/elsewhere` }).end();
            return;
          case 'close':
            req.socket.destroy();
            return;
          case 'hang':
            hanging.add(res);
            res.on('close', () => {
              attempt.endedAt = Date.now();
              hanging.delete(res);
            });
            return;
        }
      };
      if (game.delayMs > 0) setTimeout(answer, game.delayMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const game: GameServer = {
    url: `http://127.0.0.1:${port}/coinshop-events`,
    secret,
    attempts,
    accepted: () => {
      const kept = new Map<string, { type: string; timestamp: string; data: Record<string, unknown> }>();
      for (const a of attempts) {
        if (a.verified && a.behaviour === 'accept' && !kept.has(a.id))
          kept.set(a.id, JSON.parse(a.body) as { type: string; timestamp: string; data: Record<string, unknown> });
      }
      return kept;
    },
    plan: (...behaviours) => planned.push(...behaviours),
    fallback: 'accept',
    delayMs: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return game;
}
