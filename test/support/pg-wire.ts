import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of PostgreSQL that counts round trips at the wire. A round trip is a flight
 * of the client's messages that it sends while no answer is outstanding: it had to wait for every
 * earlier answer first. Answers are counted by ReadyForQuery ('Z'), which the server sends once per
 * Sync ('S', extended protocol) and once per simple Query ('Q'); several statements pipelined before
 * their answers come back are one round trip, as they cost one wait.
 */
export interface WireCounter {
  /** A postgres:// URL that goes through the proxy (same database, user and options as `url`). */
  url: string;
  /** Round trips since the proxy started. */
  readonly roundTrips: number;
  /** Sync and simple Query messages since the proxy started. */
  readonly syncs: number;
  close(): Promise<void>;
}

/** Splits a stream of protocol messages (type byte + 4-byte length) and calls `onType` with each type. */
function messageReader(onType: (type: number) => void, untypedFirst: boolean) {
  let buffer: Buffer = Buffer.alloc(0);
  let startup = untypedFirst;
  return (chunk: Buffer) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    for (;;) {
      if (startup) {
        // The startup message (and an SSLRequest) has no type byte: its length comes first.
        if (buffer.length < 4) return;
        const length = buffer.readUInt32BE(0);
        if (buffer.length < length) return;
        buffer = buffer.subarray(length);
        startup = false;
        continue;
      }
      if (buffer.length < 5) return;
      const length = buffer.readUInt32BE(1);
      if (buffer.length < 1 + length) return;
      onType(buffer[0] ?? 0);
      buffer = buffer.subarray(1 + length);
    }
  };
}

const SYNC = 'S'.charCodeAt(0);
const QUERY = 'Q'.charCodeAt(0);
const READY = 'Z'.charCodeAt(0);

export async function startWireCounter(url: string): Promise<WireCounter> {
  const target = new URL(url);
  const sockets = new Set<Socket>();
  let roundTrips = 0;
  let syncs = 0;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    sockets.add(client).add(upstream);
    let outstanding = 0;
    // A flight starts with the first message sent while nothing is outstanding and ends with its Sync.
    let inFlight = false;
    const fromClient = messageReader((type) => {
      if (outstanding === 0 && !inFlight) {
        inFlight = true;
        roundTrips++;
      }
      if (type === SYNC || type === QUERY) {
        outstanding++;
        syncs++;
      }
    }, true);
    const fromServer = messageReader((type) => {
      // The ReadyForQuery that ends the startup answers nothing the client counted.
      if (type !== READY || outstanding === 0) return;
      outstanding--;
      if (outstanding === 0) inFlight = false;
    }, false);
    client.on('data', (chunk: Buffer) => {
      fromClient(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      fromServer(chunk);
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String((server.address() as AddressInfo).port);
  return {
    url: proxied.toString(),
    get roundTrips() {
      return roundTrips;
    },
    get syncs() {
      return syncs;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
