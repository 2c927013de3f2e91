import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { Redis } from 'ioredis';

type Count = { current: number; ttl: number };
type Done = (error: Error | null, result?: Count) => void;

/** One fixed window per key: the count so far and the milliseconds left (as @fastify/rate-limit's own stores). */
const INCREMENT = `
local current = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if current == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {current, ttl}`;

/** Fixed-window counters in this process, for at most `maxKeys` keys (the oldest are forgotten first). */
export class LocalCounters {
  readonly #windows = new Map<string, { count: number; endsAt: number }>();

  constructor(readonly maxKeys = 10_000) {}

  increment(key: string, windowMs: number, now = Date.now()): Count {
    const window = this.#windows.get(key);
    if (window !== undefined && window.endsAt > now) {
      window.count += 1;
      return { current: window.count, ttl: window.endsAt - now };
    }
    this.#windows.delete(key);
    if (this.#windows.size >= this.maxKeys) {
      const oldest = this.#windows.keys().next();
      if (oldest.done !== true) this.#windows.delete(oldest.value);
    }
    this.#windows.set(key, { count: 1, endsAt: now + windowMs });
    return { current: 1, ttl: windowMs };
  }
}

export interface FallbackEvents {
  /** Redis could not count a request (called for every such request). */
  fellBack(err: Error | undefined): void;
}

/**
 * A rate-limit store that counts in Redis, shared by every replica, and in this process while Redis
 * cannot be reached (not connected, or a call fails): the limit then holds per replica instead of
 * vanishing, and comes back to shared counting as soon as Redis does. A request never waits for a
 * Redis that is down.
 */
export function redisWithLocalFallback(redis: Redis, nameSpace: string, events: FallbackEvents): FastifyRateLimitStoreCtor {
  const local = new LocalCounters();
  return class RedisWithLocalFallback implements FastifyRateLimitStore {
    incr(key: string, done: Done, timeWindow: number): void {
      const fallBack = (err: Error | undefined) => {
        events.fellBack(err);
        done(null, local.increment(key, timeWindow));
      };
      if (redis.status !== 'ready') return fallBack(undefined);
      redis.eval(INCREMENT, 1, `${nameSpace}${key}`, timeWindow).then(
        (result) => {
          const [current, ttl] = result as [number, number];
          done(null, { current, ttl });
        },
        (err: unknown) => fallBack(err instanceof Error ? err : new Error(String(err))),
      );
    }

    child(): FastifyRateLimitStore {
      return this;
    }
  };
}
