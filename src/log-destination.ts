import { write, writeSync } from 'node:fs';

/** How long a write that found the output full (EAGAIN) waits before trying again. */
const RETRY_MS = 10;

const errorCode = (error: unknown) => (error as NodeJS.ErrnoException | null)?.code;

/**
 * Where the service's log lines go: a file descriptor (stdout), written in the background with every
 * line logged since the last write, one system call at a time, off the event loop.
 *
 * pino's default writer sends at most 16 KiB a write and measures the whole waiting string at every
 * line: under load (tens of thousands of lines a second) lines pile up faster than they leave, and
 * the measuring grows with the pile. Here a line costs an array push, and a write takes everything
 * that waits, so the output keeps up with any rate its reader keeps up with.
 *
 * If the reader stops reading (a full pipe), lines wait, up to `maxPendingBytes`; beyond that new
 * lines are dropped and counted, and the count is logged once the output takes writes again: the
 * service slows for nobody's log. Lines still waiting when the process exits are written before it
 * does.
 */
export class LogDestination {
  #pending: string[] = [];
  #pendingBytes = 0;
  #dropped = 0;
  /** A write is under way or scheduled: new lines wait for the next one. */
  #busy = false;
  /** What a write found the output too full for, waiting to be tried again. */
  #unsent: Buffer | undefined;
  /** Told when nothing waits and no write is under way. */
  #drained: (() => void)[] = [];

  constructor(
    private readonly fd: number,
    private readonly maxPendingBytes = 64 * 1024 * 1024,
  ) {
    process.once('exit', () => this.flushSync());
  }

  /** Takes one line (pino passes each with its newline). */
  write(line: string): boolean {
    if (this.#pendingBytes + line.length > this.maxPendingBytes) {
      this.#dropped++;
      return false;
    }
    this.#pending.push(line);
    this.#pendingBytes += line.length;
    if (!this.#busy) {
      // Written at the end of this event-loop turn, with every other line the turn logs.
      this.#busy = true;
      setImmediate(() => this.#writeWaiting());
    }
    return true;
  }

  /** Resolves once every line taken so far is written (a graceful stop waits for it before exiting). */
  flush(): Promise<void> {
    if (!this.#busy) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  /**
   * Writes every waiting line now, blocking (at exit; a full output is tried for up to a second). A
   * background write still under way at that moment is not waited for: `flush` first, where there is
   * time to.
   */
  flushSync(): void {
    const unsent = this.#unsent ?? Buffer.alloc(0);
    this.#unsent = undefined;
    let rest = Buffer.concat([unsent, this.#take()]);
    const giveUpAt = Date.now() + 1000;
    while (rest.length > 0) {
      try {
        rest = rest.subarray(writeSync(this.fd, rest));
      } catch (error) {
        if (errorCode(error) !== 'EAGAIN' || Date.now() > giveUpAt) return;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, RETRY_MS);
      }
    }
  }

  /** The waiting lines as one buffer (and the count of dropped ones, if any), leaving none waiting. */
  #take(): Buffer {
    if (this.#dropped > 0) {
      this.#pending.push(
        `${JSON.stringify({ level: 40, time: Date.now(), msg: `${this.#dropped} log lines were dropped: the log output was not being read` })}\n`,
      );
      this.#dropped = 0;
    }
    const text = this.#pending.join('');
    this.#pending = [];
    this.#pendingBytes = 0;
    return Buffer.from(text);
  }

  #idle(): void {
    this.#busy = false;
    for (const resolve of this.#drained.splice(0)) resolve();
  }

  #writeWaiting(): void {
    if (this.#pending.length === 0) {
      this.#idle();
      return;
    }
    this.#send(this.#take());
  }

  #send(chunk: Buffer): void {
    write(this.fd, chunk, 0, chunk.length, null, (error, written) => {
      if (error) {
        if (errorCode(error) === 'EAGAIN') {
          // Full for now: the chunk is tried again shortly, ahead of the lines logged meanwhile.
          this.#unsent = chunk;
          setTimeout(() => {
            if (this.#unsent === undefined) return; // written at exit meanwhile
            this.#unsent = undefined;
            this.#send(chunk);
          }, RETRY_MS);
          return;
        }
        // Closed or broken: there is nowhere to write; lines keep being taken and let go.
        this.#pending = [];
        this.#pendingBytes = 0;
        this.#idle();
        return;
      }
      if (written < chunk.length) this.#send(chunk.subarray(written));
      else this.#writeWaiting();
    });
  }
}
