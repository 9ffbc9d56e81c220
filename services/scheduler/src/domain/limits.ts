/** ProfileLimits bound what the replies of one API profile may use at once (unset: no limit). */
export interface ProfileLimits {
  maxConcurrent?: number;
  requestsPerMinute?: number;
}

const WINDOW_MS = 60_000;

interface Usage {
  running: number;
  /** Start times of requests in the last minute, oldest first. */
  starts: number[];
}

/**
 * ProfileLimiter enforces per-profile concurrency and a requests-per-minute rate (a sliding
 * one-minute window of request starts; every attempt, retries included, is one request).
 */
export class ProfileLimiter {
  private readonly usage = new Map<string, Usage>();

  private get(key: string): Usage {
    let u = this.usage.get(key);
    if (!u) {
      u = { running: 0, starts: [] };
      this.usage.set(key, u);
    }
    return u;
  }

  private prune(u: Usage, now: number): void {
    while (u.starts.length > 0 && u.starts[0]! <= now - WINDOW_MS) u.starts.shift();
  }

  /** readyAt is when a request of this profile may start: now (or earlier) if it may start now, Infinity while only a finish can free a slot. */
  readyAt(key: string, limits: ProfileLimits, now: number): number {
    const u = this.get(key);
    if (limits.maxConcurrent !== undefined && u.running >= limits.maxConcurrent) return Infinity;
    if (limits.requestsPerMinute !== undefined) {
      this.prune(u, now);
      if (u.starts.length >= limits.requestsPerMinute) return u.starts[u.starts.length - limits.requestsPerMinute]! + WINDOW_MS;
    }
    return now;
  }

  /** start records a request starting now; call only when readyAt(...) <= now. */
  start(key: string, now: number): void {
    const u = this.get(key);
    u.running++;
    u.starts.push(now);
  }

  /** finish records a request ending. */
  finish(key: string): void {
    const u = this.usage.get(key);
    if (u) u.running = Math.max(0, u.running - 1);
  }

  /** running is the number of requests of a profile in progress. */
  running(key: string): number {
    return this.usage.get(key)?.running ?? 0;
  }

  /** sweep forgets idle profiles (nothing running, nothing in the window). */
  sweep(now: number): void {
    for (const [key, u] of this.usage) {
      this.prune(u, now);
      if (u.running === 0 && u.starts.length === 0) this.usage.delete(key);
    }
  }
}
