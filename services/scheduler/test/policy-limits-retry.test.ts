import assert from 'node:assert/strict';
import { AppError, Code } from '@chat/errors';
import { ProfileLimiter } from '../src/domain/limits.js';
import { effectivePriority, pickNext, type Candidate } from '../src/domain/policy.js';
import { classify, parseRetryAfter, retryDelayMs, type RetryPolicy } from '../src/domain/retry.js';

describe('priority policy (priority with aging)', () => {
  const c = (priority: number, enqueuedAt: number, order = 0): Candidate => ({ priority, enqueuedAt, order });

  it('picks the highest priority among messages that arrived together', () => {
    assert.equal(pickNext([c(-5, 0, 0), c(5, 0, 1), c(0, 0, 2)], 0, 5_000), 1);
  });

  it('breaks ties by arrival (FIFO)', () => {
    assert.equal(pickNext([c(0, 20, 0), c(0, 10, 1), c(0, 10, 2)], 20, 5_000), 1);
    assert.equal(pickNext([], 0, 5_000), -1);
  });

  it('ages a waiting message by one level per agingMs, so an old low-priority message beats a fresh high one', () => {
    assert.equal(effectivePriority(c(-10, 0), 50_000, 5_000), 0);
    // Waited 101 s at -10 (effective 10.2) vs a fresh +10.
    assert.equal(pickNext([c(10, 101_000, 1), c(-10, 0, 0)], 101_000, 5_000), 1);
    // Waited 10 s at -10 (effective -8) vs a fresh 0: still delayed.
    assert.equal(pickNext([c(0, 10_000, 1), c(-10, 0, 0)], 10_000, 5_000), 0);
  });

  it('never starves a low-priority message under a steady stream of high-priority ones (one slot, bounded simulation)', () => {
    const aging = 1_000;
    const queue: Array<Candidate & { name: string }> = [{ name: 'low', priority: -10, enqueuedAt: 0, order: 0 }];
    let order = 1;
    let ranLowAt = -1;
    // Each tick (100 ms) a new +10 message arrives and the one slot runs one message.
    for (let t = 0; t <= 60_000 && ranLowAt < 0; t += 100) {
      queue.push({ name: `high-${t}`, priority: 10, enqueuedAt: t, order: order++ });
      const i = pickNext(queue, t, aging);
      const [next] = queue.splice(i, 1);
      if (next!.name === 'low') ranLowAt = t;
    }
    assert.ok(ranLowAt > 0, 'the low-priority message ran');
    // It outranks a fresh +10 once it has waited 20 levels (20 s at 1 s per level).
    assert.ok(ranLowAt >= 20_000 && ranLowAt <= 21_000, `ran at ${ranLowAt}`);
  });
});

describe('per-profile limits', () => {
  it('caps concurrent requests of a profile and frees a slot on finish', () => {
    const l = new ProfileLimiter();
    const limits = { maxConcurrent: 2 };
    assert.equal(l.readyAt('p', limits, 0), 0);
    l.start('p', 0);
    l.start('p', 0);
    assert.equal(l.readyAt('p', limits, 1), Infinity, 'only a finish frees a slot');
    assert.equal(l.readyAt('q', limits, 1), 1, 'another profile is independent');
    l.finish('p');
    assert.equal(l.readyAt('p', limits, 2), 2);
    assert.equal(l.running('p'), 1);
  });

  it('keeps a requests-per-minute budget over a sliding minute, retries included', () => {
    const l = new ProfileLimiter();
    const limits = { requestsPerMinute: 3 };
    for (const t of [0, 1_000, 2_000]) {
      assert.ok(l.readyAt('p', limits, t) <= t);
      l.start('p', t);
      l.finish('p');
    }
    // The 4th may start when the first leaves the window.
    assert.equal(l.readyAt('p', limits, 2_500), 60_000);
    assert.equal(l.readyAt('p', limits, 60_000), 60_000);
    l.start('p', 60_000);
    assert.equal(l.readyAt('p', limits, 60_001), 61_000);
    l.finish('p');
    l.sweep(200_000);
    assert.equal(l.running('p'), 0);
  });

  it('applies no limit when none is set', () => {
    const l = new ProfileLimiter();
    for (let i = 0; i < 100; i++) l.start('p', 0);
    assert.equal(l.readyAt('p', {}, 0), 0);
  });
});

describe('retry classification and backoff', () => {
  const err = (code: Code, reason: string, details: Record<string, unknown> = {}) => new AppError(code, reason, { reason, details });

  it('retries unavailable (5xx, resets), rate limits and timeouts; not client errors, cancellations or bugs', () => {
    assert.deepEqual(classify(err(Code.Unavailable, 'llm_unavailable', { upstream_status: 500 })), { retryable: true });
    assert.deepEqual(classify(err(Code.ResourceExhausted, 'llm_rate_limited', { retry_after_ms: 2_000 })), { retryable: true, retryAfterMs: 2_000 });
    assert.deepEqual(classify(err(Code.DeadlineExceeded, 'first_token_timeout')), { retryable: true });
    assert.deepEqual(classify(err(Code.DeadlineExceeded, 'llm_timeout')), { retryable: true });
    for (const [code, reason] of [
      [Code.FailedPrecondition, 'llm_rejected'],
      [Code.FailedPrecondition, 'llm_auth_failed'],
      [Code.FailedPrecondition, 'profile_unusable'],
      [Code.InvalidArgument, 'invalid_argument'],
      [Code.NotFound, 'not_found'],
      [Code.Cancelled, 'cancelled'],
      [Code.Internal, 'internal'],
    ] as const) {
      assert.equal(classify(err(code, reason)).retryable, false, reason);
    }
    assert.equal(classify(new Error('boom')).retryable, false);
  });

  const policy: RetryPolicy = { maxAttempts: 5, baseMs: 100, maxMs: 2_000 };

  it('backs off exponentially with full jitter, capped', () => {
    assert.equal(retryDelayMs(1, policy, undefined, () => 0), 0);
    assert.equal(retryDelayMs(1, policy, undefined, () => 0.999999), 99.9999);
    assert.ok(Math.abs(retryDelayMs(3, policy, undefined, () => 1) - 400) < 1e-9);
    assert.equal(retryDelayMs(10, policy, undefined, () => 1), 2_000);
    for (let i = 0; i < 200; i++) {
      const d = retryDelayMs(4, policy);
      assert.ok(d >= 0 && d <= 800);
    }
  });

  it('waits at least the Retry-After (capped at the maximum)', () => {
    assert.equal(retryDelayMs(1, policy, 1_500, () => 0), 1_500);
    assert.ok(retryDelayMs(1, policy, 1_500, () => 1) >= 1_500);
    assert.equal(retryDelayMs(1, policy, 60_000, () => 0), 2_000);
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    assert.equal(parseRetryAfter('2'), 2_000);
    assert.equal(parseRetryAfter('0.5'), 500);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6_000);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
  });
});
