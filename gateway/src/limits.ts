import { AppError, Code } from '@chat/errors';

/** A token bucket's shape: `perMinute` tokens are added per minute, up to `burst`. */
export interface BucketSpec {
  perMinute: number;
  burst: number;
}

/**
 * RateLimiter is a set of token buckets, one per key (an API key id, an owner/session pair).
 * Each instance keeps its buckets in memory: with N gateway replicas a client may get up to N times
 * the limit (see docs/decisions/0015-api-limits.md). Idle buckets (full again) are dropped.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private calls = 0;

  constructor(
    readonly spec: BucketSpec,
    private readonly now: () => number = Date.now,
    private readonly maxBuckets = 100_000,
  ) {}

  /** take removes one token from key's bucket; when empty, how long until one is back (seconds, ≥ 1). */
  take(key: string): { ok: true } | { ok: false; retryAfterSeconds: number } {
    const now = this.now();
    const perMs = this.spec.perMinute / 60_000;
    const b = this.buckets.get(key) ?? { tokens: this.spec.burst, at: now };
    b.tokens = Math.min(this.spec.burst, b.tokens + (now - b.at) * perMs);
    b.at = now;
    this.buckets.set(key, b);
    if (++this.calls % 1000 === 0 || this.buckets.size > this.maxBuckets) this.prune(now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - b.tokens) / perMs / 1000)) };
  }

  /** check is take that throws the API's 429 error (reason rate_limited, details.retry_after_seconds). */
  check(key: string, what: string): void {
    const r = this.take(key);
    if (!r.ok) throw rateLimited(what, r.retryAfterSeconds, this.spec);
  }

  private prune(now: number): void {
    const perMs = this.spec.perMinute / 60_000;
    for (const [k, b] of this.buckets) if (b.tokens + (now - b.at) * perMs >= this.spec.burst) this.buckets.delete(k);
    // Still too many (a flood of distinct keys): drop the oldest.
    for (const k of this.buckets.keys()) {
      if (this.buckets.size <= this.maxBuckets) break;
      this.buckets.delete(k);
    }
  }
}

/** rateLimited is the 429 error; the HTTP layer copies details.retry_after_seconds into Retry-After. */
export function rateLimited(what: string, retryAfterSeconds: number, spec: BucketSpec): AppError {
  return new AppError(Code.ResourceExhausted, `too many requests for this ${what}; retry after ${retryAfterSeconds} s`, {
    reason: 'rate_limited',
    details: { scope: what, retry_after_seconds: retryAfterSeconds, limit_per_minute: spec.perMinute, burst: spec.burst },
  });
}

/**
 * StreamLimiter caps the concurrent streams (WebSocket connections, streamed completions) one
 * owner holds on this gateway instance. acquire returns the release function, or throws 429
 * too_many_streams.
 */
export class StreamLimiter {
  private readonly open = new Map<string, number>();

  constructor(readonly maxPerOwner: number) {}

  count(owner: string): number {
    return this.open.get(owner) ?? 0;
  }

  acquire(owner: string): () => void {
    const n = this.count(owner);
    if (n >= this.maxPerOwner) {
      throw new AppError(Code.ResourceExhausted, `at most ${this.maxPerOwner} concurrent streams per owner; close one first`, {
        reason: 'too_many_streams',
        details: { limit: this.maxPerOwner, retry_after_seconds: 1 },
      });
    }
    this.open.set(owner, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = this.count(owner) - 1;
      if (left > 0) this.open.set(owner, left);
      else this.open.delete(owner);
    };
  }
}

/** The gateway's limits; every field has a default (see gatewayConfig). */
export interface LimitOptions {
  perKey?: BucketSpec;
  perSession?: BucketSpec;
  maxStreamsPerOwner?: number;
  now?: () => number;
}

export const DEFAULT_PER_KEY: BucketSpec = { perMinute: 600, burst: 100 };
export const DEFAULT_PER_SESSION: BucketSpec = { perMinute: 120, burst: 40 };
export const DEFAULT_MAX_STREAMS_PER_OWNER = 20;

/** GatewayLimits bundles the per-key and per-session rate limits and the per-owner stream cap. */
export class GatewayLimits {
  readonly perKey: RateLimiter;
  readonly perSession: RateLimiter;
  readonly streams: StreamLimiter;

  constructor(options: LimitOptions = {}) {
    this.perKey = new RateLimiter(options.perKey ?? DEFAULT_PER_KEY, options.now);
    this.perSession = new RateLimiter(options.perSession ?? DEFAULT_PER_SESSION, options.now);
    this.streams = new StreamLimiter(options.maxStreamsPerOwner ?? DEFAULT_MAX_STREAMS_PER_OWNER);
  }

  /** session checks the per-session bucket of an owner's session (a foreign caller never drains it). */
  session(owner: string, session: string): void {
    this.perSession.check(`${owner}\u0000${session}`, 'session');
  }
}
