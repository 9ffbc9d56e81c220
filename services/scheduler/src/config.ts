import { defineConfig, env } from '@chat/config';

/** The scheduler's configuration. */
export const schedulerConfig = defineConfig({
  SCHEDULER_GRPC_LISTEN: env.address().default('127.0.0.1:0'),
  /** The whole reply must finish within this. */
  SCHEDULER_REPLY_TIMEOUT_MS: env.millis().default(120_000),
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
