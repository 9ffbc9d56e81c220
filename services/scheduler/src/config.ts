import { defineConfig, env } from '@chat/config';

/** The scheduler's configuration. */
export const schedulerConfig = defineConfig({
  SCHEDULER_GRPC_LISTEN: env.address().default('127.0.0.1:0'),
  /** The whole reply (every attempt and the waits between them) must finish within this. */
  SCHEDULER_REPLY_TIMEOUT_MS: env.millis().default(120_000),
  /** Each attempt must stream its first text within this; past it the attempt is cut and retried. */
  SCHEDULER_FIRST_TOKEN_TIMEOUT_MS: env.millis().default(30_000),
  /**
   * Messages of one Kafka partition the scheduler takes at once: different sessions run
   * concurrently and are ordered by priority; one session's stay in order. 1 = one at a time (a
   * slow reply holds its partition). Decision 0008.
   */
  SCHEDULER_PARTITION_CONCURRENCY: env.positiveInt().default(16),
  /** Generations running at once in one scheduler replica, over every profile. */
  SCHEDULER_MAX_CONCURRENT_GENERATIONS: env.positiveInt().default(64),
  /** Attempts of a reply (the first included) for retryable failures; then reply.failed and the DLT. */
  SCHEDULER_MAX_ATTEMPTS: env.positiveInt().default(3),
  /** Exponential backoff with full jitter between attempts: base and cap (also caps a Retry-After). */
  SCHEDULER_RETRY_BASE_MS: env.millis().default(500),
  SCHEDULER_RETRY_MAX_MS: env.millis().default(30_000),
  /** A waiting message gains one priority level per this long (low priority is delayed, never starved). */
  SCHEDULER_PRIORITY_AGING_MS: env.millis().default(5_000),
  /** Limits of personas without an API profile (the default endpoint); unset: none. */
  SCHEDULER_DEFAULT_MAX_CONCURRENT: env.positiveInt().optional(),
  SCHEDULER_DEFAULT_REQUESTS_PER_MINUTE: env.positiveInt().optional(),
  /** How long an API profile's limits are cached by the scheduler. */
  SCHEDULER_PROFILE_CACHE_TTL_MS: env.millis().default(30_000),
  /**
   * A message delivered again whose reply is stored `streaming` waits up to this long for the reply
   * to become final (its first run may have finished, unrecorded yet) before failing it
   * `reply_interrupted` (decision 0018). 0 = no wait.
   */
  SCHEDULER_REDELIVERY_SETTLE_MS: env.millis().default(5_000),
  /**
   * On a rebalance (concurrency above 1), a running reply of a revoked partition may finish for this
   * long before it is aborted; keep it below the Kafka rebalance timeout (60 s) (decision 0018).
   */
  SCHEDULER_REVOKE_GRACE_MS: env.millis().default(45_000),
  /**
   * How long a RuntimeSession keeps its persona; persona events drop it sooner, this bounds
   * staleness if one is missed. 0 = read the persona for every message (decision 0020).
   */
  SCHEDULER_PERSONA_CACHE_TTL_MS: env.millis().default(30_000),
  /** Keep each RuntimeSession's recent history between messages instead of reading it every time (decision 0020). */
  SCHEDULER_HISTORY_CACHE: env.bool().default(true),
  /** Most dead letters the admin index keeps in memory (newest kept). */
  SCHEDULER_DEAD_LETTER_INDEX_MAX: env.positiveInt().default(10_000),
  /** A RuntimeSession idle this long is evicted (its caches dropped). */
  SCHEDULER_IDLE_EVICT_MS: env.millis().default(300_000),
  /** Most uncovered messages read to build a prompt window (the token budget usually stops earlier). */
  SCHEDULER_WINDOW_MAX_MESSAGES: env.positiveInt().default(200),
  /** The prompt's token budget when a persona sets no settings.history_budget_tokens. */
  SCHEDULER_HISTORY_BUDGET_TOKENS: env.positiveInt().default(3000),
  /** Tokens of the budget kept free for retrieved knowledge. */
  SCHEDULER_KNOWLEDGE_RESERVE_TOKENS: env.positiveInt().default(1000),
  /** Uncovered messages outside the window that start a background summarisation. */
  SCHEDULER_SUMMARY_THRESHOLD_MESSAGES: env.positiveInt().default(20),
  /** Most messages folded per page, and most tokens of turns per Summarize call. */
  SCHEDULER_SUMMARY_BATCH_MESSAGES: env.positiveInt().default(200),
  SCHEDULER_SUMMARY_BATCH_TOKENS: env.positiveInt().default(6000),
  /** Longest summary asked of the model, in tokens. */
  SCHEDULER_SUMMARY_MAX_TOKENS: env.positiveInt().default(512),
  /** After a failed summarisation, the session waits this long before the next try. */
  SCHEDULER_SUMMARY_RETRY_MS: env.millis().default(30_000),
});
