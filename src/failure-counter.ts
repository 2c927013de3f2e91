/**
 * Failures per key (a client address) in fixed windows: past `limit` in one window the key is
 * refused until the window ends. It remembers at most `maxKeys` keys, forgetting the oldest first,
 * so a flood from many addresses costs bounded memory (at worst some of them are forgotten early).
 */
export class FailureCounter {
  readonly #windows = new Map<string, { count: number; endsAt: number }>();

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    readonly maxKeys = 10_000,
  ) {}

  /** Seconds until `key` may be heard again, or 0 when it may be now. */
  blockedFor(key: string, now = Date.now()): number {
    const window = this.#windows.get(key);
    if (window === undefined || window.endsAt <= now || window.count < this.limit) return 0;
    return Math.ceil((window.endsAt - now) / 1000);
  }

  fail(key: string, now = Date.now()): void {
    const window = this.#windows.get(key);
    if (window !== undefined && window.endsAt > now) {
      window.count += 1;
      return;
    }
    this.#windows.delete(key);
    if (this.#windows.size >= this.maxKeys) {
      for (const [old, { endsAt }] of this.#windows) if (endsAt <= now) this.#windows.delete(old);
      const oldest = this.#windows.keys().next();
      if (this.#windows.size >= this.maxKeys && oldest.done !== true) this.#windows.delete(oldest.value);
    }
    this.#windows.set(key, { count: 1, endsAt: now + this.windowMs });
  }
}
