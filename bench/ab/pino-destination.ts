/**
 * The "pino" arm of `npm run bench:ab -- log`: the LogDestination API over pino's own asynchronous
 * destination (SonicBoom), `pino.destination({ sync: false, minLength, maxWrite })`. minLength is 0:
 * with more, SonicBoom holds lines until that many bytes wait, however long that takes (a quiet
 * server's "listening" line never came out).
 */
import pino from 'pino';

export class LogDestination {
  readonly #stream: ReturnType<typeof pino.destination>;

  constructor(fd: number, maxPendingBytes = 64 * 1024 * 1024) {
    this.#stream = pino.destination({ fd, sync: false, minLength: 0, maxWrite: 1024 * 1024, maxLength: maxPendingBytes });
  }

  write(line: string): boolean {
    return this.#stream.write(line);
  }

  flush(): Promise<void> {
    return new Promise((resolve) => this.#stream.flush(() => resolve()));
  }

  flushSync(): void {
    this.#stream.flushSync();
  }
}
