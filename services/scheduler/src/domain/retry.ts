import { AppError, Code, isAppError } from '@chat/errors';

/**
 * The one retry layer of a reply (see docs/decisions/0009-retries-and-streamed-replies.md): the
 * scheduler retries a failed attempt; the openai client (maxRetries: 0), rag and the bus do not.
 */

/** RetryPolicy bounds the attempts of one reply and the waits between them. */
export interface RetryPolicy {
  /** Attempts in all (the first one included); 1 means no retry. */
  maxAttempts: number;
  /** Base of the exponential backoff, in ms: attempt n waits up to base * 2^(n-1). */
  baseMs: number;
  /** Longest wait between two attempts (also caps a Retry-After), in ms. */
  maxMs: number;
}

/** Classified is what a failure means for the retry layer. */
export interface Classified {
  retryable: boolean;
  /** The upstream's Retry-After, in ms, when it sent one (429/503). */
  retryAfterMs?: number;
}

/** Codes whose failures are worth another attempt: the upstream or a hop was unavailable, overloaded or slow. */
const RETRYABLE = new Set<Code>([Code.Unavailable, Code.ResourceExhausted, Code.DeadlineExceeded, Code.Aborted]);

/**
 * classify tells a retryable failure from a final one. Retryable: 5xx and connection failures
 * (UNAVAILABLE), 429 (RESOURCE_EXHAUSTED, with its Retry-After), timeouts (DEADLINE_EXCEEDED, a
 * first-token deadline included) and ABORTED. Final: client errors of the model API (4xx:
 * FAILED_PRECONDITION llm_rejected/llm_auth_failed, profile_unusable), INVALID_ARGUMENT,
 * NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED, CANCELLED and INTERNAL (our bug: a retry would
 * repeat it). Anything that is not an AppError is INTERNAL.
 */
export function classify(err: unknown): Classified {
  if (!isAppError(err)) return { retryable: false };
  if (!RETRYABLE.has(err.code)) return { retryable: false };
  const raw = err.details.retry_after_ms;
  const retryAfterMs = typeof raw === 'number' && Number.isFinite(raw) && raw >= 0 ? raw : undefined;
  return retryAfterMs === undefined ? { retryable: true } : { retryable: true, retryAfterMs };
}

/**
 * retryDelayMs is the wait before attempt `attempt + 1` after attempt `attempt` failed:
 * exponential backoff with full jitter (uniform in [0, min(max, base * 2^(attempt-1))]), or the
 * upstream's Retry-After when it sent one (never less; capped at maxMs), plus a little jitter so
 * sessions told the same Retry-After do not return at the same instant.
 */
export function retryDelayMs(attempt: number, policy: RetryPolicy, retryAfterMs?: number, random: () => number = Math.random): number {
  if (retryAfterMs !== undefined) {
    const jitter = random() * Math.min(1_000, policy.baseMs);
    return Math.min(policy.maxMs, retryAfterMs + jitter);
  }
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  return random() * ceiling;
}

/** parseRetryAfter reads an HTTP Retry-After (seconds or an HTTP date) as ms; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The reason of a reply that failed after it had streamed text: it is not re-run (decision 0009). */
export const REPLY_INTERRUPTED = 'reply_interrupted';

/** interrupted is the failure of a reply whose stream broke after it had sent deltas. */
export function interrupted(cause: AppError): AppError {
  return new AppError(Code.Unavailable, `the reply was interrupted after it had started streaming (${cause.reason}: ${cause.message}); it is not re-run, send the message again`, {
    reason: REPLY_INTERRUPTED,
    details: { cause: cause.reason },
    cause,
  });
}
